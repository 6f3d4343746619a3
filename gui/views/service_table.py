"""A server tab that lists what one op returns (the outgoing queue, the bans) with buttons that act
on the selected rows. It reads when shown, on Refresh, after each action and every few seconds
while visible; nothing blocks."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QEvent, QObject, Qt, QTimer
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from gui.views.cell_tips import text_is_cut

POLL_MS = 5000
MAX_COLUMN = 260     # a free-text column's widest before the row is out of room: a long error is cut there


class ServiceTable(QWidget):
    """Rows from ``op``; subclasses give the columns, ``cells(item)`` and the buttons."""

    op = ""
    headers: list[str] = []
    empty_text = ""
    numeric_columns: tuple[int, ...] = ()
    elastic_columns: tuple[int, ...] = ()   # free text (addresses, errors): cut first, the whole text in a tooltip

    def __init__(self, client: Any, title: str, intro: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._client = client
        self.items: list[dict[str, Any]] = []
        self.dialog: QWidget | None = None   # the open dialog or question, kept from the garbage collector
        self.title = QLabel(f"<b>{title}</b>")
        self.intro = QLabel(intro)
        self.intro.setWordWrap(True)
        self.intro.setStyleSheet("color: #555;")
        self.table = QTableWidget(0, len(self.headers))
        self.table.setHorizontalHeaderLabels(self.headers)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(self.table.fontMetrics().height() + 6)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.setWordWrap(False)        # a cut cell ends in '…' with a tooltip; never wraps in a one-line row
        self.table.setAlternatingRowColors(True)
        self._fitting = False
        self._user_sized = False             # once the user sizes a column, the widths are theirs
        self.table.horizontalHeader().sectionResized.connect(self._section_resized)
        self._retip = QTimer(self)            # a column dragged wider or narrower: tooltips once it rests
        self._retip.setSingleShot(True)
        self._retip.setInterval(100)
        self._retip.timeout.connect(self._tip_cut_cells)
        self.table.viewport().installEventFilter(self)
        self.table.setAccessibleName(title)
        self.table.itemSelectionChanged.connect(self.update_buttons)
        self.status = QLabel()
        self.buttons = QHBoxLayout()
        self.refresh_button = self.add_button("Re&fresh", lambda: self.refresh(), needs_selection=False)
        self.buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addWidget(self.intro)
        layout.addLayout(self.buttons)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.status)
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self.refresh)
        self._selection_buttons: list[QPushButton] = []
        self.fit_columns()
        self.setMinimumWidth(240)   # the button row may be cut rather than widen the window

    def add_button(self, text: str, slot: Callable[[], None], *, needs_selection: bool = True) -> QPushButton:
        button = QPushButton(text)
        button.clicked.connect(slot)
        self.buttons.addWidget(button)
        if needs_selection:
            self._selection_buttons.append(button)
        return button

    def cells(self, item: dict[str, Any]) -> list[str]:
        raise NotImplementedError

    # -- reading -----------------------------------------------------------------------------------
    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        self.refresh()
        self._timer.start()

    def hideEvent(self, event: Any) -> None:
        self._timer.stop()
        super().hideEvent(event)

    def refresh(self, note: str = "") -> None:
        """Read the list again; ``note`` (what an action just did) is shown once it has arrived."""
        if note:
            self._note = note      # kept a few seconds: several answers may come back meanwhile
            QTimer.singleShot(POLL_MS - 500, self, lambda: setattr(self, "_note", ""))
        if self._client.is_connected:
            self._client.request(self.op, {}, self.apply, self._failed)

    def _header_width(self, column: int) -> int:
        """The width the column's header text needs, with the margins and a sort indicator's room."""
        return self.table.horizontalHeader().sectionSizeFromContents(column).width()

    def fit_columns(self) -> None:
        """Every column as wide as its header and its values (a free-text column MAX_COLUMN at most), the last
        taking what is left; when that is more than the table has, the free-text columns give way down to their
        headers. A cut cell carries its whole text as tooltip. Once the user sizes a column, the widths stay."""
        table = self.table
        if not self._user_sized:
            count = table.columnCount()
            headers = [self._header_width(c) for c in range(count)]
            natural = [max(headers[c], table.sizeHintForColumn(c)) for c in range(count)]
            natural = [min(w, max(headers[c], MAX_COLUMN)) if c in self.elastic_columns else w
                       for c, w in enumerate(natural)]
            room = table.viewport().width()
            excess = sum(natural) - room
            slack = {c: natural[c] - headers[c] for c in self.elastic_columns if natural[c] > headers[c]}
            if excess > 0 and slack:
                given = min(excess, sum(slack.values()))
                for c, spare in slack.items():   # in proportion to what each can spare
                    natural[c] -= -(-given * spare // sum(slack.values()))
            self._fitting = True
            try:
                for c, width in enumerate(natural[:-1]):
                    table.setColumnWidth(c, width)
                others = sum(table.columnWidth(c) for c in range(count - 1))   # as set: the header has a minimum
                table.setColumnWidth(count - 1, max(headers[-1], room - others))   # the last one fills the row
            finally:
                self._fitting = False
        self._tip_cut_cells()

    def _tip_cut_cells(self) -> None:
        for r in range(self.table.rowCount()):
            for c in range(self.table.columnCount()):
                cell = self.table.item(r, c)
                if cell is not None:
                    cut = text_is_cut(self.table, self.table.indexFromItem(cell))
                    cell.setToolTip(cell.text() if cut else "")

    def _section_resized(self, *_args: object) -> None:
        if not self._fitting:
            self._user_sized = True
            self._retip.start()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt override
        if watched is self.table.viewport() and event.type() == QEvent.Type.Resize:
            self.fit_columns()
        return False

    def _failed(self, error: Any) -> None:
        self.status.setText(getattr(error, "message", str(error)))

    def apply(self, result: dict[str, Any]) -> None:
        keep = {self.key_of(i) for i in self.selected()}
        self.items = list((result or {}).get("items") or [])
        self.table.setRowCount(len(self.items))
        for r, item in enumerate(self.items):
            for c, text in enumerate(self.cells(item)):
                cell = QTableWidgetItem(text)
                if c in self.numeric_columns:
                    cell.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(r, c, cell)
            if self.key_of(item) in keep:
                self.table.selectRow(r)
        self.fit_columns()
        text = self.summary() if self.items else self.empty_text
        note = getattr(self, "_note", "")
        self.status.setText(f"{note} {text}" if note else text)
        self.update_buttons()

    def summary(self) -> str:
        return f"{len(self.items):,} item{'s' if len(self.items) != 1 else ''}"

    def key_of(self, item: dict[str, Any]) -> Any:
        return item.get("id")

    def selected(self) -> list[dict[str, Any]]:
        rows = sorted({i.row() for i in self.table.selectionModel().selectedRows()})
        return [self.items[r] for r in rows if r < len(self.items)]

    def update_buttons(self) -> None:
        chosen = bool(self.selected())
        for button in self._selection_buttons:
            button.setEnabled(chosen and self._client.is_connected)


    def confirm(self, title: str, text: str, on_yes: Callable[[], None]) -> None:
        """Ask Yes / No (No is the default) without blocking; ``on_yes`` runs on Yes."""
        box = QMessageBox(QMessageBox.Icon.Warning, title, text,
                          QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, self)
        box.setDefaultButton(QMessageBox.StandardButton.No)
        box.finished.connect(lambda result: on_yes() if result == QMessageBox.StandardButton.Yes else None)
        self.dialog = box
        box.open()


def when(text: Any) -> str:
    """An ISO time as 'YYYY-MM-DD HH:MM:SS' (UTC)."""
    return str(text or "").replace("T", " ")[:19]
