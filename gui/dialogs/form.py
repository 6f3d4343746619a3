"""Small pieces the dialogs share: a reason label that sits beside a field, a name check, password checks."""
from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QAbstractButton, QLabel, QWidget

from core import passwords
from core.errors import Invalid


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


def buddy_label(text: str, buddy: QWidget) -> QLabel:
    """A label whose &-mnemonic focuses ``buddy``: QFormLayout sets the buddy itself only when the
    field is a widget, and shows a literal '&' beside a layout."""
    label = QLabel(text)
    label.setBuddy(buddy)
    return label


def password_problem(password: str, confirm: str) -> tuple[str, str]:
    """(reason for the password field, reason for the confirmation field); empty when fine. The rule
    and its wording are the service's own (core.passwords), so the console explains before sending."""
    return passwords.password_problem(password) or "", passwords.confirmation_problem(password, confirm) or ""


def check_field(text: str, rule: Callable[[str], object], reason: Reason, button: QAbstractButton) -> bool:
    """Run ``rule`` (a core name check that raises Invalid) on a non-empty ``text``, show why it
    fails beside the field, and enable ``button`` only when it passes."""
    problem = ""
    if text.strip():
        try:
            rule(text)
        except Invalid as exc:
            problem = exc.message
    reason.show_reason(problem)
    valid = bool(text.strip()) and not problem
    button.setEnabled(valid)
    return valid
