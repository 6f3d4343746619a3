"""Foundation benchmarks (not part of the test run).

1. Durable store delivery of 4 KB messages against the same machine's raw Maildir loop
   (create in tmp/ + write + fsync + rename into new/ + fsync new/), alternating A B A B.
   Also: the index transaction alone on both of the store's paths, and the store's own cost
   with fsync made a no-op.
2. `winpop stat` and `winpop list DOMAIN` with 1,000 domains and 100,000 mailboxes, timed as whole
   commands and as admin-channel calls.

Run: python tests/bench/bench_foundation.py [--rounds 5] [--batch 400]
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert  # noqa: E402

from core.db import Database, sqlite_url  # noqa: E402
from core.store import MailStore  # noqa: E402
from core.store.maildir import fsync_dir  # noqa: E402
from core.tables import Domain, Mailbox  # noqa: E402
from tests.core.conftest import make_mailbox  # noqa: E402
from tests.support import ServiceProcess  # noqa: E402

BODY = (b"X" * 78 + b"\r\n") * 51 + b"\r\n"   # ~4 KB
BODY = b"Subject: bench\r\n\r\n" + BODY[: 4096 - 18]


def raw_loop(folder: Path, count: int) -> float:
    """The floor: what any one-file-per-message store must do for a durable delivery."""
    tmp, new = folder / "tmp", folder / "new"
    start = time.perf_counter()
    for i in range(count):
        name = f"raw.{os.getpid()}.{time.time_ns()}.{i}"
        fd = os.open(tmp / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, BODY)
        os.fsync(fd)
        os.close(fd)
        os.rename(tmp / name, new / name)
        fsync_dir(new)
    return count / (time.perf_counter() - start)


def store_loop(store: MailStore, mailbox_id: int, count: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        store.deliver(mailbox_id, BODY)
    return count / (time.perf_counter() - start)


@contextlib.contextmanager
def bench_store() -> Iterator[tuple[Database, MailStore, int, Path]]:
    """A store with one mailbox and a bare Maildir for the raw loop, under /var/tmp, removed after."""
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        base = Path(tmp)
        db = Database(sqlite_url(base / "b.db"))
        db.upgrade()
        store = MailStore(db, base / "root", hostname="bench")
        mid = make_mailbox(db, store, "alice@example.com")
        raw_dir = base / "raw"
        for sub in ("tmp", "new", "cur"):
            (raw_dir / sub).mkdir(parents=True)
        try:
            yield db, store, mid, raw_dir
        finally:
            db.dispose()


def bench_delivery(rounds: int, batch: int) -> dict:
    with bench_store() as (_db, store, mid, raw_dir):
        raw_loop(raw_dir, 50)
        store_loop(store, mid, 50)          # warm-up, not counted
        raws, stores, ratios = [], [], []
        for _ in range(rounds):
            r = raw_loop(raw_dir, batch)
            s = store_loop(store, mid, batch)
            raws.append(r)
            stores.append(s)
            ratios.append(s / r)
    return {"raw": raws, "store": stores, "ratio": ratios}


def bench_overhead(batch: int) -> tuple[float, float]:
    """The store's own cost per message: both loops with fsync replaced by a no-op (ms, ms)."""
    real_fsync = os.fsync
    os.fsync = lambda fd: None
    try:
        with bench_store() as (_db, store, mid, raw_dir):
            raw_ms = [1e3 / raw_loop(raw_dir, batch) for _ in range(3)]
            store_ms = [1e3 / store_loop(store, mid, batch) for _ in range(3)]
    finally:
        os.fsync = real_fsync
    return statistics.median(raw_ms), statistics.median(store_ms)


def bench_index_paths(count: int = 2000) -> tuple[float, float]:
    """The delivery's index transaction alone (lock, insert, two counter updates, commit), ms
    each: through SQLAlchemy Core on a pooled connection, and on the store's kept SQLite
    connection with the same statements compiled once (what MailStore uses on SQLite)."""
    from datetime import datetime

    from core.store.index import BUMP_DOMAIN, BUMP_MAILBOX, CoreIndexWriter, SqliteIndexWriter

    with bench_store() as (db, _store, mid, _raw_dir):
        now = datetime.now(UTC)

        def timed(transaction, index_type, offset: int) -> float:
            """ms per transaction: lock the row, insert, move both counters, commit."""
            start = time.perf_counter()
            for i in range(offset, offset + count):
                with transaction() as handle:
                    index = index_type(handle)
                    index.lock_mailboxes([mid])
                    index.insert_message(mid, f"u{i}", f"new/m{i}", 4096, now)
                    index.bump(BUMP_MAILBOX, {"mid": mid, "n": 1, "sz": 4096})
                    index.bump(BUMP_DOMAIN, {"did": 1, "n": 1, "sz": 4096})
            return (time.perf_counter() - start) / count * 1e3

        samples = [(timed(db.write_conn, CoreIndexWriter, 2 * r * count),
                    timed(db.sqlite_write, SqliteIndexWriter, (2 * r + 1) * count)) for r in range(3)]
    return statistics.median(c for c, _ in samples), statistics.median(r for _, r in samples)


