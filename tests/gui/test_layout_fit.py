"""Nothing is clipped: every dialog, tab, wizard page and result pane at 100 %, 125 % and 150 % text scale.

Text scale is modelled by scaling the application font's point size. That is what the desktops'
"text scaling" does (GNOME's text-scaling-factor and KDE's font size scale the fonts, not the
widgets; Windows' "Make text bigger" likewise), and it is the case that clips: a whole-display scale
(devicePixelRatio) grows widgets and text together, so what fits at 100 % fits there too.

What counts as not fitting, for a widget shown in the state the window opens in, at its default size:
- a label's text: wider than the label (one line), or taller than the label at its width (word-wrapped);
- a button's, check box's or radio button's text: wider than the style's contents rectangle;
- a group box's title or a tab's title: wider than the box or the tab bar;
- a list header's text plus its sort indicator: wider than its section; a cell's text (plus its icon)
  wider than its column, unless the cell's tooltip carries the whole text;
- a scroll area (a property tab, a page) that needs a scroll bar, or a list that needs a horizontal one;
- a list whose columns leave a wide strip of dead space at the right.
Every failure is reported at once, with where it is, its text, and what it needed against what it had.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from PySide6.QtCore import QModelIndex, QRect, Qt
from PySide6.QtGui import QFont, QFontMetrics, QScreen, QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractItemView,
    QAbstractScrollArea,
    QApplication,
    QCheckBox,
    QGroupBox,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QRadioButton,
    QScrollArea,
    QStyle,
    QStyleOptionButton,
    QTabBar,
    QTabWidget,
    QTextEdit,
    QTreeView,
    QVBoxLayout,
    QWidget,
    QWizard,
)

from gui.dialogs.confirm_delete import ConfirmDeleteDialog
from gui.dialogs.relay_test import RelayTestDialog
from gui.models.nodes import NodeKind, Target
from gui.views.cell_tips import text_is_cut
from gui.views.charts import COLUMNS, StatsCharts
from gui.views.status_view import fingerprint_lines
from service.smtp import relaytest, replies
from tests.gui.conftest import open_window
from tests.gui.dialog_walk import NAMES, dialogs

SCALES = [1.0, 1.25, 1.5]
SCALE_IDS = ["100%", "125%", "150%"]
DEAD_SPACE = 0.15        # a list may leave this share of its width unused at the right, no more


@dataclass(frozen=True)
class Misfit:
    where: str
    text: str
    needed: int
    had: int
    what: str = "width"

    def __str__(self) -> str:
        return f"{self.where} {self.text!r}: needs {self.what} {self.needed}, has {self.had}"


# -- where a widget is (for the failure message) --------------------------------------------------------
def where(widget: QWidget, window: QWidget) -> str:
    """The tab, wizard page or group the widget sits on, and its class: 'SMTP tab > QLabel'."""
    parts = [type(widget).__name__ + (f"#{widget.objectName()}" if widget.objectName() else "")]
    w = widget.parentWidget()
    while w is not None and w is not window:
        parent = w.parentWidget()
        if isinstance(w, QGroupBox) and w.title():
            parts.append(f"group '{w.title()}'")
        elif parent is not None and isinstance(parent.parentWidget(), QTabWidget):
            tabs = parent.parentWidget()
            assert isinstance(tabs, QTabWidget)
            parts.append(f"tab '{tabs.tabText(tabs.indexOf(w))}'")
        elif hasattr(w, "title") and callable(w.title) and type(w).__name__.endswith("Page") and w.title():
            parts.append(f"page '{w.title()}'")
        w = parent
    return " > ".join(reversed(parts))


def _plain(text: str) -> str:
    """The text as drawn: a single '&' marks a mnemonic and is not drawn."""
    return text.replace("&&", "\0").replace("&", "").replace("\0", "&")


# -- the checks -----------------------------------------------------------------------------------------
def label_misfit(label: QLabel) -> tuple[str, int, int] | None:
    if not label.text() or label.pixmap() is not None and not label.pixmap().isNull():
        return None
    if label.wordWrap():
        needed = label.heightForWidth(label.width())
        return ("height", needed, label.height()) if needed > label.height() else None
    hint = label.sizeHint()      # the text's extent plus margins and indent, plain or rich text
    if hint.width() > label.width():
        return ("width", hint.width(), label.width())
    if hint.height() > label.height():
        return ("height", hint.height(), label.height())
    return None


def button_misfit(button: QAbstractButton) -> tuple[int, int] | None:
    """(needed, had) when a push button's, check box's or radio's text does not fit its contents rect."""
    text = _plain(button.text())
    if not text:
        return None
    style = button.style()
    option = QStyleOptionButton()
    option.initFrom(button)
    option.text = button.text()
    option.icon = button.icon()
    option.iconSize = button.iconSize()
    if isinstance(button, QCheckBox):
        element = QStyle.SubElement.SE_CheckBoxContents
    elif isinstance(button, QRadioButton):
        element = QStyle.SubElement.SE_RadioButtonContents
    elif isinstance(button, QPushButton):
        element = QStyle.SubElement.SE_PushButtonContents
    else:
        return None
    had = style.subElementRect(element, option, button).width()
    needed = button.fontMetrics().horizontalAdvance(text)
    if not button.icon().isNull():
        needed += button.iconSize().width() + 4
    if isinstance(button, QPushButton):
        needed += 2 * style.pixelMetric(QStyle.PixelMetric.PM_ButtonMargin, option, button) // 2
    return (needed, had) if needed > had else None


