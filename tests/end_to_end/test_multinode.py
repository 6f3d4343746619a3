"""Several service nodes on one PostgreSQL database and one shared mail root (issue 8, DESIGN §8).

Two real ``python main.py service`` processes on loopback, each with its own data directory and
ports, the same ``--db-url`` and a mail root set once through winpop (both read it from the
database). Needs PostgreSQL: ``POP3SVC_TEST_DB_URL`` (``.ci/run`` starts a server and sets it).
"""
from __future__ import annotations

import asyncio
import poplib
import shutil
import smtplib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select

from core.ipc.client import AdminClient
from core.store.maildir import pop3_size
from core.tables import QueuedRecipient
from tests.support import ServiceProcess, db_url_for, free_port, pg_url, wait_for

pytestmark = pytest.mark.skipif(
    pg_url() is None, reason="multi-node tests need PostgreSQL: set POP3SVC_TEST_DB_URL (.ci/run does)")

PASSWORD = "node-pass-9"
ALICE = "alice@example.com"


@pytest.fixture
def nodes(tmp_path):
    """Node A and node B on one database; the mail root on 'shared storage' (a common folder)."""
    url = db_url_for(tmp_path / "cluster.db")
    shared = tmp_path / "shared" / "mailroot"
    a = ServiceProcess(tmp_path / "a", db_url=url).start()
    started = [a]
    try:
        a.winpop("set", "mailroot", str(shared), check=True)
        a.winpop("set", "sparequired", "0", check=True)   # poplib's USER/PASS without TLS, for brevity
        a.stop()
        a.start()                       # the mail root applies at start-up
        key = a.data_dir / "server.key"
        (tmp_path / "b").mkdir(mode=0o700)
        if key.exists():                # every node needs the same server key (APOP, CRAM-MD5 secrets)
            shutil.copy2(key, tmp_path / "b" / "server.key")
        b = ServiceProcess(tmp_path / "b", db_url=url).start()
        started.append(b)
        assert b.call("server.info")["mailroot"] == str(shared)   # read from the database
        assert b.call("server.info")["key_problem"] == ""           # the same key: nothing to report
        yield a, b
    finally:
        for node in started:
            node.stop()


def pop3_login(node: ServiceProcess, address: str = ALICE) -> poplib.POP3:
    client = poplib.POP3("127.0.0.1", node.ports["pop3"], timeout=10)
    client.user(address)
    client.pass_(PASSWORD)
    return client


def test_both_nodes_share_domains_mailboxes_and_see_each_others_changes_within_a_second(nodes):
    a, b = nodes
    with AdminClient(b.data_dir, timeout=5) as watcher:
        watcher.call("events.subscribe")
        started = time.monotonic()
        a.call("domain.add", name="example.com")
        event = watcher.next_event()
        while event["event"] != "domain.added":
            event = watcher.next_event()
        assert event["data"]["name"] == "example.com"
        assert time.monotonic() - started < 1.0
        b.call("mailbox.add", address=ALICE, password=PASSWORD)      # made through B ...
        assert a.call("mailbox.get", address=ALICE)["name"] == "alice"  # ... seen through A
        a.call("mailbox.lock", address=ALICE)
        event = watcher.next_event()
        while not (event["event"] == "mailbox.changed" and event["data"].get("locked")):
            event = watcher.next_event()
        assert b.call("mailbox.get", address=ALICE)["locked"] is True
    # A setting changed through one node is in force on the other without a restart.
    a.winpop("set", "max_connections_per_ip", "7", check=True)
    wait_for(lambda: b.call("settings.get", name="max_connections_per_ip") == {"max_connections_per_ip": 7},
             timeout=5, what="the setting on node B")


def test_one_pop3_session_per_mailbox_across_nodes(nodes):
    a, b = nodes
    a.add_mailbox(ALICE, PASSWORD)
    first = pop3_login(a)
    try:
        second = poplib.POP3("127.0.0.1", b.ports["pop3"], timeout=10)
        second.user(ALICE)
        with pytest.raises(poplib.error_proto, match=r"IN-USE"):
            second.pass_(PASSWORD)
        second.close()
    finally:
        first.quit()
    pop3_login(b).quit()   # given back at QUIT: the other node may have it now


def test_racing_logons_on_both_nodes_let_exactly_one_in(nodes):
    a, b = nodes
    a.add_mailbox(ALICE, PASSWORD)
    for _round in range(5):
        barrier = threading.Barrier(4)

        def attempt(node: ServiceProcess, barrier: threading.Barrier = barrier):
            client = poplib.POP3("127.0.0.1", node.ports["pop3"], timeout=10)
            client.user(ALICE)
            barrier.wait()
            try:
                client.pass_(PASSWORD)
                return client
            except poplib.error_proto as exc:
                assert b"IN-USE" in exc.args[0]
                client.close()
                return None

        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(attempt, [a, b, a, b]))
        winners = [c for c in results if c is not None]
        assert len(winners) == 1
        winners[0].quit()


