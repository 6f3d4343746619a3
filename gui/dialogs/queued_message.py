"""View one queued message (``queue.show``): envelope, per-recipient state, headers and the start
of the body. Read-only."""
from __future__ import annotations

from typing import Any

from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QFormLayout, QLabel, QPlainTextEdit, QVBoxLayout, QWidget

from gui.dialogs.form import keep_text_whole


class QueuedMessageDialog(QDialog):
    """Envelope and content of a message in the outgoing queue."""

    def __init__(self, parent: QWidget | None, entry: dict[str, Any]) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Queued message {entry.get('id', '')}")
        form = QFormLayout()
        form.addRow("From:", QLabel(str(entry.get("sender", ""))))
        states = entry.get("recipient_states") or [{"address": a, "status": "pending"} for a in
                                                   entry.get("recipients") or []]
        lines = [f"{s.get('address')}: {s.get('status', '')}"
                 + (f", {s.get('attempts')} tries" if s.get("attempts") is not None else "")
                 + (f" — {s.get('last_error')}" if s.get("last_error") else "") for s in states]
        to = QLabel("<br>".join(lines) or "(none)")
        to.setWordWrap(True)
        form.addRow("To:", to)
        form.addRow("Submitted by:", QLabel(f"{entry.get('submitted_by') or '(not logged on)'} from "
                                            f"{entry.get('client') or 'this server'}"))
        form.addRow("Queued:", QLabel(str(entry.get("created_at", "")).replace("T", " ")[:19] + " UTC"))
        form.addRow("Size:", QLabel(f"{int(entry.get('size') or 0):,} bytes"))
        if entry.get("last_error"):
            err = QLabel(str(entry["last_error"]))
            err.setWordWrap(True)
            form.addRow("Last error:", err)
        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        self.text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        body = str(entry.get("body_preview") or "")
        if entry.get("body_truncated"):
            body += "\n[…]"
        self.text.setPlainText(str(entry.get("headers") or "").replace("\r\n", "\n") + "\n\n" + body)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.text, 1)
        layout.addWidget(buttons)
        keep_text_whole(self, 600, 460)
