"""The event loop never waits for the database (issue 14): while another process holds SQLite's
write lock and an SMTP delivery waits for it, POP3 greetings and `winpop status` still answer at
once, and the delivery completes (250) when the lock is given back."""
from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from core.errors import database_error
from tests.support import ServiceProcess, pg_url

SQLITE_ONLY = pytest.mark.skipif(pg_url() is not None, reason="holds SQLite's write lock; PostgreSQL has none such")

FAST = 1.0            # seconds: what "at once" means on a loaded machine
WATCH = 2.0           # seconds of greetings and status calls while the delivery waits for the lock
ADDRESS, PASSWORD = "alice@example.com", "Secret-pass-1"

# Another process takes the write lock (BEGIN IMMEDIATE), says so, and keeps it until its stdin closes.
HOLDER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.read()
conn.execute("ROLLBACK")
"""


def greeting_time(port: int) -> float:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        line = sock.makefile("rb").readline()
    assert line.startswith(b"+OK"), line
    return time.monotonic() - started


def smtp_until_data_sent(port: int) -> tuple[socket.socket, Any]:
    """An SMTP session that has sent a whole message and now waits for the DATA reply."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    reader = sock.makefile("rb")

    def reply() -> bytes:
        while True:
            line = reader.readline()
            if line[3:4] != b"-":
                return line

    assert reply().startswith(b"220")
    for command, code in ((b"EHLO client.test", b"250"), (b"MAIL FROM:<bob@remote.test>", b"250"),
                          (f"RCPT TO:<{ADDRESS}>".encode(), b"250"), (b"DATA", b"354")):
        sock.sendall(command + b"\r\n")
        answer = reply()
        assert answer.startswith(code), (command, answer)
    sock.sendall(b"Subject: waits for the lock\r\n\r\nhello\r\n.\r\n")
    return sock, reader


@SQLITE_ONLY
def test_greetings_and_status_answer_while_another_process_holds_the_write_lock(tmp_path: Path) -> None:
    service = ServiceProcess(tmp_path / "data").start()
    holder = None
    smtp = None
    try:
        service.add_mailbox(ADDRESS, PASSWORD)
        db_path = service.database_url().split("///", 1)[1]
        holder = subprocess.Popen([sys.executable, "-c", HOLDER, db_path], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        assert holder.stdout.readline().strip() == "locked"

        # The only client of the service: a delivery that must wait for the lock.
        smtp, smtp_reader = smtp_until_data_sent(service.ports["smtp"])
        greetings, statuses = [], []
        deadline = time.monotonic() + WATCH
        while time.monotonic() < deadline:
            greetings.append(greeting_time(service.ports["pop3"]))
            started = time.monotonic()
            result = service.winpop("status")
            statuses.append(time.monotonic() - started)
            assert result.returncode == 0, result.stderr
            assert "running" in result.stdout.lower()
        smtp.settimeout(0)
        with pytest.raises(BlockingIOError):   # the lock really holds the delivery back
            smtp.recv(1)
        assert max(greetings) < FAST, greetings
        # winpop is a new Python process each time: one slow start on a busy machine is no stall.
        assert min(statuses) < FAST and max(statuses) < WATCH, statuses

        holder.stdin.close()   # the lock is given back: the waiting delivery commits
        assert holder.wait(10) == 0
        smtp.settimeout(30)
        assert smtp_reader.readline().startswith(b"250"), "the delivery did not complete after the lock"
        assert service.call("mailbox.get", address=ADDRESS)["message_count"] == 1
    finally:
        if smtp is not None:
            smtp.close()
        if holder is not None and holder.poll() is None:
            holder.kill()
            holder.wait(5)
        service.stop()   # fails the test if the event loop stalled (tests/support.py)


@pytest.mark.parametrize("driver_error, reply", [
    (sqlite3.OperationalError("database is locked"), "451 4.3.0"),
    (sqlite3.OperationalError("database or disk is full"), "452 4.3.1"),
], ids=["lock-timeout", "disk-full"])
def test_a_lock_timeout_is_not_insufficient_storage(driver_error: Exception, reply: str) -> None:
    """A lock held too long is a temporary local error, a full disk is "insufficient system storage"
    (RFC 3463 4.3.0 / 4.3.1), and either is worded for a person, not the driver's text."""
    from sqlalchemy.exc import OperationalError

    from core.errors import DATABASE_BUSY, DATABASE_FULL, DiskFull
    from service.smtp.intake import delivery_reply

    for raised in (driver_error, OperationalError("INSERT ...", {}, driver_error)):   # raw, and as SQLAlchemy wraps it
        refusal = database_error(raised)
        assert refusal is not None and refusal.code == "unavailable"
        assert refusal.message == (DATABASE_FULL if isinstance(refusal, DiskFull) else DATABASE_BUSY)
        assert delivery_reply(refusal).startswith(reply)
    assert database_error(ValueError("a bug")) is None


def test_winpop_exits_1_for_a_refusal_and_3_only_without_a_service(tmp_path: Path) -> None:
    service = ServiceProcess(tmp_path / "data").start()
    try:
        service.call("service.control", action="stop", listener="smtp")
        refused = service.winpop("relaytest")    # the service answers "unavailable": a refusal
        assert refused.returncode == 1 and "not running" in refused.stderr, (refused.returncode, refused.stderr)
    finally:
        service.stop()
    gone = service.winpop("status")
    assert gone.returncode == 3 and "not running" in gone.stderr
