"""Core fixtures: a real temporary database and mail root."""
from __future__ import annotations

import pytest

from core.db import Database
from core.store import MailStore
from core.tables import Domain, Mailbox
from tests.support import db_url_for


@pytest.fixture
def db(tmp_path):
    database = Database(db_url_for(tmp_path / "t.db"))
    database.upgrade()
    yield database
    database.dispose()


@pytest.fixture
def store(db, tmp_path):
    return MailStore(db, tmp_path / "mailroot", hostname="test.host")


def make_mailbox(db, store, address: str, *, quota: int | None = None) -> int:
    """A domain and mailbox row plus the Maildir, as the admin operations would make them."""
    name, domain = address.split("@")
    store.create_mailbox_folder(domain, name)
    with db.write() as session:
        drow = session.query(Domain).filter_by(name=domain).first()
        if drow is None:
            drow = Domain(name=domain, locked=False, mailbox_count=0, message_count=0, total_bytes=0)
            session.add(drow)
            session.flush()
        box = Mailbox(domain_id=drow.id, name=name, locked=False, quota_bytes=quota, message_count=0,
                      total_bytes=0, has_user=True)
        session.add(box)
        drow.mailbox_count += 1
        session.flush()
        return box.id
