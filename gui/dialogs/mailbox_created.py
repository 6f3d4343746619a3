"""What to type into a mailbox's mail client, with a Copy button: the confirmation after New Mailbox
(which can be turned off, see gui.dialogs.options), and the mailbox's
Mail Client Settings at any time."""
from __future__ import annotations

import html
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QStyle,
    QVBoxLayout,
    QWidget,
)

from core.catalog import LISTENERS


def _port(ports: dict[str, int], name: str) -> int:
    return int(ports.get(name) or 0)


def client_settings(mailbox: dict[str, Any], *, hostname: str, auth: str, spa_required: bool,
                    ports: dict[str, int]) -> list[tuple[str, str]]:
    """The lines a user types into a mail client, as (label, value) pairs."""
    address = str(mailbox.get("address") or f"{mailbox['name']}@{mailbox['domain']}")
    if auth == "passwordfile":
        rows = [("E-mail address", address),
                ("Account name (plaintext authentication)", address),
                ("Account name (Secure Password Authentication)", address)]
    else:
        # PAM and a directory check only a password sent as it is (no reusable secret exists for
        # APOP, CRAM-MD5 or NTLM): the client uses plaintext authentication, inside TLS.
        name = str(mailbox.get("name") or address.partition("@")[0])
        rows = [("E-mail address", address),
                ("Account name", f"{address} (or {name})" if auth == "local" else address),
                ("Secure Password Authentication (SPA)", "off: not available with "
                 + ("local system accounts" if auth == "local" else "a directory")
                 + "; the connection is encrypted instead")]
    pop3 = [f"{_port(ports, n)} with {LISTENERS[n].tls.shown}" for n in ("pop3", "pop3s") if _port(ports, n)]
    rows.append(("Incoming mail server (POP3)", hostname))
    rows.append(("POP3 port", ", or ".join(pop3) if pop3 else "no POP3 listener is enabled"))
    smtp = [f"{_port(ports, n)} with {LISTENERS[n].tls.shown}" for n in ("submission", "smtps") if _port(ports, n)]
    rows.append(("Outgoing mail server (SMTP)", hostname))
    rows.append(("SMTP port", ", or ".join(smtp) if smtp
                 else "no submission listener is enabled"))
    if spa_required and auth != "passwordfile":
        rows.append(("Note", "This server requires secure password authentication. With this authentication "
                             "method that means TLS is required: the password is accepted only over an "
                             "encrypted connection (STARTTLS or SSL/TLS)."))
    elif spa_required:
        rows.append(("Note", "This server requires secure password authentication: a plaintext password is "
                             "accepted only over an encrypted (TLS) connection."))
    return rows


class MailboxCreatedDialog(QDialog):
    """Tells the administrator which account name and servers the user's mail client needs.

    After New Mailbox (``created``) it says so and carries ``dont_show`` (gui.dialogs.options makes
    it); from Mail Client Settings it is the same sheet without either."""

    def __init__(self, parent: QWidget | None, rows: list[tuple[str, str]], *, address: str, created: bool = True,
                 dont_show: QCheckBox | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("POP3 Service" if created else f"Mail Client Settings - {address}")
        self.rows = rows
        icon = QLabel()
        icon.setPixmap(self.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxInformation).pixmap(32, 32))
        first = (f"The mailbox {html.escape(address)} was created." if created
                 else f"Mail client settings for {html.escape(address)}")
        heading = QLabel(f"<b>{first}</b><br>Give the user these settings for the mail client:")
        details = QFormLayout()
        details.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        for key, value in rows:
            if key == "Note":
                continue
            shown = QLabel(f"<b>{html.escape(value)}</b>")
            shown.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            details.addRow(f"{key}:", shown)
        self.dont_show = dont_show
        self.copy_button = QPushButton("&Copy")
        self.copy_button.setToolTip("Copy these settings to the clipboard, to paste into an e-mail to the user")
        self.copy_button.clicked.connect(self.copy)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok)
        buttons.addButton(self.copy_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.accepted.connect(self.accept)
        top = QHBoxLayout()
        top.addWidget(icon, 0)
        text = QVBoxLayout()
        text.addWidget(heading)
        text.addLayout(details)
        for key, value in rows:
            if key == "Note":
                note = QLabel(value)
                note.setWordWrap(True)
                text.addWidget(note)
        top.addLayout(text, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        if dont_show is not None:
            layout.addWidget(dont_show)
        layout.addWidget(buttons)
        self.setMinimumWidth(700)
        self.adjustSize()

    def text(self) -> str:
        return "\n".join(f"{k}: {v}" for k, v in self.rows)

    def copy(self) -> None:
        QGuiApplication.clipboard().setText(self.text())
        self.copy_button.setText("Copied")
