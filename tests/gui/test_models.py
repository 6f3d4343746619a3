"""The tree and list models: Qt's model tester, paging, sorting, filtering, and change events."""
from __future__ import annotations

import pytest
from PySide6.QtCore import QModelIndex, Qt
from PySide6.QtTest import QAbstractItemModelTester

from gui.models import paged_table
from gui.models.domain_table import DomainTableModel
from gui.models.mailbox_table import MailboxTableModel
from gui.models.tree_model import ScopeTreeModel
from tests.fake_service import FakeService, FakeServiceClient

FAIL = QAbstractItemModelTester.FailureReportingMode.Fatal


@pytest.fixture
def big(qtbot) -> FakeServiceClient:
    svc = FakeService()
    svc.seed_bulk(30, 3, big=("big.example.com", 1234))
    client = FakeServiceClient(svc)
    client.start()
    qtbot.waitUntil(lambda: client.is_connected)
    return client


def attached(model, client):
    """The window routes the service's events to every model; here we do it by hand."""
    client.event_received.connect(model.apply_event)
    QAbstractItemModelTester(model, FAIL)
    return model


def names(model) -> list[str]:
    return [model.data(model.index(r, 0)) for r in range(model.rowCount())]


def test_tree_model_passes_the_model_tester_through_load_and_events(qtbot, big):
    """Tree: load, add, change, delete, reload, all under QAbstractItemModelTester."""
    model = attached(ScopeTreeModel(big), big)
    model.reload()
    qtbot.waitUntil(lambda: len(model.server.children) == 31)
    big.external("domain.add", {"name": "aaa.example.org"})
    big.external("domain.lock", {"name": "d00003.example.net"})
    big.external("domain.delete", {"name": "d00004.example.net"})
    qtbot.waitUntil(lambda: model.domain_node("aaa.example.org") is not None
                    and model.domain_node("d00004.example.net") is None)
    keys = [n.key for n in model.server.children]
    assert keys == sorted(keys)
    assert model.domain_node("d00003.example.net").data["locked"] is True
    idx = model.index_of(model.domain_node("d00003.example.net"))
    assert "locked" in model.data(idx)
    model.reload()
    qtbot.waitUntil(lambda: len(model.server.children) == 31)


def test_tree_shows_server_state_badge_and_domain_lock(qtbot, big):
    model = ScopeTreeModel(big)
    model.set_server_info({"hostname": "mail.example.com"})
    model.apply_event("service.state", {"state": "paused"})
    idx = model.index_of(model.server)
    assert model.data(idx) == "mail.example.com (Paused)"
    assert "paused" in model.data(idx, Qt.ItemDataRole.ToolTipRole)
    assert not model.data(idx, Qt.ItemDataRole.DecorationRole).isNull()


def test_domain_table_model_tester_and_columns(qtbot, big):
    model = attached(DomainTableModel(big), big)
    model.reload()
    qtbot.waitUntil(lambda: model.fully_loaded)
    assert model.rowCount() == 31
    headers = [model.headerData(c, Qt.Orientation.Horizontal) for c in range(model.columnCount())]
    assert headers == ["Domain Name", "Mailboxes", "Domain Size (KB)", "Messages", "State"]
    row = model.row_of("big.example.com")
    assert model.data(model.index(row, 1)) == "1,234"
    assert model.data(model.index(row, 4)) == "Unlocked"


def test_mailbox_list_loads_in_pages_as_the_view_scrolls(qtbot, big):
    """Only the first page is requested; fetchMore asks for the next with offset = rows loaded."""
    model = attached(MailboxTableModel(big), big)
    model.set_domain("big.example.com")
    qtbot.waitUntil(lambda: model.rowCount() == paged_table.PAGE)
    assert model.total == 1234 and model.canFetchMore(QModelIndex())
    model.fetchMore(QModelIndex())
    qtbot.waitUntil(lambda: model.rowCount() == 2 * paged_table.PAGE)
    sent = big.ops_sent("mailbox.list")
    assert [(p["offset"], p["limit"]) for p in sent] == [(0, paged_table.PAGE), (paged_table.PAGE, paged_table.PAGE)]
    while model.canFetchMore(QModelIndex()):
        model.fetchMore(QModelIndex())
        qtbot.waitUntil(lambda: not model.loading)
    assert model.rowCount() == 1234
    assert names(model) == sorted(names(model))


