"""Action → Test for Open Relay: the service tries the classic relay tricks against its own SMTP
listener (``relay.test``) and this dialog shows each with the server's reply and a verdict."""
from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from gui.dialogs.form import keep_text_whole

COLUMNS = ["Trick and recipient", "Result", "Server reply"]


def breakable(text: str) -> str:
    """``text`` with a zero-width space after the marks inside an address (@ ! % :), where a line may break:
    the tricks' addresses are long words that would otherwise be cut at the column's edge."""
    for mark in "@!%:":
        text = text.replace(mark, mark + "\u200b")
    return text


def relayed(item: dict[str, Any]) -> bool:
    return bool(item.get("relayed")) or str(item.get("verdict", "")).upper() == "RELAYED"


class RelayTestDialog(QDialog):
    """The results of the open-relay self-test (or 'running…' until they arrive)."""

    def __init__(self, parent: QWidget | None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Test for Open Relay")
        self.verdict = QLabel("Testing: the service is trying the relay tricks against its SMTP port…")
        self.verdict.setWordWrap(True)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        # The result as wide as its word; the trick (with its recipient beneath) and the reply share the rest
        # and wrap, so a long reply (the local-sender one runs to a hundred characters) is read whole.
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(COLUMNS.index("Server reply"), QHeaderView.ResizeMode.Stretch)
        self.table.setWordWrap(True)
        self.table.setTextElideMode(Qt.TextElideMode.ElideNone)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        note = QLabel("No message is sent: each probe stops after the RCPT reply. Run from the server itself, so "
                      "the test sees what an outsider would only if this computer is not on the relay "
                      "allow-list.")
        note.setWordWrap(True)
        note.setStyleSheet("color: #555;")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.verdict)
        layout.addWidget(self.table, 1)
        layout.addWidget(note)
        layout.addWidget(buttons)
        keep_text_whole(self, 760, 520)

    def show_results(self, result: dict[str, Any]) -> None:
        items = (result or {}).get("items") or []
        self.table.setRowCount(len(items))
        for r, item in enumerate(items):
            bad = relayed(item)
            verdict = "RELAYED" if bad else ("error" if item.get("verdict") == "error" else "refused")
            trick = f"{item.get('trick', '')}\n{item.get('recipient', '')}".strip()
            for c, text in enumerate([trick, verdict, item.get("reply", "")]):
                cell = QTableWidgetItem(breakable(str(text)))
                cell.setToolTip(str(text))
                if c == 1:
                    cell.setForeground(Qt.GlobalColor.darkRed if bad else Qt.GlobalColor.darkGreen)
                self.table.setItem(r, c, cell)
        if any(relayed(i) for i in items):
            self.verdict.setText("<b style='color:#a4262c'>This server is an open relay:</b> some tricks were "
                                 "accepted. Check the relay networks in Server Properties → SMTP.")
        elif items:
            self.verdict.setText(f"<b style='color:#107c10'>Not an open relay.</b> All {len(items)} tricks were "
                                 "refused.")
        else:
            self.verdict.setText("The test ran no probes.")

    def show_error(self, message: str) -> None:
        self.verdict.setText(f"The test could not run: {message}")
