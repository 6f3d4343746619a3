"""The admin channel itself: framing errors, unknown ops, peer credentials, events, the op table."""
from __future__ import annotations

import json
import os
import pwd
import socket
from pathlib import Path

import pytest

from core.errors import Invalid
from core.ipc.ops import OPS, check_params
from service.ipc.handlers import HANDLERS


def raw_exchange(path, *lines: bytes) -> list[dict]:
    """Send raw lines on one connection; return one decoded answer per line."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        reader = sock.makefile("rb")
        answers = []
        for line in lines:
            sock.sendall(line)
            answers.append(json.loads(reader.readline()))
        return answers


def test_every_op_has_a_handler_and_every_handler_an_op():
    assert set(OPS) == set(HANDLERS)


def test_params_are_checked_against_the_op_table():
    with pytest.raises(Invalid, match="needs the parameter 'name'"):
        check_params("domain.add", {})
    with pytest.raises(Invalid, match="no parameter"):
        check_params("domain.add", {"name": "a.com", "evil": 1})
    with pytest.raises(Invalid, match="wrong type"):
        check_params("domain.add", {"name": 5})
    assert check_params("domain.list", {}) == {"offset": 0, "limit": 0, "filter": "", "sort": "name",
                                               "descending": False}


def test_malformed_json_and_unknown_ops_get_errors_and_the_connection_survives(service):
    answers = raw_exchange(
        service.data_dir / "admin.sock",
        b"this is not json\n",
        b'["a list"]\n',
        b'{"id": 7, "op": "domain.explode", "params": {}}\n',
        b'{"id": 8, "op": "domain.add", "params": {"name": 3}}\n',
        b'{"id": 9, "op": "domain.list", "params": {}}\n',
    )
    assert answers[0]["error"]["code"] == "invalid" and "not valid JSON" in answers[0]["error"]["message"]
    assert answers[1]["error"]["code"] == "invalid"
    assert answers[2] == {"id": 7, "error": {"code": "invalid", "message": answers[2]["error"]["message"]}}
    assert "Unknown operation 'domain.explode'" in answers[2]["error"]["message"]
    assert answers[3]["error"]["code"] == "invalid"
    assert answers[4] == {"id": 9, "result": {"total": 0, "offset": 0, "items": []}}


def test_socket_is_private_to_the_service_user(service):
    mode = os.stat(service.data_dir / "admin.sock").st_mode & 0o777
    assert mode == 0o600
    assert os.stat(service.data_dir).st_mode & 0o077 == 0
    if service.db_url is None:   # SQLite in the data directory (not the PostgreSQL run)
        assert os.stat(service.data_dir / "pop3svc.db").st_mode & 0o077 == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_a_non_admin_user_is_refused_even_when_the_socket_is_reachable():
    import shutil
    import tempfile

    from tests.support import ServiceProcess

    # A data directory every user can reach, with the socket opened to everyone: only the
    # peer-credential check stands in the way.
    base = Path(tempfile.mkdtemp(prefix="pop3svc-peer-", dir="/tmp"))
    os.chmod(base, 0o755)
    service = ServiceProcess(base / "data").start()
    try:
        os.chmod(service.data_dir, 0o755)
        os.chmod(service.data_dir / "admin.sock", 0o666)
        nobody = pwd.getpwnam("nobody")
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: become nobody, ask for a change, report the answer
            try:
                os.close(read_end)
                os.setgid(nobody.pw_gid)
                os.setgroups([])
                os.setuid(nobody.pw_uid)
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                    sock.settimeout(10)
                    sock.connect(str(service.data_dir / "admin.sock"))
                    sock.sendall(b'{"id": 1, "op": "domain.add", "params": {"name": "evil.com"}}\n')
                    answer = sock.makefile("rb").readline()
                os.write(write_end, answer)
            except BaseException as exc:  # report, so the parent's assertion says why
                os.write(write_end, json.dumps({"child": repr(exc)}).encode())
            finally:
                os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            answer = json.loads(pipe.read() or b"{}")
        os.waitpid(pid, 0)
        assert answer.get("error", {}).get("code") == "forbidden", answer
        assert "admin group" in answer["error"]["message"]
        assert service.call("domain.list")["total"] == 0
        assert service.call("audit.list", limit=1)["items"][0]["outcome"] == "forbidden"
    finally:
        service.stop()
        shutil.rmtree(base, ignore_errors=True)


def next_event_named(watcher, name: str, limit: int = 50) -> dict:
    """The next event called ``name``, skipping others (bounded)."""
    for _ in range(limit):
        event = watcher.next_event()
        if event["event"] == name:
            return event
    raise AssertionError(f"no {name} event among the next {limit}")


def test_changes_are_pushed_to_subscribers(service):
    with service.client() as watcher:
        assert watcher.call("events.subscribe") == {"subscribed": True}
        service.winpop("add", "example.com", check=True)
        event = next_event_named(watcher, "domain.added")
        assert event["data"]["name"] == "example.com"
        service.winpop("add", "alice@example.com", "--password-stdin", input="pw-alice-1\n", check=True)
        names = []
        while "mailbox.added" not in names:
            names.append(watcher.next_event()["event"])
        service.winpop("lock", "example.com", check=True)
        event = watcher.next_event()
        while event["event"] != "domain.changed" or not event["data"]["locked"]:
            event = watcher.next_event()
        assert event["data"]["locked"] is True


def test_counters_move_live_after_delivery(service):
    """A delivery's counters reach subscribers (the console's size and message columns)."""
    from core.db import Database
    from core.store import MailStore

    service.add_mailbox("alice@example.com", "pw-alice-1")
    with service.client() as watcher:
        watcher.call("events.subscribe")
        # Deliver through the running service's own store path: a second MailStore on the same
        # database would not notify; so use the import op, which delivers inside the service.
        win = service.data_dir.parent / "win" / "example.com" / "P3_alice.mbx"
        win.mkdir(parents=True)
        (win / "P3000001.eml").write_bytes(b"Subject: x\r\n\r\nhello\r\n")
        service.call("import.windows", path=str(win.parent.parent))
        event = watcher.next_event()
        while not (event["event"] == "mailbox.changed" and event["data"]["message_count"] == 1):
            event = watcher.next_event()
        assert event["data"]["total_bytes"] == len(b"Subject: x\r\n\r\nhello\r\n")
    db = Database(service.database_url())
    assert MailStore(db, service.data_dir / "mailroot").list_messages(1)[0].uidl == "P3000001.eml"
    db.dispose()


def test_service_control_pauses_and_resumes_listeners(service):
    status = service.call("service.status")
    names = {lst["name"] for lst in status["listeners"]}
    if not names:
        pytest.skip("no protocol listeners in this build")
    paused = service.call("service.control", action="pause")
    assert {lst["state"] for lst in paused["listeners"]} == {"paused"}
    resumed = service.call("service.control", action="resume")
    assert {lst["state"] for lst in resumed["listeners"]} == {"running"}
    stopped = service.call("service.control", action="stop", listener=sorted(names)[0])
    assert [lst["state"] for lst in stopped["listeners"] if lst["name"] == sorted(names)[0]] == ["stopped"]
    started = service.call("service.control", action="start")
    assert {lst["state"] for lst in started["listeners"]} == {"running"}
    with pytest.raises(Exception, match="no listener 'nonsense'"):
        service.call("service.control", action="stop", listener="nonsense")


def test_sigterm_stops_cleanly_and_removes_the_socket(service):
    assert service.stop() == 0
    assert not (service.data_dir / "admin.sock").exists()


def test_lists_page_sort_and_filter_in_the_service(service):
    for name in ("c.example", "a.example", "b.example"):
        service.call("domain.add", name=name)
    for box in ("zed", "amy", "bob"):
        service.call("mailbox.add", address=f"{box}@b.example", password="pw-12345")
    service.call("mailbox.add", address="solo@c.example", password="pw-12345")
    by_count = service.call("domain.list", sort="count", descending=True)
    assert [d["name"] for d in by_count["items"]] == ["b.example", "c.example", "a.example"]
    page = service.call("mailbox.list", domain="b.example", offset=1, limit=1)
    assert page["total"] == 3 and [m["name"] for m in page["items"]] == ["bob"]
    assert [m["name"] for m in service.call("mailbox.list", domain="b.example", filter="e")["items"]] == ["zed"]
    with pytest.raises(Invalid, match="Cannot sort by"):
        service.call("domain.list", sort="colour")


def test_recent_log_lines_reach_the_console(service):
    service.call("domain.add", name="example.com")
    items = service.call("log.recent", limit=50)["items"]
    assert any("domain.add" in item["message"] for item in items)
    assert all(set(item) == {"at", "level", "source", "message"} for item in items)
