"""New > Mailbox, as the original: name, "Create associated user", password and confirmation."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

from core import passwords
from core.errors import Invalid, MailError
from core.names import normalize_mailbox
from gui.dialogs import error_box
from gui.dialogs.form import Reason, buddy_label, keep_text_whole, password_problem

Submit = Callable[[dict[str, Any], Callable[[Any], None], Callable[[MailError], None]], None]


class NewMailboxDialog(QDialog):
    """Adds a mailbox to ``domain``; OK stays disabled until the input is valid."""

    def __init__(self, parent: QWidget | None, *, domain: str, display_domain: str = "", auth: str = "passwordfile",
                 create_user_default: bool = False, submit: Submit) -> None:
        super().__init__(parent)
        self.setWindowTitle("Add Mailbox")
        self.domain = domain
        self.auth = auth
        self._submit = submit
        self.name_edit = QLineEdit()
        self.name_edit.setAccessibleName("Mailbox Name")
        self.name_edit.setPlaceholderText("alice")
        self.create_user = QCheckBox("&Create associated user for this mailbox")
        self.create_user.setChecked(create_user_default)
        self.create_user.setToolTip("The default comes from the server setting \"Always create an associated user "
                                    "for new mailboxes\". Clear it only if an account with this name already exists.")
        if auth == "passwordfile":
            # The password file is the user store: every mailbox has its own entry and password.
            self.create_user.setChecked(True)
            self.create_user.setEnabled(False)
            self.create_user.setToolTip("With the encrypted password file every mailbox has its own user entry "
                                        "and password.")
        self.password = QLineEdit()
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.password.setAccessibleName("Password")
        self.password.setToolTip(passwords.RULE)
        self.confirm = QLineEdit()
        self.confirm.setEchoMode(QLineEdit.EchoMode.Password)
        self.confirm.setAccessibleName("Confirm Password")
        self.name_reason, self.password_reason, self.confirm_reason = Reason(), Reason(), Reason()

        name_row = QHBoxLayout()
        name_row.addWidget(self.name_edit, 1)
        name_row.addWidget(QLabel(f"@{display_domain or domain}"))
        form = QFormLayout()
        form.addRow(buddy_label("&Mailbox Name:", self.name_edit), name_row)
        form.addRow("", self.name_reason)
        form.addRow("", self.create_user)
        form.addRow("&Password:", self.password)
        form.addRow("", self.password_reason)
        form.addRow("C&onfirm Password:", self.confirm)
        form.addRow("", self.confirm_reason)
        self._buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.ok_button = self._buttons.button(QDialogButtonBox.StandardButton.Ok)
        layout = QVBoxLayout(self)
        intro = QLabel(f"Add a mailbox to the domain <b>{display_domain or domain}</b>.")
        layout.addWidget(intro)
        layout.addLayout(form)
        layout.addStretch(1)
        layout.addWidget(self._buttons)
        self._buttons.accepted.connect(self._on_ok)
        self._buttons.rejected.connect(self.reject)
        for edit in (self.name_edit, self.password, self.confirm):
            edit.textChanged.connect(self._validate)
        self.create_user.toggled.connect(self._validate)
        keep_text_whole(self, 440, 260)
        self._touched_name = False
        self.name_edit.textEdited.connect(lambda _t: setattr(self, "_touched_name", True))
        self._validate()

    @property
    def address(self) -> str:
        return f"{self.name_edit.text().strip().lower()}@{self.domain}"

    def values(self) -> dict[str, Any]:
        wants_user = self.create_user.isChecked()
        return {"address": self.address, "create_user": wants_user,
                "password": self.password.text() if wants_user else None}

    def _validate(self) -> bool:
        name = self.name_edit.text()
        name_problem = ""
        if name:
            try:
                normalize_mailbox(name, self.auth)
            except Invalid as exc:
                name_problem = exc.message
        self.name_reason.show_reason(name_problem)
        wants_user = self.create_user.isChecked()
        self.password.setEnabled(wants_user)
        self.confirm.setEnabled(wants_user)
        pw_problem, confirm_problem = password_problem(self.password.text(), self.confirm.text()) \
            if wants_user else ("", "")
        # Say "type a password" only once the user has moved on from the name.
        self.password_reason.show_reason(pw_problem if self.password.text() or self.confirm.text() else "")
        self.confirm_reason.show_reason(confirm_problem if self.confirm.text() or
                                        (self.password.text() and confirm_problem) else "")
        valid = bool(name) and not name_problem and not pw_problem and not confirm_problem
        self.ok_button.setEnabled(valid)
        self.ok_button.setToolTip("" if valid else (name_problem or pw_problem or confirm_problem
                                                    or "Type a mailbox name."))
        return valid

    def _on_ok(self) -> None:
        if not self._validate():
            return
        self.ok_button.setEnabled(False)
        self._submit(self.values(), self._created, self._failed)

    def _created(self, result: Any) -> None:
        self.created_info = result
        self.accept()

    def _failed(self, error: MailError) -> None:
        self._validate()
        error_box.show_error(self, error, doing=f"create the mailbox {self.address}")