def test_concurrent_deliveries_through_both_nodes_keep_exact_counters(nodes):
    a, b = nodes
    a.add_mailbox(ALICE, PASSWORD)
    a.add_mailbox("bob@example.com", PASSWORD)
    per_node = 30
    sent: list[bytes] = []
    lock = threading.Lock()

    def send(node: ServiceProcess, n: int) -> None:
        body = (f"From: s{n}@remote.test\r\nTo: {ALICE}\r\nSubject: m{n} via {node.data_dir.name}\r\n\r\n"
                + "x" * (n * 7 % 400) + "\r\n").encode()
        with smtplib.SMTP("127.0.0.1", node.ports["smtp"], timeout=30) as smtp:
            smtp.sendmail(f"s{n}@remote.test", [ALICE, "bob@example.com"], body)
        with lock:
            sent.append(body)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: send(a if i % 2 else b, i), range(2 * per_node)))
    for address in (ALICE, "bob@example.com"):
        name = address.split("@")[0]
        folder = Path(a.call("server.info")["mailroot"]) / "example.com" / name / "new"
        files = list(folder.iterdir())
        assert len(files) == 2 * per_node
        on_disk = sum(pop3_size(p.read_bytes()) for p in files)
        for node in (a, b):
            box = node.call("mailbox.get", address=address)
            assert box["message_count"] == 2 * per_node
            assert box["total_bytes"] == on_disk      # (the files carry the Received: header too)
        assert len(sent) == 2 * per_node
    domain = b.call("domain.get", name="example.com")
    assert domain["message_count"] == 4 * per_node and domain["total_bytes"] == 2 * on_disk


class StallingSink:
    """A remote SMTP server that can hold a delivery in DATA (the sender is 'busy with it')."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.stall = True
        self.in_data = threading.Event()
        self.release = threading.Event()
        self.received: list[bytes] = []
        self.port = free_port()
        sink = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # noqa: N802, ANN001 - aiosmtpd's API
                if sink.stall:
                    sink.in_data.set()
                    await asyncio.get_running_loop().run_in_executor(None, sink.release.wait, 60)
                    return "451 4.3.0 try again"
                sink.received.append(envelope.original_content)
                return "250 OK"

        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def close(self) -> None:
        self.release.set()
        self.controller.stop()


def test_a_node_killed_holding_a_mailbox_lock_and_a_queue_item_is_taken_over(nodes):
    a, b = nodes
    sink = StallingSink()
    try:
        a.add_mailbox(ALICE, PASSWORD)
        for name, value in (("queue_lease", "5"), ("pop3_lock_lease", "15"), ("relay_networks", "127.0.0.1/32"),
                            ("smtp_routes", f"remote.test=127.0.0.1:{sink.port}"), ("queue_retry_interval", "1")):
            a.winpop("set", name, value, check=True)
        # Settings reach B through the event relay; wait until B has the route before sending.
        wait_for(lambda: b.call("settings.get", name="queue_lease") == {"queue_lease": 5}, timeout=5,
                 what="the settings on node B")
        with smtplib.SMTP("127.0.0.1", a.ports["smtp"], timeout=30) as smtp:
            smtp.sendmail(ALICE, ["carol@remote.test"], b"Subject: outbound\r\n\r\nto the remote sink\r\n")
        assert sink.in_data.wait(30), "a node is delivering"
        engine = create_engine(a.database_url())
        with engine.connect() as conn:
            holder = conn.scalar(select(QueuedRecipient.claimed_by))
        victim, survivor = (a, b) if str(a.data_dir.resolve()) in holder else (b, a)
        session = pop3_login(victim)          # the victim holds alice's session lock as well
        victim.kill()                         # SIGKILL: no clean-up of any kind
        session.sock.close()
        sink.stall = False
        sink.release.set()
        # The mailbox: free again on the survivor (lease expired, or the holder's process is gone).
        wait_for(lambda: _can_log_in(survivor), timeout=40, interval=0.5, what="the mailbox lock taken over")
        # The queue item: claimed and delivered by the survivor once the lease ran out.
        wait_for(lambda: sink.received, timeout=60, interval=0.2, what="the survivor to deliver")
        wait_for(lambda: survivor.call("queue.list")["items"] == [], timeout=30, what="an empty queue")
        assert len(sink.received) == 1 and b"to the remote sink" in sink.received[0]
        engine.dispose()
    finally:
        sink.close()


def _can_log_in(node: ServiceProcess) -> bool:
    try:
        pop3_login(node).quit()
        return True
    except poplib.error_proto:
        return False


def _relayed(node: ServiceProcess) -> int:
    return node.call("service.status")["counters"].get("cluster.events_received", 0)


def test_bans_made_on_one_node_hold_on_the_other(nodes):
    a, b = nodes
    a.add_mailbox(ALICE, PASSWORD)
    a.winpop("set", "throttle_failures", "3", check=True)
    a.winpop("set", "throttle_delay_ms", "0", check=True)
    a.winpop("set", "throttle_allow", "192.0.2.1", check=True)   # loopback is allow-listed by default; ban it here
    wait_for(lambda: b.call("settings.get", name="throttle_allow") == {"throttle_allow": "192.0.2.1"}, timeout=5,
             what="the setting on node B")
    # Failures counted across nodes: two on A and one on B make three (from one address: the
    # address is banned, not the login name, so the real mallory is not locked out elsewhere).
    for node, other in ((a, b), (b, a), (a, None)):
        seen = _relayed(other) if other is not None else 0
        client = poplib.POP3("127.0.0.1", node.ports["pop3"], timeout=10)
        client.user("mallory@example.com")
        with pytest.raises(poplib.error_proto):
            client.pass_("wrong")
        client.close()
        if other is not None:   # the other node has heard of it (bounded wait, not a sleep)
            wait_for(lambda other=other, seen=seen: _relayed(other) > seen, timeout=10, what="the failure relayed")
    wait_for(lambda: {x["value"] for x in b.call("ban.list")["items"]} == {"127.0.0.1"},
             timeout=5, what="the ban listed on node B")
    # The address is banned on B too: B turns the connection away at once.
    with pytest.raises(poplib.error_proto, match="Too many failed logons"):
        poplib.POP3("127.0.0.1", b.ports["pop3"], timeout=10)
    b.call("ban.lift", value="127.0.0.1")
    wait_for(lambda: not a.call("ban.list")["items"], timeout=5, what="the bans lifted on node A")
    pop3_login(a).quit()      # lifted on A as well, at once (the relay, not the 5 s refresh)
