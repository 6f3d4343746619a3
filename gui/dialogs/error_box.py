"""The single place where an error becomes a popup (Anki's ``showWarning``, git-cola's ``cmds.do``).

Tests replace ``show_error`` (``monkeypatch.setattr(error_box, "presenter", ...)``) to collect
messages instead of opening a modal box.
"""
from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import QMessageBox, QWidget

from core.errors import MailError

TITLE = "POP3 Service"

_HEADINGS = {
    "invalid": "The input was not accepted.",
    "not_found": "It no longer exists.",
    "conflict": "That cannot be done right now.",
    "forbidden": "You may not do that.",
    "unavailable": "The POP3 Service is not available.",
    "auth_failed": "The credentials were not accepted.",
    "quota": "The mailbox is full.",
}


def _message_box(parent: QWidget | None, heading: str, message: str) -> None:
    box = QMessageBox(QMessageBox.Icon.Warning, TITLE, heading, QMessageBox.StandardButton.Ok, parent)
    box.setInformativeText(message)
    box.exec()


presenter: Callable[[QWidget | None, str, str], None] = _message_box


def show_error(parent: QWidget | None, error: BaseException | str, *, doing: str = "") -> None:
    """Show ``error`` (a MailError from the service, or a text) to the administrator."""
    if isinstance(error, MailError):
        heading = _HEADINGS.get(error.code, "The operation failed.")
        message = error.message
    else:
        heading, message = "The operation failed.", str(error)
    if doing:
        heading = f"Could not {doing}. {heading}"
    presenter(parent, heading, message)
