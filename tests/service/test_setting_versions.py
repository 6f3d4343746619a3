"""Two administrators change the same settings (issue 15): each setting has a version, a property
sheet sends the version it read, and the service refuses a change made over someone else's (and
changes nothing), naming who changed it and what it is now. ``winpop set`` keeps last-writer-wins.

Against a real service with two admin connections (two administrators), on SQLite and, with
POP3SVC_TEST_DB_URL, on PostgreSQL; the migration from 0004 on a real database.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import text

from core.db import MIGRATIONS_DIR, Database
from core.errors import MailError
from core.settings import Settings
from tests.support import fresh_db_url, pg_url

PASSWORD = "Secret-123x"


def refused(call, *args, **params) -> MailError:
    with pytest.raises(MailError) as caught:
        call(*args, **params)
    return caught.value


def test_a_change_made_since_the_sheet_read_the_setting_is_refused_and_named(service):
    with service.client() as first, service.client() as second:
        read = first.call("settings.snapshot")
        assert set(read["values"]) == set(read["versions"]) and read["values"]["idle_timeout"] == 600
        seen = read["versions"]["idle_timeout"]
        theirs = second.call("settings.set", name="idle_timeout", value=900, expected_version=seen)
        assert theirs["version"] == seen + 1

        error = refused(first.call, "settings.set", name="idle_timeout", value=1200, expected_version=seen)
        assert error.code == "conflict"
        # Who (the audit log knows the actor), which setting by its label, and the value now.
        assert "Idle session timeout" in error.message and "900" in error.message and " by " in error.message
        assert "another administrator" not in error.message
        assert "Nothing was changed" in error.message
        now = second.call("settings.snapshot")
        assert now["values"]["idle_timeout"] == 900 and now["versions"]["idle_timeout"] == seen + 1
        audit = first.call("audit.list", limit=1)["items"][0]
        assert (audit["op"], audit["target"], audit["outcome"]) == ("settings.set", "idle_timeout", "refused: conflict")

        # Told, the administrator applies again over it deliberately, with the version now.
        again = first.call("settings.set", name="idle_timeout", value=1200, expected_version=seen + 1)
        assert again["version"] == seen + 2
        assert second.call("settings.get", name="idle_timeout") == {"idle_timeout": 1200}


def test_of_several_administrators_applying_over_the_same_version_one_wins(service):
    """The version is checked and raised in one transaction (the row is locked on PostgreSQL), so
    administrators who read the same version cannot both succeed."""
    seen = service.call("settings.snapshot")["versions"]["idle_timeout"]

    def apply(value: int) -> str:
        try:
            service.call("settings.set", name="idle_timeout", value=value, expected_version=seen)
            return "ok"
        except MailError as exc:
            return exc.code

    with ThreadPoolExecutor(6) as pool:
        outcomes = list(pool.map(apply, range(700, 1300, 100)))
    assert sorted(outcomes) == ["conflict"] * 5 + ["ok"]
    assert service.call("settings.snapshot")["versions"]["idle_timeout"] == seen + 1


def test_asking_for_the_value_it_already_has_overwrites_nobody(service):
    with service.client() as first, service.client() as second:
        seen = first.call("settings.snapshot")["versions"]["createuser"]
        second.call("settings.set", name="createuser", value=True)
        done = first.call("settings.set", name="createuser", value=True, expected_version=seen)
        assert done["value"] is True
        # The same value again moves no version.
        assert second.call("settings.set", name="createuser", value=True)["version"] == done["version"]


def test_winpop_set_and_a_set_without_a_version_keep_last_writer_wins(service):
    with service.client() as first:
        seen = first.call("settings.snapshot")["versions"]["logging"]
        first.call("settings.set", name="logging", value=1)
        service.winpop("set", "logging", "3", check=True)
        assert first.call("settings.get", name="logging") == {"logging": 3}
        assert first.call("settings.snapshot")["versions"]["logging"] == seen + 2
        assert refused(first.call, "settings.set", name="logging", value=0, expected_version=seen + 1).code \
            == "conflict"


def test_every_change_event_carries_the_new_version(service):
    with service.client() as watcher, service.client() as other:
        watcher.call("events.subscribe")
        answer = other.call("settings.set", name="hostname", value="mail.example.org")
        for _ in range(50):
            event = watcher.next_event()
            if event["event"] == "settings.changed":
                break
        assert event["data"] == {"name": "hostname", "value": "mail.example.org", "version": answer["version"]}


def test_a_mailbox_quota_changed_since_the_sheet_read_it_is_refused(service):
    with service.client() as first, service.client() as second:
        first.call("domain.add", name="example.com")
        first.call("mailbox.add", address="alice@example.com", password=PASSWORD)
        second.call("mailbox.set_quota", address="alice@example.com", quota="20 MB", check_quota=True,
                    expected_quota=None)
        error = refused(first.call, "mailbox.set_quota", address="alice@example.com", quota="5 MB",
                        check_quota=True, expected_quota=None)
        assert error.code == "conflict" and "20,971,520 bytes" in error.message
        assert first.call("mailbox.get", address="alice@example.com")["quota_bytes"] == 20 * 1024 * 1024
        first.call("mailbox.set_quota", address="alice@example.com", quota="5 MB", check_quota=True,
                   expected_quota=20 * 1024 * 1024)
        # Without the check (winpop), the last writer wins.
        second.call("mailbox.set_quota", address="alice@example.com", quota=None)
        assert first.call("mailbox.get", address="alice@example.com")["quota_bytes"] is None


@pytest.mark.skipif(pg_url() is not None, reason="on PostgreSQL a running node refuses to move the mail root")
def test_a_stale_mail_root_is_refused_before_anything_moves(service, tmp_path):
    with service.client() as first, service.client() as second:
        seen = first.call("settings.snapshot")["versions"]["mailroot"]
        second.call("settings.set", name="mailroot", value=str(tmp_path / "theirs"))
        error = refused(first.call, "settings.set", name="mailroot", value=str(tmp_path / "mine"),
                        expected_version=seen)
        assert error.code == "conflict" and str(tmp_path / "theirs") in error.message
        assert not (tmp_path / "mine").exists()
        assert first.call("settings.get", name="mailroot") == {"mailroot": str(tmp_path / "theirs")}


def _alembic(db: Database) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def test_migration_0005_gives_stored_settings_version_1_and_goes_back(tmp_path):
    db = Database(fresh_db_url(tmp_path))
    try:
        cfg = _alembic(db)
        with db.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0004")
            conn.execute(text("INSERT INTO settings (name, value) VALUES ('logging', '2')"))
            command.upgrade(cfg, "0005")
        with db.read() as session:
            assert Settings.versions(session)["logging"] == 1 and Settings.versions(session)["port"] == 0
        with db.write() as session:
            assert Settings.put(session, "logging", 3) == 2
            assert Settings.put(session, "logging", 3) == 2      # the same value: no new version
            assert Settings.put(session, "port", 1110) == 1
        with db.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0004")
            assert conn.execute(text("SELECT value FROM settings WHERE name = 'logging'")).scalar() == "3"
            command.upgrade(cfg, "head")
    finally:
        db.dispose()