def populate(data_dir: Path, domains: int = 1000, mailboxes: int = 100_000, big: int = 20_000) -> None:
    """1,000 domains and 100,000 mailboxes (one domain holds 20,000), rows and folders."""
    data_dir.mkdir(parents=True)
    db = Database(sqlite_url(data_dir / "pop3svc.db"))
    db.upgrade()
    per_small = (mailboxes - big) // (domains - 1)
    with db.write() as session:
        rows = [{"id": i + 1, "name": f"d{i:04d}.example", "locked": False,
                 "mailbox_count": big if i == 0 else per_small,
                 "message_count": 0, "total_bytes": 0} for i in range(domains)]
        rows[0]["name"] = "big.example"
        session.execute(insert(Domain), rows)
        boxes = []
        for d in rows:
            for j in range(d["mailbox_count"]):
                boxes.append({"domain_id": d["id"], "name": f"user{j:05d}", "locked": False,
                              "message_count": j % 50, "total_bytes": (j % 50) * 4096, "has_user": True})
        session.execute(insert(Mailbox), boxes)
        for d in rows:
            total = sum((j % 50) for j in range(d["mailbox_count"]))
            session.query(Domain).filter_by(id=d["id"]).update({"message_count": total,
                                                                "total_bytes": total * 4096})
    db.dispose()
    root = data_dir / "mailroot"
    for d in rows:
        for j in range(d["mailbox_count"]):
            for sub in ("tmp", "new", "cur"):
                os.makedirs(root / d["name"] / f"user{j:05d}" / sub, exist_ok=True)


def timed(fn, runs: int = 7) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def bench_admin() -> dict:
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        data = Path(tmp) / "data"
        t0 = time.perf_counter()
        populate(data)
        populate_s = time.perf_counter() - t0
        proc = ServiceProcess(data, ports={n: 0 for n in ("pop3", "pop3s", "smtp", "submission", "smtps")})
        t0 = time.perf_counter()
        proc.start(timeout=600)
        start_s = time.perf_counter() - t0
        try:
            winpop = [sys.executable, "-m", "service.winpop", "--data-dir", str(data)]

            def cli(*args):
                subprocess.run(winpop + list(args), cwd=ROOT, check=True, capture_output=True)

            out = {
                "populate_s": populate_s,
                "service_start_s (incl. reconcile of 100,000 Maildirs)": start_s,
                "winpop --help (process start only)": timed(lambda: cli("help")),
                "winpop stat (1,000 domains)": timed(lambda: cli("stat")),
                "winpop stat big.example (20,000 mailboxes)": timed(lambda: cli("stat", "big.example")),
                "winpop list (1,000 domains)": timed(lambda: cli("list")),
                "winpop list big.example (20,000 mailboxes)": timed(lambda: cli("list", "big.example")),
                "winpop list d0500.example (80 mailboxes)": timed(lambda: cli("list", "d0500.example")),
            }
            with proc.client() as client:
                out["op stat"] = timed(lambda: client.call("stat"))
                out["op mailbox.list big.example"] = timed(lambda: client.call("mailbox.list", domain="big.example"))
                out["op mailbox.list big.example, page of 200"] = timed(
                    lambda: client.call("mailbox.list", domain="big.example", offset=10_000, limit=200))
                out["op domain.list"] = timed(lambda: client.call("domain.list"))
            return out
        finally:
            proc.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=400)
    parser.add_argument("--skip-admin", action="store_true")
    args = parser.parse_args()
    result = bench_delivery(args.rounds, args.batch)
    med = {k: statistics.median(v) for k, v in result.items()}
    print(f"## Durable delivery, 4 KB, {args.rounds} rounds x {args.batch} messages, alternating")
    print(f"raw Maildir loop: {med['raw']:.0f} msg/s  [{min(result['raw']):.0f}-{max(result['raw']):.0f}]")
    print(f"MailStore.deliver: {med['store']:.0f} msg/s  [{min(result['store']):.0f}-{max(result['store']):.0f}]")
    print(f"ratio store/raw (median of paired ratios): {med['ratio']:.2f}  "
          f"[{min(result['ratio']):.2f}-{max(result['ratio']):.2f}]")
    core_ms, sqlite_ms = bench_index_paths()
    print(f"index transaction alone: SQLAlchemy Core {core_ms:.3f} ms, kept SQLite connection {sqlite_ms:.3f} ms")
    raw_ms, store_ms = bench_overhead(args.batch)
    print(f"without fsync: raw {raw_ms:.3f} ms, store {store_ms:.3f} ms per message "
          f"(the store's own cost: {store_ms - raw_ms:.3f} ms)")
    if not args.skip_admin:
        print("\n## Admin with 1,000 domains and 100,000 mailboxes (median of 7, seconds)")
        for name, value in bench_admin().items():
            print(f"{name}: {value:.3f}")


if __name__ == "__main__":
    main()
