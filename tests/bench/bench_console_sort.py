"""Console sorting with 20,000 mailboxes in one domain, against the real service (not part of the
test run).

Measures, with the console's own client (``gui.ipc_client.IpcClient``, offscreen) and window:
1. the first page of the domain (name order);
2. a sort by size, descending: now one ``mailbox.list`` with ``sort``/``descending`` for the first
   page; before issue 5's change the console loaded all 20,000 in pages of 2,000 and sorted in
   memory (reproduced here request for request, on the same client, for the comparison);
3. the same sort over the remote administration listener (TLS, token) as a remote console would;
4. the bare admin-channel calls (blocking client) for the service's share.

Run: python tests/bench/bench_console_sort.py [--runs 7]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from PySide6.QtCore import QEventLoop, QSettings, Qt, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402
from sqlalchemy import insert  # noqa: E402

from core.db import Database, sqlite_url  # noqa: E402
from core.tables import Domain, Mailbox  # noqa: E402
from tests.support import ServiceProcess, free_port, wait_for  # noqa: E402

DOMAIN = "big.example"
COUNT = 20_000


def populate(data_dir: Path) -> None:
    """One domain of 20,000 mailboxes with varied sizes (rows and Maildir folders)."""
    data_dir.mkdir(parents=True)
    db = Database(sqlite_url(data_dir / "pop3svc.db"))
    db.upgrade()
    with db.write() as session:
        session.execute(insert(Domain), [{"id": 1, "name": DOMAIN, "locked": False, "mailbox_count": COUNT,
                                          "message_count": 0, "total_bytes": 0}])
        session.execute(insert(Mailbox), [
            {"domain_id": 1, "name": f"user{j:05d}", "locked": j % 97 == 0, "message_count": (j * 7) % 50,
             "total_bytes": ((j * 7919) % 100_003) * 41, "has_user": True} for j in range(COUNT)])
    db.dispose()
    for j in range(COUNT):
        for sub in ("tmp", "new", "cur"):
            os.makedirs(data_dir / "mailroot" / DOMAIN / f"user{j:05d}" / sub, exist_ok=True)


def wait(predicate, timeout: float = 60.0) -> None:
    deadline = time.perf_counter() + timeout
    loop = QEventLoop()
    while not predicate():
        if time.perf_counter() > deadline:
            raise TimeoutError("the console did not finish in time")
        QTimer.singleShot(1, loop.quit)
        loop.exec()


def median_ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:.0f} ms (min {min(samples) * 1000:.0f}, max {max(samples) * 1000:.0f})"


def load_all_then_sort(client) -> float:
    """What the console did before: every page of 2,000, then a sort in memory."""
    rows: list[dict] = []
    done = []
    started = time.perf_counter()

    def page(offset: int) -> None:
        client.request("mailbox.list", {"domain": DOMAIN, "offset": offset, "limit": 2000}, got, print)

    def got(result: dict) -> None:
        rows.extend(result["items"])
        if len(rows) < result["total"]:
            page(len(rows))
        else:
            rows.sort(key=lambda m: (m["total_bytes"], m["name"]), reverse=True)
            done.append(time.perf_counter() - started)

    page(0)
    wait(lambda: bool(done))
    return done[0]


def console_sort(window, runs: int) -> tuple[list[float], list[float]]:
    model, view = window.mailbox_model, window.mailbox_pane.view
    first, sort = [], []
    for _ in range(runs):
        window.tree.setCurrentIndex(window.tree_model.index_of(window.tree_model.server))
        wait(lambda: not model.loading)
        view.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        model.domain = ""
        started = time.perf_counter()
        window.select_domain(DOMAIN)
        wait(lambda: model.rowCount() > 0 and not model.loading)
        window.repaint()
        first.append(time.perf_counter() - started)
        started = time.perf_counter()
        view.sortByColumn(1, Qt.SortOrder.DescendingOrder)
        wait(lambda: model.rowCount() > 0 and not model.loading)
        window.repaint()
        sort.append(time.perf_counter() - started)
        sizes = [model.row(r)["total_bytes"] for r in range(min(model.rowCount(), 500))]
        assert sizes == sorted(sizes, reverse=True), "not sorted by size"
    return first, sort


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    app = QApplication.instance() or QApplication(sys.argv)

    from gui.ipc_client import IpcClient
    from gui.views.main_window import MainWindow

    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        data = Path(tmp) / "data"
        populate(data)
        proc = ServiceProcess(data, ports={n: 0 for n in ("pop3", "pop3s", "smtp", "submission", "smtps")})
        proc.start(timeout=600)
        try:
            tcp = free_port()
            proc.call("settings.set", name="admin_tcp_bind", value="127.0.0.1")
            proc.call("settings.set", name="admin_tcp_port", value=tcp)
            wait_for(lambda: proc.call("server.info")["admin_tcp"]["state"] == "running", 10)
            token = proc.call("admin.token_create", name="bench")["token"]
            fingerprint = proc.call("server.info")["tls"]["fingerprint"]
            results: dict[str, str] = {}

            with proc.client() as blocking:
                def op(**extra) -> float:
                    started = time.perf_counter()
                    blocking.call("mailbox.list", domain=DOMAIN, **extra)
                    return time.perf_counter() - started
                results["op: first page by name (500)"] = median_ms([op(limit=500) for _ in range(args.runs)])
                results["op: first page by size desc (500)"] = median_ms(
                    [op(limit=500, sort="size", descending=True) for _ in range(args.runs)])
                results["op: page at offset 10,000 by size desc"] = median_ms(
                    [op(offset=10_000, limit=500, sort="size", descending=True) for _ in range(args.runs)])
                results["op: all 20,000 in one answer"] = median_ms([op() for _ in range(3)])

            for label, point in (("local socket", None), ("TLS listener", ("127.0.0.1", tcp))):
                client = IpcClient(data)
                if point:
                    client.point_at_remote(*point, token, fingerprint)
                else:
                    client.start()
                wait(lambda client=client: client.is_connected)
                settings = QSettings(str(Path(tmp) / f"{label}.ini"), QSettings.Format.IniFormat)
                window = MainWindow(client, settings=settings)
                window.resize(1000, 620)
                window.show()
                wait(lambda window=window: window.tree_model.domain_node(DOMAIN) is not None)
                first, sort = console_sort(window, args.runs)
                results[f"console ({label}): open the domain, first page"] = median_ms(first)
                results[f"console ({label}): sort by size, first page from the service"] = median_ms(sort)
                results[f"console ({label}): before, load all 20,000 + sort in memory"] = median_ms(
                    [load_all_then_sort(client) for _ in range(args.runs)])
                window.close()
                client.stop()
            for key, value in results.items():
                print(f"{key:<72} {value}")
        finally:
            proc.stop()
    app.quit()


if __name__ == "__main__":
    main()
