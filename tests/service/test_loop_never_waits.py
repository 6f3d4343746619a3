"""Issue 14: RETR and TOP never read a message file on the event loop. A disk made slow under the
POP3 server (every read of a message file takes a second) must not delay another session's NOOP,
and a 20 MB RETR from the real service process, in asyncio debug mode with a 50 ms slow-callback
threshold, must produce no stall report."""
from __future__ import annotations

import hashlib
import poplib
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select

import service.pop3.session as pop3_session
from core.db import Database
from core.store import MailStore
from core.tables import Domain, Mailbox
from tests.service.test_pop3_support import PASSWORD, Pop3Harness, RawClient, message, pop3  # noqa: F401
from tests.support import ServiceProcess, wait_for

ALICE, BOB = "alice@example.com", "bob@example.com"
SLOW_READ = 1.0   # seconds each read of a message file takes on the "slow disk"


class SlowFile:
    """A message file whose reads take SLOW_READ and note the thread they run on."""

    def __init__(self, real: Any, seen: list[str], reading: threading.Event) -> None:
        self.real, self.seen, self.reading = real, seen, reading

    def read(self, size: int) -> bytes:
        self.seen.append(threading.current_thread().name)
        self.reading.set()
        time.sleep(SLOW_READ)   # the disk, not a synchronisation: the test polls for the reply
        return self.real.read(size)

    def close(self) -> None:
        self.real.close()

    def __enter__(self) -> SlowFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def logged_in(port: int, address: str) -> RawClient:
    client = RawClient(port)
    client.line()
    assert client.cmd(f"USER {address}").startswith(b"+OK")
    assert client.cmd(f"PASS {PASSWORD}").startswith(b"+OK")
    return client


def test_a_slow_disk_never_holds_other_sessions(pop3: Pop3Harness, monkeypatch) -> None:  # noqa: F811
    alice = pop3.add_mailbox(ALICE)
    pop3.add_mailbox(BOB)
    text = message(1, body_lines=20_000)          # ~500 KB: two pieces and a bit
    pop3.deliver(alice, text)
    pop3.deliver(alice, message(2))
    seen: list[str] = []
    reading = threading.Event()
    real_open = pop3_session.open_message
    monkeypatch.setattr(pop3_session, "open_message",
                        lambda path: SlowFile(real_open(path), seen, reading))
    reader, other = logged_in(pop3.port, ALICE), logged_in(pop3.port, BOB)
    reader.send(b"RETR 1\r\n")
    assert reading.wait(10), "RETR never read the message"
    started = time.monotonic()
    assert other.cmd("NOOP").startswith(b"+OK")
    waited = time.monotonic() - started
    assert waited < SLOW_READ / 2, f"NOOP waited {waited:.2f} s for another session's disk read"
    assert reader.line().startswith(b"+OK")
    lines = reader.multi()
    assert b"".join(lines) == text.replace(b"\n", b"\r\n")
    assert reader.cmd("RETR 2").startswith(b"+OK")   # the small one that follows: read ahead
    assert b"line 2 of message 2\r\n" in reader.multi()
    assert seen and all(name.startswith("read") for name in seen), seen   # the reader threads, never the loop
    assert reader.cmd("QUIT").startswith(b"+OK")
    assert other.cmd("QUIT").startswith(b"+OK")


def test_top_that_stops_early_closes_the_file(pop3: Pop3Harness) -> None:  # noqa: F811
    alice = pop3.add_mailbox(ALICE)
    pop3.deliver(alice, message(1, body_lines=40_000))   # ~1 MB: TOP needs its first piece only
    client = logged_in(pop3.port, ALICE)
    for _ in range(5):
        assert client.cmd("TOP 1 2").startswith(b"+OK")
        assert client.multi()[-2:] == [b"line 0 of message 1\r\n", b"line 1 of message 1\r\n"]
    assert client.cmd("QUIT").startswith(b"+OK")
    proc = Path("/proc/self/fd")
    wait_for(lambda: not any(str(p.resolve()).startswith(str(pop3.store.root)) for p in proc.iterdir()
                             if p.is_symlink() and p.exists()), timeout=10, what="every message file closed")


def test_a_20_mb_retr_reports_no_stall(tmp_path) -> None:
    service = ServiceProcess(tmp_path / "data", env={"POP3SVC_ASYNCIO_DEBUG": "50"}).start()
    try:
        service.winpop("set", "sparequired", "0", check=True)   # USER/PASS without TLS, for brevity
        service.add_mailbox(ALICE, PASSWORD)
        service.add_mailbox(BOB, PASSWORD)
        line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.+/\n"
        body = b"From: s@remote.test\nTo: alice@example.com\nSubject: big\n\n" + line * (20 * 1024 * 1024 // len(line))
        db = Database(service.database_url())
        try:
            with db.read() as session:
                box = session.scalars(select(Mailbox.id).join(Domain, Domain.id == Mailbox.domain_id)
                                      .where(Domain.name == "example.com", Mailbox.name == "alice")).one()
            MailStore(db, service.data_dir / "mailroot", hostname="pop.test").deliver(box, body)
        finally:
            db.dispose()
        other = poplib.POP3("127.0.0.1", service.ports["pop3"], timeout=30)
        other.user(BOB)
        other.pass_(PASSWORD)
        latencies: list[float] = []
        done = threading.Event()

        def noops() -> None:
            while not done.is_set():
                started = time.monotonic()
                other.noop()
                latencies.append(time.monotonic() - started)

        client = poplib.POP3("127.0.0.1", service.ports["pop3"], timeout=60)
        client.user(ALICE)
        client.pass_(PASSWORD)
        pinger = threading.Thread(target=noops)
        pinger.start()
        try:
            _resp, lines, _octets = client.retr(1)
        finally:
            done.set()
            pinger.join(30)
        got = hashlib.sha256(b"\n".join(lines) + b"\n").hexdigest()
        assert got == hashlib.sha256(body).hexdigest()
        client.quit()
        other.quit()
        assert len(latencies) > 3
        latencies.sort()
        assert latencies[len(latencies) // 2] < 0.05, latencies[-5:]   # the median NOOP: not behind the RETR
    finally:
        service.stop()   # fails the test on any "EVENT LOOP STALL" line (over 50 ms)
