"""A server tab that lists what one op returns (the outgoing queue, the bans) with buttons that act
on the selected rows. It reads when shown, on Refresh, after each action and every few seconds
while visible; nothing blocks."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt, QTimer
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

POLL_MS = 5000


class ServiceTable(QWidget):
    """Rows from ``op``; subclasses give the columns, ``cells(item)`` and the buttons."""

    op = ""
    headers: list[str] = []
    empty_text = ""
    numeric_columns: tuple[int, ...] = ()

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
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        for column in range(self.table.columnCount()):   # before the first rows: wide enough for the headers
            self.table.setColumnWidth(column, self._header_width(column))
        self.table.setAlternatingRowColors(True)
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
        self._sized = False
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
                cell.setToolTip(text if len(text) > 40 else "")
                self.table.setItem(r, c, cell)
            if self.key_of(item) in keep:
                self.table.selectRow(r)
        if self.items and not self._sized:   # the first rows size the columns; the user's widths stay after
            for column in range(self.table.columnCount() - 1):   # the last one takes what is left
                self.table.resizeColumnToContents(column)
                self.table.setColumnWidth(column, max(self._header_width(column),
                                                      min(self.table.columnWidth(column), 260)))
            self._sized = True
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