def header_misfits(view: QAbstractItemView, header: QHeaderView, where_: str) -> Iterator[Misfit]:
    model = header.model()
    if model is None or header.isHidden():
        return
    for logical in range(header.count()):
        if header.isSectionHidden(logical):
            continue
        needed = header.sectionSizeFromContents(logical).width()    # text, margins and the sort indicator
        had = header.sectionSize(logical)
        if needed > had:
            text = str(model.headerData(logical, header.orientation(), Qt.ItemDataRole.DisplayRole))
            yield Misfit(f"{where_} > header", text, needed, had)


def cell_misfits(view: QAbstractItemView, where_: str) -> Iterator[Misfit]:
    """Cells whose text is elided, unless the tooltip gives the whole text (a path, a reason)."""
    model = view.model()
    if model is None or not hasattr(view, "columnWidth"):
        return
    style = view.style()
    margin = 2 * (style.pixelMetric(QStyle.PixelMetric.PM_FocusFrameHMargin, None, view) + 1)
    metrics = QFontMetrics(view.font())
    root = view.rootIndex()
    for row in range(min(model.rowCount(root), 50)):
        for column in range(model.columnCount(root)):
            if view.isColumnHidden(column):
                continue
            index = model.index(row, column, root)
            text = str(index.data(Qt.ItemDataRole.DisplayRole) or "")
            if not text or index.data(Qt.ItemDataRole.ToolTipRole) == text:
                continue
            needed = max(metrics.horizontalAdvance(line) for line in text.split("\n")) + margin
            if index.data(Qt.ItemDataRole.DecorationRole) is not None:
                needed += view.iconSize().width() if view.iconSize().isValid() else 16
                needed += 4
            if isinstance(view, QTreeView) and column == 0:
                needed += view.indentation() if view.rootIsDecorated() else 0
            had = view.columnWidth(column)
            if getattr(view, "wordWrap", lambda: False)():
                # a wrapping cell fits when its row is tall enough for its lines (Qt breaks a long word anywhere)
                lines = metrics.boundingRect(QRect(0, 0, had - margin, 100_000), Qt.TextFlag.TextWrapAnywhere, text)
                if lines.height() <= view.rowHeight(row):
                    continue
                yield Misfit(f"{where_} > cell ({row}, {column})", text, lines.height(), view.rowHeight(row), "height")
            elif needed > had:
                yield Misfit(f"{where_} > cell ({row}, {column})", text, needed, had)


def view_misfits(view: QAbstractItemView, where_: str) -> Iterator[Misfit]:
    header = view.header() if isinstance(view, QTreeView) else getattr(view, "horizontalHeader", lambda: None)()
    if header is not None and not header.isHidden():
        yield from header_misfits(view, header, where_)
        width = view.viewport().width()
        if header.length() < width * (1 - DEAD_SPACE):
            yield Misfit(f"{where_} > columns", "dead space at the right", width, header.length(),
                         "columns' total at least about")
    yield from cell_misfits(view, where_)
    if view.horizontalScrollBar().isVisible():
        yield Misfit(f"{where_}", "horizontal scroll bar", view.horizontalScrollBar().maximum(), 0, "scroll")


