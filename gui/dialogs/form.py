"""Small pieces the dialogs share: a reason label that sits beside a field, password checks."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QWidget


class Reason(QLabel):
    """Why the field beside it is not acceptable yet (empty and hidden when it is)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWordWrap(True)
        self.setStyleSheet("color: #b00020;")
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.setVisible(False)

    def show_reason(self, text: str) -> None:
        self.setText(text)
        self.setVisible(bool(text))


def password_problem(password: str, confirm: str) -> tuple[str, str]:
    """(reason for the password field, reason for the confirmation field); empty when fine."""
    if not password:
        return "Type a password.", ""
    if "\n" in password or "\r" in password or "\x00" in password:
        return "The password may not contain line breaks or NUL.", ""
    if password != confirm:
        return "", "The passwords do not match." if confirm else "Type the password again to confirm it."
    return "", ""
