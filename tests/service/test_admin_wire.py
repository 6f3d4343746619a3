"""The admin channel's JSON is what it was before core answered with dataclasses (issue 16):
every admin op's result and change event, key for key, against a real service."""
from __future__ import annotations

from datetime import datetime

from tests.support import pg_url

DOMAIN = ["name", "display_name", "locked", "mailbox_count", "message_count", "total_bytes"]
MAILBOX = ["name", "domain", "address", "locked", "domain_locked", "message_count", "total_bytes",
           "quota_bytes", "has_user"]
AUDIT = ["at", "actor", "op", "target", "detail", "outcome"]


def keys(value: dict) -> list[str]:
    return list(value)


def next_event_named(watcher, name: str, limit: int = 50) -> dict:
    """The next event called ``name``, skipping others (bounded)."""
    for _ in range(limit):
        event = watcher.next_event()
        if event["event"] == name:
            return event
    raise AssertionError(f"no {name} event among the next {limit}")


def test_every_admin_answer_has_the_keys_the_console_and_winpop_read(service, tmp_path):
    call = service.call
    assert keys(call("domain.add", name="example.com")) == DOMAIN
    assert keys(call("domain.get", name="example.com")) == DOMAIN
    assert keys(call("domain.lock", name="example.com")) == DOMAIN
    assert keys(call("domain.unlock", name="example.com")) == DOMAIN
    page = call("domain.list")
    assert keys(page) == ["total", "offset", "items"] and [keys(d) for d in page["items"]] == [DOMAIN]
    assert isinstance(page["items"], list)

    added = call("mailbox.add", address="alice@example.com", password="pw-alice-1")
    assert keys(added) == MAILBOX
    assert added == {"name": "alice", "domain": "example.com", "address": "alice@example.com", "locked": False,
                     "domain_locked": False, "message_count": 0, "total_bytes": 0, "quota_bytes": None,
                     "has_user": True}
    assert keys(call("mailbox.get", address="alice@example.com")) == MAILBOX
    assert keys(call("mailbox.lock", address="alice@example.com")) == MAILBOX
    assert keys(call("mailbox.unlock", address="alice@example.com")) == MAILBOX
    assert keys(call("mailbox.set_quota", address="alice@example.com", quota="1M")) == MAILBOX
    assert call("mailbox.set_password", address="alice@example.com", password="pw-alice-2") == \
        {"address": "alice@example.com"}
    page = call("mailbox.list", domain="example.com")
    assert keys(page) == ["total", "offset", "domain", "items"] and [keys(m) for m in page["items"]] == [MAILBOX]

    server = call("stat")
    assert keys(server) == ["domains", "mailboxes", "messages", "bytes", "items", "counters"]
    assert [keys(d) for d in server["items"]] == [DOMAIN]
    one = call("stat", domain="example.com")
    assert keys(one) == ["domain", "mailboxes", "messages", "bytes", "locked", "items", "counters"]
    assert [keys(m) for m in one["items"]] == [MAILBOX]

    # The version (issue 15) is added to settings.set's answer: 1 for a setting stored the first time.
    assert call("settings.set", name="logging", value=2) == {"name": "logging", "value": 2, "restart": None,
                                                             "version": 1}
    assert call("settings.get", name="logging") == {"logging": 2}
    if pg_url() is None:   # on PostgreSQL a running node refuses to move the shared mail root
        moved = call("settings.set", name="mailroot", value=str(tmp_path / "newroot"))
        assert keys(moved) == ["name", "value", "restart", "messages", "mailboxes", "domains", "version"]
        assert call("settings.set", name="mailroot", value=str(tmp_path / "newroot")) == \
            {"name": "mailroot", "value": str(tmp_path / "newroot"), "restart": moved["restart"],
             "version": moved["version"]}   # the same value again: its version stays

    win = tmp_path / "win" / "example.com" / "P3_bob.mbx"
    win.mkdir(parents=True)
    (win / "P3000001.eml").write_bytes(b"Subject: x\r\n\r\nhello\r\n")
    imported = call("import.windows", path=str(tmp_path / "win"))
    assert keys(imported) == ["domains", "mailboxes", "messages", "skipped", "warnings"]
    assert (imported["mailboxes"], imported["messages"]) == (1, 1) and isinstance(imported["warnings"], list)

    audit = call("audit.list", limit=3)
    assert keys(audit) == ["items"] and [keys(a) for a in audit["items"]] == [AUDIT] * 3
    datetime.fromisoformat(audit["items"][0]["at"])   # ISO 8601 text, as before

    assert call("mailbox.delete", address="alice@example.com") == {"address": "alice@example.com"}
    assert call("domain.delete", name="example.com") == {"name": "example.com"}


def test_change_events_carry_the_same_keys_as_before(service):
    with service.client() as watcher:
        watcher.call("events.subscribe")
        service.call("domain.add", name="example.com")
        assert keys(next_event_named(watcher, "domain.added")["data"]) == DOMAIN
        service.call("mailbox.add", address="alice@example.com", password="pw-alice-1")
        assert keys(next_event_named(watcher, "mailbox.added")["data"]) == MAILBOX
        changed = next_event_named(watcher, "domain.changed")["data"]
        assert keys(changed) == DOMAIN and changed["mailbox_count"] == 1
        service.call("settings.set", name="logging", value=1)
        changed = next_event_named(watcher, "settings.changed")["data"]
        # The version (issue 15) is added: a property sheet compares it with the version it read.
        assert changed == {"name": "logging", "value": 1, "version": changed["version"]} and changed["version"] >= 1
        service.call("mailbox.delete", address="alice@example.com")
        assert next_event_named(watcher, "mailbox.deleted")["data"] == \
            {"address": "alice@example.com", "domain": "example.com", "name": "alice"}
        assert next_event_named(watcher, "domain.changed")["data"]["mailbox_count"] == 0
        service.call("domain.delete", name="example.com")
        assert next_event_named(watcher, "domain.deleted")["data"] == {"name": "example.com"}