def misfits(window: QWidget) -> list[Misfit]:
    """What does not fit among the widgets shown now in ``window``."""
    found: list[Misfit] = []
    widgets = [w for w in window.findChildren(QWidget) if w.isVisible() and w.window() is window]
    for w in widgets:
        if isinstance(w, QLabel) and not isinstance(w.parentWidget(), QAbstractButton):
            bad = label_misfit(w)
            if bad:
                found.append(Misfit(where(w, window), w.text(), bad[1], bad[2], bad[0]))
        elif isinstance(w, QAbstractButton):
            too_narrow = button_misfit(w)
            if too_narrow:
                found.append(Misfit(where(w, window), w.text(), *too_narrow))
        elif isinstance(w, QGroupBox) and w.title():
            needed = w.fontMetrics().horizontalAdvance(_plain(w.title())) + 2 * w.fontMetrics().averageCharWidth()
            if w.isCheckable():
                needed += w.style().pixelMetric(QStyle.PixelMetric.PM_IndicatorWidth)
            if needed > w.width():
                found.append(Misfit(where(w, window), w.title(), needed, w.width()))
        elif isinstance(w, QTabBar):
            if w.sizeHint().width() > w.width() or any(w.tabRect(i).width() < w.tabSizeHint(i).width()
                                                        for i in range(w.count())):
                titles = ", ".join(w.tabText(i) for i in range(w.count()))
                found.append(Misfit(where(w, window), titles, w.sizeHint().width(), w.width()))
        elif isinstance(w, QAbstractItemView):
            found += view_misfits(w, where(w, window))
        elif isinstance(w, QScrollArea | QAbstractScrollArea) and not isinstance(w, QTextEdit | QPlainTextEdit):
            for bar, name in ((w.horizontalScrollBar(), "horizontal"), (w.verticalScrollBar(), "vertical")):
                if bar.isVisible():
                    found.append(Misfit(where(w, window), f"{name} scroll bar", bar.maximum(), 0, "scroll"))
    return found


# -- scale, and how each window is walked --------------------------------------------------------------------
@pytest.fixture(params=SCALES, ids=SCALE_IDS)
def text_scale(request, qapp) -> Iterator[float]:
    """The application font at this scale while the test builds and shows its windows."""
    original = QFont(qapp.font())
    scaled = QFont(original)
    scaled.setPointSizeF(original.pointSizeF() * request.param)
    qapp.setFont(scaled)
    yield request.param
    qapp.setFont(original)


def settle(window: QWidget) -> None:
    for _ in range(3):
        QApplication.processEvents()
    window.layout() and window.layout().activate()
    QApplication.processEvents()


def walk(window: QWidget) -> list[Misfit]:
    """Check the window as it opens, then every tab of every tab widget and every wizard page."""
    found: list[Misfit] = []
    seen: set[str] = set()

    def check() -> None:
        settle(window)
        for m in misfits(window):
            if str(m) not in seen:
                seen.add(str(m))
                found.append(m)

    check()
    if isinstance(window, QWizard):
        for page_id in window.pageIds():
            window.setStartId(page_id)
            window.restart()
            check()
    for tabs in window.findChildren(QTabWidget):
        if not tabs.isVisible():
            continue
        for i in range(tabs.count()):
            tabs.setCurrentIndex(i)
            check()
        tabs.setCurrentIndex(0)
    return found


def relay_results() -> dict[str, list[dict[str, object]]]:
    """What the real relay.test answers for a server that relays nothing (the service's probes and replies)."""
    items = []
    for probe in relaytest.probes("example.com"):
        recipient = probe.rcpt_to.strip("<>")
        reply = (replies.LOCAL_SENDER.format(probe.mail_from) if probe.mail_from.startswith("postmaster@")
                 else replies.RELAY_DENIED.format(recipient))
        items.append({"trick": probe.name, "recipient": probe.rcpt_to, "reply": reply, "verdict": "refused",
                      "relayed": False})
    return {"items": items}