def test_sorting_by_another_column_asks_the_service_for_pages_in_that_order(qtbot, big):
    model = attached(MailboxTableModel(big), big)
    model.set_domain("big.example.com")
    qtbot.waitUntil(lambda: model.rowCount() == paged_table.PAGE)
    model.sort(2, Qt.SortOrder.DescendingOrder)   # Messages
    qtbot.waitUntil(lambda: model.rowCount() == paged_table.PAGE and not model.loading)
    assert big.ops_sent("mailbox.list")[-1] == {"domain": "big.example.com", "offset": 0, "limit": paged_table.PAGE,
                                                 "sort": "messages", "descending": True}
    assert not model.fully_loaded                  # paged, not everything
    while model.canFetchMore(QModelIndex()):
        model.fetchMore(QModelIndex())
        qtbot.waitUntil(lambda: not model.loading)
    keys = [(model.row(r)["message_count"], model.row(r)["name"]) for r in range(model.rowCount())]
    assert len(keys) == 1234 and keys == sorted(keys, reverse=True)
    # An item added inside the loaded order lands at its place.
    big.external("mailbox.add", {"address": "zz-top@big.example.com", "password": "Big-pass-1"})
    qtbot.waitUntil(lambda: model.total == 1235)
    i = model.row_of("zz-top@big.example.com")
    assert i > 0 and model.row(i - 1)["message_count"] >= 0 == model.row(i)["message_count"]
    before = len(big.ops_sent("mailbox.list"))
    model.sort(0, Qt.SortOrder.AscendingOrder)    # everything is here: sorted in memory, no request
    assert len(big.ops_sent("mailbox.list")) == before
    assert names(model) == sorted(names(model))

def test_filter_asks_the_service_and_events_respect_it(qtbot, big):
    model = attached(MailboxTableModel(big), big)
    model.set_domain("big.example.com")
    qtbot.waitUntil(lambda: model.rowCount() > 0)
    model.set_filter("u00012")
    qtbot.waitUntil(lambda: model.fully_loaded and model.total == 10)
    assert big.ops_sent("mailbox.list")[-1]["filter"] == "u00012"
    big.external("mailbox.add", {"address": "zzz@big.example.com", "password": "Big-pass-1"})
    big.external("mailbox.add", {"address": "u000120x@big.example.com", "password": "Big-pass-1"})
    qtbot.waitUntil(lambda: model.total == 11)
    assert "u000120x" in names(model) and "zzz" not in names(model)


def test_events_keep_the_loaded_prefix_consistent(qtbot, big):
    """An added name inside the loaded prefix is inserted; one beyond it only raises the total."""
    model = attached(MailboxTableModel(big), big)
    model.set_domain("big.example.com")
    qtbot.waitUntil(lambda: model.rowCount() == paged_table.PAGE)
    big.external("mailbox.add", {"address": "a-first@big.example.com", "password": "Big-pass-1"})
    big.external("mailbox.add", {"address": "zz-last@big.example.com", "password": "Big-pass-1"})
    big.external("mailbox.delete", {"address": "u000003@big.example.com"})
    big.external("mailbox.lock", {"address": "u000004@big.example.com"})
    big.external("mailbox.add", {"address": "other@d00001.example.net", "password": "Big-pass-1"})
    qtbot.waitUntil(lambda: model.total == 1235)
    assert model.rowCount() == paged_table.PAGE   # +1 inserted, -1 deleted, the last one beyond
    assert names(model)[0] == "a-first"
    assert model.item("u000004@big.example.com")["locked"] is True
    while model.canFetchMore(QModelIndex()):
        model.fetchMore(QModelIndex())
        qtbot.waitUntil(lambda: not model.loading)
    got = names(model)
    assert len(got) == len(set(got)) == 1235 and got == sorted(got) and got[-1] == "zz-last"


def test_domain_lock_reaches_every_mailbox_row(qtbot, big):
    model = attached(MailboxTableModel(big), big)
    model.set_domain("d00002.example.net")
    qtbot.waitUntil(lambda: model.rowCount() == 3)
    big.external("domain.lock", {"name": "d00002.example.net"})
    qtbot.waitUntil(lambda: all(model.row(r)["domain_locked"] for r in range(3)))
    assert model.data(model.index(0, 3)) == "Locked (domain)"
    assert "unlock the domain" in model.data(model.index(0, 3), Qt.ItemDataRole.ToolTipRole)


def test_deleting_the_shown_domain_empties_the_list(qtbot, big):
    model = attached(MailboxTableModel(big), big)
    model.set_domain("d00002.example.net")
    qtbot.waitUntil(lambda: model.rowCount() == 3)
    with qtbot.waitSignal(model.domain_gone):
        big.external("domain.delete", {"name": "d00002.example.net"})
    assert model.rowCount() == 0


@pytest.mark.parametrize(("size", "shown"), [(0, "0"), (1, "1"), (1024, "1"), (1025, "2"), (5 * 1024**2, "5,120")],
                         ids=["zero", "one-byte", "one-kb", "just-over", "five-mb"])
def test_sizes_show_in_whole_kilobytes_rounded_up(size, shown):
    assert paged_table.kilobytes(size) == shown
