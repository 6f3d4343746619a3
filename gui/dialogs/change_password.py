"""Change Password for a mailbox."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QFormLayout, QLabel, QLineEdit, QVBoxLayout, QWidget

from core import passwords
from core.errors import MailError
from gui.dialogs import error_box
from gui.dialogs.form import Reason, keep_text_whole, password_problem

Submit = Callable[[str, Callable[[Any], None], Callable[[MailError], None]], None]


class ChangePasswordDialog(QDialog):
    """New password twice; OK stays disabled until they match."""

    def __init__(self, parent: QWidget | None, *, address: str, submit: Submit) -> None:
        super().__init__(parent)
        self.setWindowTitle("Change Password")
        self.address = address
        self._submit = submit
        self.password = QLineEdit()
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.password.setToolTip(passwords.RULE)
        self.confirm = QLineEdit()
        self.confirm.setEchoMode(QLineEdit.EchoMode.Password)
        self.password_reason, self.confirm_reason = Reason(), Reason()
        form = QFormLayout()
        form.addRow("&New password:", self.password)
        form.addRow("", self.password_reason)
        form.addRow("&Confirm password:", self.confirm)
        form.addRow("", self.confirm_reason)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.ok_button = buttons.button(QDialogButtonBox.StandardButton.Ok)
        buttons.accepted.connect(self._on_ok)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(f"Type a new password for <b>{address}</b>."))
        layout.addLayout(form)
        layout.addWidget(buttons)
        for edit in (self.password, self.confirm):
            edit.textChanged.connect(self._validate)
        keep_text_whole(self, 400, 10)
        self._validate()

    def _validate(self) -> bool:
        pw, confirm = password_problem(self.password.text(), self.confirm.text())
        self.password_reason.show_reason(pw if self.password.text() or self.confirm.text() else "")
        self.confirm_reason.show_reason(confirm if self.confirm.text() else "")
        valid = not pw and not confirm
        self.ok_button.setEnabled(valid)
        return valid

    def _on_ok(self) -> None:
        if self._validate():
            self.ok_button.setEnabled(False)
            self._submit(self.password.text(), lambda _r: self.accept(), self._failed)

    def _failed(self, error: MailError) -> None:
        self._validate()
        error_box.show_error(self, error, doing=f"change the password of {self.address}")