def report(found: list[Misfit]) -> str:
    return "\n".join(str(m) for m in found)


# -- the walker's own checks -----------------------------------------------------------------------------------
def test_a_clipped_label_a_narrow_header_and_a_scroll_area_are_found(qtbot):
    window = QWidget()
    qtbot.addWidget(window)
    layout = QVBoxLayout(window)
    short = QLabel("A label far too long for the forty pixels it is given")
    short.setFixedWidth(40)
    wrapped = QLabel("Several words that wrap onto more lines than the label's fixed height allows")
    wrapped.setWordWrap(True)
    wrapped.setFixedSize(120, 20)
    box = QCheckBox("A check box with a long text")
    box.setFixedWidth(50)
    view = QTreeView()
    model = QStandardItemModel(1, 2)
    model.setHorizontalHeaderLabels(["Domain Size (KB)", "Messages"])
    view.setModel(model)
    view.setSortingEnabled(True)
    view.header().setStretchLastSection(False)
    view.header().resizeSection(0, 40)
    view.setFixedWidth(600)
    for w in (short, wrapped, box, view):
        layout.addWidget(w)
    window.show()
    settle(window)
    found = {(m.where.rsplit(" > ", 1)[-1] if "header" not in m.where else "header", m.text) for m in misfits(window)}
    assert ("QLabel", short.text()) in found and ("QLabel", wrapped.text()) in found
    assert ("QCheckBox", box.text()) in found and ("header", "Domain Size (KB)") in found
    assert any(m.text == "dead space at the right" for m in misfits(window))


def test_the_font_scales(qtbot, text_scale):
    label = QLabel("Mailbox")
    qtbot.addWidget(label)
    assert label.font().pointSizeF() == pytest.approx(9.0 * text_scale, rel=0.2) or \
        label.font().pointSizeF() == pytest.approx(QApplication.font().pointSizeF())


# -- every dialog, tab and wizard page -----------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES, ids=NAMES)
def test_every_dialog_fits_at_its_default_size(qtbot, text_scale, fake, tmp_path, errors, name):
    window = dialogs(fake, tmp_path)[name]()
    qtbot.addWidget(window)
    if isinstance(window, RelayTestDialog):
        window.show_results(relay_results())
    window.show()
    found = walk(window)
    assert not found, f"{len(found)} misfits at {text_scale:.0%}:\n{report(found)}"


def test_the_new_domain_intro_keeps_its_lines_when_the_reason_appears(qtbot, text_scale, fake, tmp_path, errors):
    window = dialogs(fake, tmp_path)["new domain"]()
    qtbot.addWidget(window)
    window.show()
    window.name_edit.setText("not a domain!")
    assert window.reason.text()
    found = walk(window)
    assert not found, report(found)


def test_the_confirm_delete_text_fits_for_many_mailboxes(qtbot, text_scale, fake, tmp_path, errors):
    targets = [Target(NodeKind.DOMAIN, f"d{i}.example.com", {"mailbox_count": 1200}) for i in range(12)]
    window = ConfirmDeleteDialog(None, targets, auth="local")
    qtbot.addWidget(window)
    window.show()
    found = walk(window)
    assert not found, report(found)


# -- the main window's result panes -----------------------------------------------------------------------------
# The window opens at a size that grows with the text (gui/dialogs/form.py text_scaled), kept on the screen.
# Offscreen Qt has an 800 x 800 screen that no one uses, which would keep the window at its 100 % size at every
# scale; the panes are checked on the smallest common laptop screen instead: 1366 x 768, a 40-pixel task bar.
LAPTOP = QRect(0, 0, 1366, 728)


@pytest.fixture
def laptop_screen(monkeypatch) -> QRect:
    """Screens report the laptop's available area while the test builds its window."""
    monkeypatch.setattr(QScreen, "availableGeometry", lambda _screen: QRect(LAPTOP))
    return LAPTOP


