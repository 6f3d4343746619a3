"""Moving a single-machine installation (SQLite) onto PostgreSQL: ``service migrate-db``."""
from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest
from sqlalchemy import create_engine, func, select, text

from core.tables import Domain, Mailbox, Message, QueuedMessage, Setting
from tests.support import ROOT, ServiceProcess, fresh_db_url, pg_url

pytestmark = pytest.mark.skipif(
    pg_url() is None, reason="needs PostgreSQL as the target: set POP3SVC_TEST_DB_URL (.ci/run does)")


def migrate(data_dir, url, *extra):
    return subprocess.run([sys.executable, str(ROOT / "main.py"), "service", "migrate-db", "--data-dir",
                           str(data_dir), "--to", url, *extra], cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.fixture
def installation(tmp_path):
    """A stopped SQLite installation with domains, mailboxes, mail, settings and a queued message."""
    node = ServiceProcess(tmp_path / "single", db_url=f"sqlite:///{tmp_path / 'single' / 'pop3svc.db'}")
    node.start()
    try:
        node.add_mailbox("alice@example.com", "pw-alice-1")
        node.add_mailbox("bob@example.com", "pw-bob-1")
        node.add_mailbox("carol@example.net", "pw-carol-1")
        node.winpop("set", "logging", "3", check=True)
        node.winpop("set", "relay_networks", "127.0.0.1/32", check=True)
        node.winpop("set", "queue_retry_interval", "3600", check=True)
        node.winpop("set", "smtp_routes", "remote.test=127.0.0.1:9", check=True)   # never answers
        import smtplib
        with smtplib.SMTP("127.0.0.1", node.ports["smtp"], timeout=30) as smtp:
            for n in range(5):
                smtp.sendmail("x@remote.test", ["alice@example.com", "carol@example.net"],
                              f"Subject: {n}\r\n\r\nbody {n}\r\n".encode())
            smtp.sendmail("alice@example.com", ["dave@remote.test"], b"Subject: out\r\n\r\nqueued\r\n")
        node.call("mailbox.lock", address="bob@example.com")
    finally:
        node.stop()
    return node


def test_migrate_copies_everything_verifies_and_leaves_sqlite_untouched(installation, tmp_path):
    db_file = installation.data_dir / "pop3svc.db"
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in installation.data_dir.glob("pop3svc.db*")}
    url = fresh_db_url(tmp_path)
    result = migrate(installation.data_dir, url)
    assert result.returncode == 0, result.stderr
    assert "Verified:" in result.stdout and "indexed messages 10" in result.stdout
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in installation.data_dir.glob("pop3svc.db*")}
    assert after == before, "the SQLite files are byte for byte as they were"

    src, dst = create_engine(f"sqlite:///{db_file}"), create_engine(url)
    with src.connect() as s, dst.connect() as d:
        for table in (Setting, Domain, Mailbox, Message, QueuedMessage):
            count = select(func.count()).select_from(table)
            assert s.scalar(count) == d.scalar(count)
        assert d.scalar(select(Mailbox.message_count).where(Mailbox.name == "alice")) == 5
        assert d.scalar(select(func.sum(Domain.total_bytes))) == s.scalar(select(func.sum(Domain.total_bytes)))
        # New rows do not collide with copied ids: the sequences moved past them.
        top = d.scalar(select(func.max(Message.id)))
        assert d.scalar(text("SELECT last_value FROM messages_id_seq")) == top
    src.dispose()
    dst.dispose()

    # The installation runs on PostgreSQL now: same mailboxes, counters, lock state and queue.
    node = ServiceProcess(installation.data_dir, db_url=url, ports=installation.ports).start()
    try:
        assert node.call("mailbox.get", address="alice@example.com")["message_count"] == 5
        assert node.call("mailbox.get", address="bob@example.com")["locked"] is True
        assert node.call("settings.get", name="logging") == {"logging": 3}
        queue = node.call("queue.list")["items"]
        assert [q["recipients"] for q in queue] == [["dave@remote.test"]]
        assert node.call("queue.show", id=queue[0]["id"])["body_preview"].startswith("queued")
        node.add_mailbox("erin@example.com", "pw-erin-1")     # a new row gets a fresh id
        import poplib
        client = poplib.POP3("127.0.0.1", node.ports["pop3"], timeout=10)
        client.apop("alice@example.com", "pw-alice-1")      # credentials and their sealed secret came along
        assert client.stat()[0] == 5
        client.quit()
    finally:
        node.stop()


def test_migrate_refuses_a_target_that_is_not_empty(installation, tmp_path):
    url = fresh_db_url(tmp_path)
    assert migrate(installation.data_dir, url).returncode == 0
    again = migrate(installation.data_dir, url)
    assert again.returncode == 1 and "not empty" in again.stderr


def test_migrate_refuses_while_the_service_runs(installation, tmp_path):
    node = ServiceProcess(installation.data_dir, db_url=f"sqlite:///{installation.data_dir / 'pop3svc.db'}",
                          ports=installation.ports).start()
    try:
        result = migrate(installation.data_dir, fresh_db_url(tmp_path))
        assert result.returncode == 1 and "running" in result.stderr
    finally:
        node.stop()
