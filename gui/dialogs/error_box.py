"""The single place where an error becomes a popup (Anki's ``showWarning``, git-cola's ``cmds.do``).

Tests replace ``show_error`` (``monkeypatch.setattr(error_box, "presenter", ...)``) to collect
messages instead of opening a modal box.
"""
from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import QMessageBox, QWidget

from core.errors import INTERNAL, MailError

TITLE = "POP3 Service"

# A heading for every code the admin channel answers with (core.errors.ERROR_CODES), and for the
# finer kinds under a code (core.errors.ERROR_KINDS): it names what went wrong; the message says why
# and what to do.
HEADINGS: dict[str, str] = {
    "error": "The operation failed.",
    "invalid": "The input was not accepted.",
    "not_found": "It does not exist.",
    "conflict": "The current state does not allow it.",
    "forbidden": "Permission was denied.",
    "unavailable": "The POP3 Service cannot do that right now.",
    "auth_failed": "The credentials were not accepted.",
    "quota": "The mailbox is full.",
    INTERNAL: "The POP3 Service failed unexpectedly.",
}
KIND_HEADINGS: dict[tuple[str, str], str] = {
    ("invalid", "password"): "The password was not accepted.",
    ("not_found", "account"): "The user account does not exist.",
    ("conflict", "exists"): "It already exists.",
    ("conflict", "locked"): "It is locked.",
    ("unavailable", "disk_full"): "The disk is full.",
    ("unavailable", "unreachable"): "The POP3 Service cannot be reached.",
}
FALLBACK = HEADINGS["error"]


def heading_for(error: MailError) -> str:
    """The heading that fits ``error``: its kind's, else its code's."""
    return KIND_HEADINGS.get((error.code, error.kind)) or HEADINGS.get(error.code, FALLBACK)


def _message_box(parent: QWidget | None, heading: str, message: str) -> None:
    box = QMessageBox(QMessageBox.Icon.Warning, TITLE, heading, QMessageBox.StandardButton.Ok, parent)
    box.setInformativeText(message)
    box.exec()


presenter: Callable[[QWidget | None, str, str], None] = _message_box


def show_error(parent: QWidget | None, error: BaseException | str, *, doing: str = "") -> None:
    """Show ``error`` (a MailError from the service, or a text) to the administrator."""
    if isinstance(error, MailError):
        heading = heading_for(error)
        message = error.message   # never error.hint: that is command-line advice, for winpop
    elif doing:
        # The console's own text already says what went wrong; "The operation failed." adds nothing.
        presenter(parent, f"Could not {doing}.", str(error))
        return
    else:
        heading, message = FALLBACK, str(error)
    if doing:
        heading = f"Could not {doing}. {heading}"
    presenter(parent, heading, message)
