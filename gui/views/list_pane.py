"""A result-pane list: a title, a filter box that filters as you type, and a details view."""
from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QStyle,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from gui.models.paged_table import PagedTableModel

FILTER_DELAY_MS = 200
EMPTY_TEXT = "There are no items to show in this view."
# The widest values a counter or state column shows in practice (sizes in KB, counts, states).
WIDEST_VALUES = ("9,999,999", "Locked (domain)")


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
        header.sectionResized.connect(self._section_resized)
        self.size_columns()
        self.empty = QLabel(EMPTY_TEXT, self.view.viewport())
        self.empty.setAlignment(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop)
        self.empty.setStyleSheet("color: #666; padding-top: 24px;")
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

    def size_columns(self) -> None:
        """Each counter column as wide as its header with the sort arrow, or its widest likely value."""
        header = self.view.header()
        metrics = self.view.fontMetrics()
        padding = 2 * (self.view.style().pixelMetric(QStyle.PixelMetric.PM_FocusFrameHMargin, None, self.view) + 1)
        widest = max(metrics.horizontalAdvance(text) for text in WIDEST_VALUES) + padding + metrics.averageCharWidth()
        header.setMinimumSectionSize(header.sectionSizeFromContents(0).width())
        self._fitting = True
        try:
            for col in range(1, self.model.columnCount()):
                header.resizeSection(col, max(header.sectionSizeFromContents(col).width(), widest))
        finally:
            self._fitting = False

    def fit_name_column(self) -> None:
        """The name takes whatever the counters leave: no dead strip at the right, at any width."""
        header = self.view.header()
        others = sum(header.sectionSize(c) for c in range(1, header.count()) if not header.isSectionHidden(c))
        self._fitting = True
        try:
            header.resizeSection(0, max(header.minimumSectionSize(), self.view.viewport().width() - others))
        finally:
            self._fitting = False

    def _section_resized(self, *_args: object) -> None:
        if not self._fitting:
            self._user_sized = True

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        if not self._user_sized:
            self.fit_name_column()
        self.empty.setGeometry(0, 0, self.view.viewport().width(), 80)

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
