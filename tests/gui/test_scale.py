"""Scale: 1,000 domains and 100,000 mailboxes (plus one domain of 20,000) against the fake service.

The fake answers in the event loop like the socket would, so these times measure the console's
own work: paging, model updates, painting. Limits are generous multiples of what the issue asks
(under a second) so a slow CI box does not flake; the measured figures are printed.
"""
from __future__ import annotations

import time

import pytest
from PySide6.QtCore import QModelIndex, Qt
from PySide6.QtWidgets import QApplication

from gui.models import paged_table
from tests.fake_service import FakeService, FakeServiceClient
from tests.gui.conftest import open_window

BIG = "big.example.org"


@pytest.fixture(scope="module")
def big_service() -> FakeService:
    svc = FakeService()
    svc.seed_bulk(1000, 100, big=(BIG, 20_000))   # 100,000 + 20,000 mailboxes
    return svc


def test_the_window_opens_with_1000_domains_in_under_a_second(qtbot, big_service, qsettings, errors):
    client = FakeServiceClient(big_service)
    started = time.perf_counter()
    window = open_window(qtbot, client, qsettings)
    qtbot.waitUntil(lambda: window.domain_model.rowCount() > 0 and len(window.tree_model.server.children) > 0)
    QApplication.processEvents()
    window.repaint()
    elapsed = time.perf_counter() - started
    print(f"\nwindow + domain list (1,001 domains): {elapsed * 1000:.0f} ms")
    assert window.domain_model.total == 1001
    assert elapsed < 1.0


def test_a_domain_with_20000_mailboxes_lists_in_under_a_second(qtbot, big_service, qsettings, errors):
    client = FakeServiceClient(big_service)
    window = open_window(qtbot, client, qsettings)
    qtbot.waitUntil(lambda: window.tree_model.domain_node(BIG) is not None)
    started = time.perf_counter()
    window.select_domain(BIG)
    qtbot.waitUntil(lambda: window.mailbox_model.rowCount() > 0)
    window.repaint()
    first = time.perf_counter() - started
    print(f"\nfirst page of 20,000 mailboxes: {first * 1000:.0f} ms")
    assert first < 1.0
    assert window.mailbox_model.total == 20_000
    assert window.mailbox_model.rowCount() == paged_table.PAGE      # loaded lazily

    # Scroll to the end: the view asks for more pages; each must be quick.
    view = window.mailbox_pane.view
    started = time.perf_counter()
    pages = 0
    while window.mailbox_model.canFetchMore(QModelIndex()) and pages < 6:
        view.scrollToBottom()
        QApplication.processEvents()
        qtbot.waitUntil(lambda: not window.mailbox_model.loading)
        pages += 1
    per_page = (time.perf_counter() - started) / max(pages, 1)
    print(f"scrolling: {per_page * 1000:.0f} ms per page of {paged_table.PAGE}")
    assert window.mailbox_model.rowCount() == (pages + 1) * paged_table.PAGE
    assert per_page < 0.25

    # Sorting by size asks the service for the first page in that order (no load-everything).
    started = time.perf_counter()
    view.sortByColumn(1, Qt.SortOrder.DescendingOrder)
    qtbot.waitUntil(lambda: not window.mailbox_model.loading and window.mailbox_model.rowCount() >= paged_table.PAGE,
                    timeout=10_000)
    window.repaint()
    sort_time = time.perf_counter() - started
    print(f"sort 20,000 by size (first page from the service): {sort_time * 1000:.0f} ms")
    sizes = [window.mailbox_model.row(r)["total_bytes"] for r in range(paged_table.PAGE)]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] == max(
        m.total_bytes for m in big_service.domains[BIG].mailboxes.values())
    assert sort_time < 1.0

    # Filtering asks the service again.
    started = time.perf_counter()
    window.mailbox_pane.filter.setText("u0199")
    window.mailbox_pane.apply_filter_now()
    qtbot.waitUntil(lambda: window.mailbox_model.fully_loaded and window.mailbox_model.total == 100)
    filter_time = time.perf_counter() - started
    print(f"filter 20,000 to 100: {filter_time * 1000:.0f} ms")
    assert filter_time < 1.0


def test_a_burst_of_events_does_not_stall_the_window(qtbot, big_service, qsettings, errors):
    client = FakeServiceClient(big_service)
    window = open_window(qtbot, client, qsettings)
    qtbot.waitUntil(lambda: window.select_domain(BIG))
    qtbot.waitUntil(lambda: window.mailbox_model.rowCount() > 0)
    events = []
    for i in range(1000):      # the service's work, not timed: the console's is
        events += big_service.deliver(f"u{i % 400:06d}@{BIG}", 1000)
    started = time.perf_counter()
    client._publish(events)
    QApplication.processEvents()
    window.repaint()
    elapsed = time.perf_counter() - started
    print(f"\n2,000 change events applied and painted: {elapsed * 1000:.0f} ms")
    expected = big_service.domains[BIG].mailboxes["u000399"].message_count
    assert window.mailbox_model.item(f"u000399@{BIG}")["message_count"] == expected
    assert elapsed < 1.0
