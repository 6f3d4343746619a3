"""core.admin over a real database: frozen answers, typed auth methods, and a New Mailbox in one
database transaction (it took five, six with the audit entry, before issue 16)."""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import event, func, select

from core.admin import Admin
from core.auth.directory import DirectoryConfig, DirectoryProvider
from core.auth.keystore import ServerKey
from core.auth.local import Accounts, LocalAccountProvider, SystemAccounts
from core.auth.provider import AccountAdmin, AuthMethod, AuthProvider, PasswordFileProvider
from core.errors import Conflict, Invalid, NotFound
from core.ipc.wire import to_wire
from core.model import DomainInfo, DomainPage, MailboxAddress, MailboxInfo, ServerStat
from core.tables import Credential, Domain, Mailbox
from service.privhelper import HelperClient


@pytest.fixture
def provider(db, tmp_path):
    return PasswordFileProvider(db, ServerKey.generate(), mailroot=tmp_path / "mailroot", scram_iterations=32)


@pytest.fixture
def events():
    return []


@pytest.fixture
def admin(db, store, provider, events):
    return Admin(db, store, auth=provider, publish=lambda name, data: events.append((name, data)))


@contextmanager
def transactions(db) -> Iterator[list[str]]:
    """Every database transaction begun inside the block (reads too), as 'begin' entries."""
    begun: list[str] = []

    def count(_conn) -> None:
        begun.append("begin")
    event.listen(db.engine, "begin", count)
    try:
        yield begun
    finally:
        event.remove(db.engine, "begin", count)


def test_a_new_mailbox_is_one_transaction(db, store, admin):
    admin.domain_add("example.com")
    with transactions(db) as begun:
        info = admin.mailbox_add("alice@example.com", password="pw-alice-1")
    assert len(begun) == 1
    assert info == MailboxInfo(name="alice", domain="example.com", address="alice@example.com", locked=False,
                               domain_locked=False, message_count=0, total_bytes=0, quota_bytes=None,
                               has_user=True)
    assert (store.mailbox_dir("example.com", "alice") / "new").is_dir()
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(Credential)) == 1
        assert session.scalar(select(Domain.mailbox_count)) == 1


def test_a_new_domain_is_one_transaction(db, admin):
    with transactions(db) as begun:
        assert admin.domain_add("example.com") == DomainInfo(
            name="example.com", display_name="example.com", locked=False, mailbox_count=0, message_count=0,
            total_bytes=0)
    assert len(begun) == 1


@pytest.mark.parametrize(("address", "password", "error"), [
    ("alice@example.com", "", Invalid),               # the password file needs one
    ("alice@example.com", "two\nlines", Invalid),     # a password no client can send
    ("alice@nowhere.example", "pw-1", NotFound),      # no such domain
    ("bad/name@example.com", "pw-1", Invalid),
    ("taken@example.com", "pw-1", Conflict),
], ids=["no-password", "bad-password", "no-domain", "bad-name", "taken"])
def test_bad_input_changes_nothing_and_costs_one_transaction(db, store, admin, events, address, password, error):
    admin.domain_add("example.com")
    admin.mailbox_add("taken@example.com", password="pw-taken-0")
    events.clear()
    with transactions(db) as begun, pytest.raises(error):
        admin.mailbox_add(address, password=password)
    assert len(begun) == 1 and events == []
    with db.read() as session:
        assert list(session.scalars(select(Mailbox.name))) == ["taken"]
        assert session.scalar(select(Domain.mailbox_count)) == 1
        assert session.scalar(select(func.count()).select_from(Credential)) == 1
    assert sorted(p.name for p in store.domain_dir("example.com").iterdir()) == ["taken"]


def test_a_new_mailbox_announces_itself_and_its_domain_with_plain_values(admin, events):
    admin.domain_add("example.com")
    events.clear()
    info = admin.mailbox_add("alice@example.com", password="pw-alice-1")
    assert [name for name, _ in events] == ["mailbox.added", "domain.changed"]
    assert events[0][1] == info
    assert isinstance(events[1][1], DomainInfo) and events[1][1].mailbox_count == 1


def test_answers_are_frozen_values_and_the_wire_form_is_their_fields(admin):
    admin.domain_add("example.com")
    admin.mailbox_add("alice@example.com", password="pw-alice-1")
    page = admin.domain_list()
    assert isinstance(page, DomainPage) and isinstance(page.items, tuple)
    with pytest.raises(dataclasses.FrozenInstanceError):
        page.total = 5   # type: ignore[misc]
    assert to_wire(page) == {"total": 1, "offset": 0, "items": [to_wire(admin.domain_get("example.com"))]}
    assert isinstance(admin.stat(), ServerStat)
    assert admin.mailbox_set_password("alice@example.com", "pw-alice-2") == MailboxAddress("alice@example.com")


def test_every_auth_method_declares_both_sides(db, provider):
    local = LocalAccountProvider(db)
    directory = DirectoryProvider(db, DirectoryConfig.from_settings({"ldap_urls": "ldap://127.0.0.1:9"}, None))
    for method in (provider, local, directory):
        assert isinstance(method, AuthMethod)
        assert isinstance(method, AuthProvider) and isinstance(method, AccountAdmin)
        assert method.scram_iterations > 0
        method.close()
    assert Accounts in SystemAccounts.__mro__ and Accounts in HelperClient.__mro__   # declared, not guessed
