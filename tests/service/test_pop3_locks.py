"""One session per mailbox ([IN-USE]): racing sessions, leases that outlive a crash only as long
as they must, and a lock that holds across service nodes sharing one database."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from core.tables import SessionLock
from service.pop3.lock import MailboxLocks
from tests.service.test_pop3_support import PASSWORD, Pop3Harness, RawClient, message, pop3  # noqa: F401

ALICE = "alice@example.com"
IN_USE = b"-ERR [IN-USE] Another session is using this mailbox; try again when it has finished.\r\n"


@pytest.fixture
def alice(pop3: Pop3Harness) -> int:  # noqa: F811
    box = pop3.add_mailbox(ALICE)
    pop3.deliver(box, message(1))
    return box


def try_logon(port: int) -> tuple[RawClient, bytes]:
    c = RawClient(port)
    c.line()
    c.cmd(f"USER {ALICE}")
    return c, c.cmd(f"PASS {PASSWORD}")


def test_sessions_racing_for_one_mailbox(pop3: Pop3Harness, alice: int) -> None:  # noqa: F811
    racers = 8
    barrier = threading.Barrier(racers)
    results: list[tuple[RawClient, bytes]] = []
    lock = threading.Lock()

    def race() -> None:
        c = RawClient(pop3.port)
        c.line()
        c.cmd(f"USER {ALICE}")
        barrier.wait(10)
        reply = c.cmd(f"PASS {PASSWORD}")
        with lock:
            results.append((c, reply))

    threads = [threading.Thread(target=race) for _ in range(racers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    replies = sorted(r for _, r in results)
    assert len(replies) == racers
    winners = [r for r in replies if r.startswith(b"+OK")]
    assert len(winners) == 1, replies
    assert all(r == IN_USE for r in replies if not r.startswith(b"+OK"))
    winner = next(c for c, r in results if r.startswith(b"+OK"))
    assert winner.cmd("QUIT").startswith(b"+OK")
    c, reply = try_logon(pop3.port)            # QUIT released the lock before answering
    assert reply.startswith(b"+OK")
    c.cmd("QUIT")
    for c, _ in results:
        c.close()


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(10)
    return proc.pid


def put_lock(pop3: Pop3Harness, mailbox_id: int, holder: str, seconds: float) -> None:  # noqa: F811
    with pop3.db.write() as session:
        session.add(SessionLock(mailbox_id=mailbox_id, holder=holder,
                                expires_at=datetime.now(UTC) + timedelta(seconds=seconds)))


@pytest.mark.parametrize(("holder", "seconds", "free"), [
    ("other-node:4242:abcd/7", 300, False),
    ("other-node:4242:abcd/7", -1, True),
    ("DEAD", 300, True),
], ids=["live-lease-elsewhere", "expired-lease", "dead-process-on-this-host"])
def test_lease_rules(pop3: Pop3Harness, alice: int, holder: str, seconds: float, free: bool) -> None:  # noqa: F811
    if holder == "DEAD":
        holder = f"{socket.gethostname()}:{dead_pid()}:abcd/1"
    put_lock(pop3, alice, holder, seconds)
    c, reply = try_logon(pop3.port)
    if free:
        assert reply.startswith(b"+OK")
        c.cmd("QUIT")
    else:
        assert reply == IN_USE
        c.close()


def test_lease_is_renewed_and_released(pop3: Pop3Harness, alice: int) -> None:  # noqa: F811
    # Two nodes on this host whose process is alive (our parent's pid stands in for theirs).
    locks = MailboxLocks(pop3.db, lease_seconds=60, node=f"{socket.gethostname()}:{os.getppid()}:aaaa")
    holder = locks.holder(1)
    assert locks.acquire(alice, holder)
    assert not locks.acquire(alice, locks.holder(2))
    with pop3.db.read() as session:
        before = session.scalars(select(SessionLock.expires_at)).one()
    assert locks.renew() == 1
    with pop3.db.read() as session:
        assert session.scalars(select(SessionLock.expires_at)).one() >= before
    other = MailboxLocks(pop3.db, lease_seconds=60, node=f"{socket.gethostname()}:{os.getppid()}:beef")
    assert not other.acquire(alice, other.holder(1))        # a live process on this host holds it
    assert other.renew() == 0
    locks.release(alice, other.holder(1))                    # not the holder: nothing happens
    assert not other.acquire(alice, other.holder(1))
    locks.release_all()
    assert other.acquire(alice, other.holder(1))


def test_lock_holds_across_nodes_sharing_one_database(pop3: Pop3Harness, alice: int, tmp_path) -> None:  # noqa: F811
    second = Pop3Harness(tmp_path / "node2", db_url=pop3.db.url)
    try:
        # Two nodes, one database. In one test process both would carry our pid (which reads as
        # "an earlier incarnation of this process"), so each gets a live foreign pid instead.
        pop3.server.locks.node = f"{socket.gethostname()}:{os.getppid()}:node1"
        second.server.locks.node = f"{socket.gethostname()}:{os.getppid()}:node2"
        first, reply = try_logon(pop3.port)
        assert reply.startswith(b"+OK")
        c, reply = try_logon(second.port)
        assert reply == IN_USE
        first.cmd("QUIT")
        c.cmd(f"USER {ALICE}")
        assert c.cmd(f"PASS {PASSWORD}").startswith(b"+OK")
        c.cmd("QUIT")
    finally:
        second.close()
