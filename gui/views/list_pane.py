"""A result-pane list: a title, a filter box that filters as you type, and a details view."""
from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt, QTimer
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from gui.models.paged_table import PagedTableModel
from gui.views.cell_tips import CutCellTips

FILTER_DELAY_MS = 200
EMPTY_TEXT = "There are no items to show in this view."


class ListPane(QWidget):
    """The list of domains or of mailboxes; the view fetches more rows as it scrolls."""

    def __init__(self, model: PagedTableModel, *, noun: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = model
        self.noun = noun
        self.title = QLabel()
        self.title.setStyleSheet("font-weight: bold; padding: 2px;")
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.note.setStyleSheet("background: #fff4ce; border: 1px solid #e0c060; padding: 3px;")
        self.note.setVisible(False)
        self.filter = QLineEdit()
        self.filter.setPlaceholderText(f"Filter {noun} by name")
        self.filter.setClearButtonEnabled(True)
        self.filter.setAccessibleName(f"Filter {noun}")
        self.filter.setMaximumWidth(260)
        self.view = QTreeView()
        self.view.setRootIsDecorated(False)
        self.view.setItemsExpandable(False)
        self.view.setUniformRowHeights(True)
        self.view.setAllColumnsShowFocus(True)
        self.view.setAlternatingRowColors(False)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.view.setModel(model)
        # QTreeView lays out its root after every insert and asks for more each time, which would
        # pull the whole list page after page; the model fetches only when the view is near its end.
        model.fetch_gate = self._near_the_end
        self.view.header().setSortIndicator(0, Qt.SortOrder.AscendingOrder)
        self.view.setSortingEnabled(True)
        header = self.view.header()
        header.setStretchLastSection(False)
        header.setSectionsMovable(True)
        self._fitting = False
        self._user_sized = False      # once the user (or a restored layout) sizes a column, the widths are theirs
        self._fitted: list[int] = []        # the widths the last fit gave
        self._widths: dict[int, int] = {}   # a counter column's width so far: it grows with the values, never shrinks
        header.sectionResized.connect(self._section_resized)
        # Refit once the events of a change are through: a page of rows, an event, a new width.
        self._refit = QTimer(self)
        self._refit.setSingleShot(True)
        self._refit.setInterval(0)
        self._refit.timeout.connect(self.fit_columns)
        model.modelReset.connect(self._widths.clear)
        for signal in (model.modelReset, model.rowsInserted, model.dataChanged, model.layoutChanged):
            signal.connect(lambda *_a: self._refit.start())
        self.tips = CutCellTips(self.view)
        self.fit_columns()
        self.empty = QLabel(EMPTY_TEXT, self.view.viewport())
        self.empty.setAlignment(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop)
        self.empty.setStyleSheet("color: #666; padding-top: 24px;")
        self.view.viewport().installEventFilter(self)
        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(self.title, 1)
        top.addWidget(self.filter)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addLayout(top)
        layout.addWidget(self.note)
        layout.addWidget(self.view, 1)
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(FILTER_DELAY_MS)
        self._debounce.timeout.connect(lambda: self.model.set_filter(self.filter.text()))
        self.filter.textChanged.connect(lambda _t: self._debounce.start())
        for signal in (model.modelReset, model.rowsInserted, model.rowsRemoved, model.loading_changed):
            signal.connect(self._update_empty)
        self._update_empty()

    def fit_columns(self) -> None:
        """Each counter column as wide as its header (with the sort arrow) or its widest value shown so far;
        the name takes whatever they leave, so there is no dead strip at the right and no scroll bar while the
        names fit. Once the user sizes a column (or a saved layout is restored) the widths are theirs."""
        header = self.view.header()
        if self._fitted and self._fitted != self._sizes():
            self._user_sized = True   # sized behind our back: a restored layout (restoreState says nothing)
        if self._user_sized:
            return
        self._fitting = True
        try:
            header.setMinimumSectionSize(self._narrowest())
            for col in range(1, self.model.columnCount()):
                width = max(header.sectionSizeFromContents(col).width(), self.view.sizeHintForColumn(col),
                            self._widths.get(col, 0))
                self._widths[col] = width
                header.resizeSection(col, width)
            others = sum(header.sectionSize(c) for c in range(1, header.count()) if not header.isSectionHidden(c))
            name = max(header.sectionSizeFromContents(0).width(), self.view.viewport().width() - others)
            header.resizeSection(0, name)
        finally:
            self._fitting = False
        self._fitted = self._sizes()

    def _sizes(self) -> list[int]:
        header = self.view.header()
        return [header.sectionSize(c) for c in range(header.count())]

    def _narrowest(self) -> int:
        """The narrowest a column may be dragged: a few characters and the margins."""
        return self.view.fontMetrics().averageCharWidth() * 4 + 8

    def _section_resized(self, *_args: object) -> None:
        if not self._fitting:
            self._user_sized = True

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt override
        if watched is self.view.viewport() and event.type() == QEvent.Type.Resize:
            self._refit.start()   # the viewport's own size: a scroll bar coming or going changes it too
            self.empty.setGeometry(0, 0, self.view.viewport().width(), 80)
        return False

    def _update_empty(self, *_args: object) -> None:
        empty = self.model.rowCount() == 0
        self.empty.setText("Loading…" if self.model.loading and empty else EMPTY_TEXT)
        self.empty.setVisible(empty)
        self.empty.setGeometry(0, 0, self.view.viewport().width(), 80)

    def _near_the_end(self) -> bool:
        bar = self.view.verticalScrollBar()
        return bar.maximum() == 0 or bar.maximum() - bar.value() <= max(bar.pageStep(), 1)

    def selected_rows(self) -> list[int]:
        return sorted({i.row() for i in self.view.selectionModel().selectedRows()})

    def apply_filter_now(self) -> None:
        self._debounce.stop()
        self.model.set_filter(self.filter.text())