def test_every_result_pane_fits_at_the_default_size(qtbot, text_scale, laptop_screen, fake, qsettings, errors):
    window = open_window(qtbot, fake, qsettings)
    assert window.width() <= laptop_screen.width(), "the window opens on the screen"
    assert window.width() >= 960 * text_scale or window.width() == laptop_screen.width(), "it grows with the text"
    qtbot.waitUntil(lambda: window.domain_model.rowCount() == len(fake.service.domains))
    found: list[Misfit] = []
    seen: set[str] = set()
    status = window.status_view

    def check(what: str) -> None:
        settle(window)
        for m in misfits(window):
            # The status page alone scrolls down, by design: the charts, counters and log lie below the
            # listeners, which stay in view without scrolling (tests/gui/test_status_words.py).
            if m.text == "vertical scroll bar" and window.server_tabs.currentWidget() is status \
                    and m.where == where(status.scroll_area, window):
                continue
            if str(m) not in seen:
                seen.add(str(m))
                found.append(Misfit(f"[{what}] {m.where}", m.text, m.needed, m.had, m.what))

    for i in range(window.server_tabs.count()):
        window.server_tabs.setCurrentIndex(i)
        if window.server_tabs.currentWidget() is status:   # with its long lines: the fingerprint, the log
            qtbot.waitUntil(lambda: status.fingerprint_box.isVisible() and status.events.rowCount() > 0)
        settle(window)
        QApplication.processEvents()
        check(window.server_tabs.tabText(i))
    window.server_tabs.setCurrentIndex(0)
    assert window.select_domain("contoso.com")
    qtbot.waitUntil(lambda: window.mailbox_model.rowCount() > 0)
    check("mailboxes")
    assert not found, f"{len(found)} misfits at {text_scale:.0%}:\n{report(found)}"
    window.tree.setCurrentIndex(QModelIndex())


# -- what keeps them fitting at other sizes ------------------------------------------------------------------------
def test_the_fingerprint_breaks_only_after_colons_into_two_lines():
    fingerprint = ":".join(f"{n:02X}" for n in range(32))
    shown = fingerprint_lines(fingerprint)
    assert shown.count("\n") == 1 and all(line.endswith(":") for line in shown.splitlines()[:-1])
    assert shown.replace("\n", "") == fingerprint     # the same characters in the same order


def test_charts_take_fewer_to_a_row_rather_than_wrap_their_titles(qtbot):
    charts = StatsCharts()
    qtbot.addWidget(charts)
    need = max(chart.head_width() for chart in charts.charts.values())
    assert charts.columns_for(4 * need + 3 * 10) == COLUMNS
    assert charts.columns_for(2 * need + 10) == 2 and charts.columns_for(need // 2) == 1
    charts.resize(2 * need + 20, 900)
    charts.show()
    settle(charts)
    assert charts.columns == 2
    assert all(c.title.width() >= c.title.sizeHint().width() for c in charts.charts.values())


def test_a_narrow_window_cuts_free_text_with_a_tooltip_and_the_user_keeps_the_widths(qtbot, fake, qsettings, errors):
    window = open_window(qtbot, fake, qsettings)
    window.server_tabs.setCurrentWidget(window.bans_view)
    table = window.bans_view.table
    qtbot.waitUntil(lambda: table.rowCount() > 0)
    window.resize(700, 620)
    settle(window)
    header = table.horizontalHeader()
    assert header.length() <= table.viewport().width() + 1 or table.horizontalScrollBar().isVisible()
    cut = [table.item(r, c) for r in range(table.rowCount()) for c in range(table.columnCount())
           if text_is_cut(table, table.indexFromItem(table.item(r, c)))]
    assert cut and all(cell.toolTip() == cell.text() for cell in cut)
    assert not table.wordWrap()
    header.resizeSection(0, 300)        # the user's width stays when the window changes
    window.resize(900, 620)
    settle(window)
    assert header.sectionSize(0) == 300


def test_the_domain_list_refits_when_the_window_grows_until_the_user_sizes_a_column(qtbot, fake, qsettings, errors):
    window = open_window(qtbot, fake, qsettings)
    qtbot.waitUntil(lambda: window.domain_model.rowCount() == len(fake.service.domains))
    view = window.domain_pane.view
    for width in (800, 1200):
        window.resize(width, 620)
        settle(window)
        assert abs(view.header().length() - view.viewport().width()) <= 1, "the name column takes the rest"
    view.header().resizeSection(1, 200)
    window.resize(900, 620)
    settle(window)
    assert view.header().sectionSize(1) == 200
