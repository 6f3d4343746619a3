"""One message for many local recipients: hard links (what the store does) against copies.

For 1, 5 and 20 recipients, `MailStore.deliver_many` stores 4 KB messages durably, once with its
hard links (one file, one fsync of its data, one fsync per recipient folder) and once with a copy
per recipient (the fallback it uses across file systems, forced here by making `os.link` fail
with EXDEV). Rounds alternate; the report gives medians of messages/s and the disk blocks used.

    python tests/bench/bench_recipients.py [--rounds 5] [--messages 100]
"""
from __future__ import annotations

import argparse
import errno
import os
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from core.db import Database, sqlite_url  # noqa: E402
from core.store import MailStore  # noqa: E402
from tests.core.conftest import make_mailbox  # noqa: E402

BODY = b"Subject: bench\r\n\r\n" + (b"X" * 78 + b"\r\n") * 51


@contextmanager
def copies():
    """Make every hard link fail as it does across file systems, so the store copies."""
    real = os.link

    def no_link(*_args, **_kwargs):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    os.link = no_link
    try:
        yield
    finally:
        os.link = real


def blocks_used(folder: Path) -> int:
    """512-byte blocks of the distinct files under ``folder`` (a hard-linked file counts once)."""
    seen, total = set(), 0
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            st = os.stat(os.path.join(dirpath, name))
            if st.st_ino not in seen:
                seen.add(st.st_ino)
                total += st.st_blocks
    return total


def run(store: MailStore, ids: list[int], count: int, *, copy: bool) -> float:
    start = time.perf_counter()
    if copy:
        with copies():
            for _ in range(count):
                store.deliver_many(ids, BODY)
    else:
        for _ in range(count):
            store.deliver_many(ids, BODY)
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--messages", type=int, default=100)
    args = parser.parse_args()
    print(f"## {args.messages} messages of 4 KB per run, {args.rounds} rounds alternating, medians")
    print("| recipients | hard links msg/s | copies msg/s | links / copies | disk, links | disk, copies |")
    print("|---|---|---|---|---|---|")
    for recipients in (1, 5, 20):
        with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
            base = Path(tmp)
            setups = {}
            for copy in (False, True):
                db = Database(sqlite_url(base / f"copy{copy}.db"))
                db.upgrade()
                store = MailStore(db, base / f"root-copy{copy}", hostname="bench")
                ids = [make_mailbox(db, store, f"user{i}@example.com") for i in range(recipients)]
                run(store, ids, 10, copy=copy)   # warm-up
                setups[copy] = (db, store, ids)
            rates: dict[bool, list[float]] = {False: [], True: []}
            for _ in range(args.rounds):
                for copy, (_db, store, ids) in setups.items():
                    rates[copy].append(run(store, ids, args.messages, copy=copy))
            disk = {copy: blocks_used(store.root) * 512 for copy, (_db, store, _ids) in setups.items()}
            for db, _store, _ids in setups.values():
                db.dispose()
            link, cp = statistics.median(rates[False]), statistics.median(rates[True])
            print(f"| {recipients} | {link:,.0f} | {cp:,.0f} | {link / cp:.2f} | "
                  f"{disk[False] / 1e6:.1f} MB | {disk[True] / 1e6:.1f} MB |")

if __name__ == "__main__":
    main()
