"""New > Domain: one field, a fully qualified domain name."""
from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QLineEdit, QVBoxLayout, QWidget

from core.errors import MailError
from core.names import normalize_domain
from gui.dialogs import error_box
from gui.dialogs.form import Reason, buddy_label, check_field, keep_text_whole

Submit = Callable[[str, Callable[[object], None], Callable[[MailError], None]], None]


class NewDomainDialog(QDialog):
    """Asks for a domain name; OK stays disabled until it is a valid FQDN."""

    def __init__(self, parent: QWidget | None, *, submit: Submit) -> None:
        super().__init__(parent)
        self.setWindowTitle("Add Domain")
        self._submit = submit
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("example.com")
        self.name_edit.setAccessibleName("Domain name")
        self.reason = Reason()
        self._buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.ok_button = self._buttons.button(QDialogButtonBox.StandardButton.Ok)
        layout = QVBoxLayout(self)
        intro = QLabel("Type the name of the new e-mail domain, such as <b>example.com</b>. "
                       "Mail addressed to <i>name</i>@<i>domain</i> is delivered to its mailboxes.")
        intro.setWordWrap(True)
        layout.addWidget(intro)
        layout.addWidget(buddy_label("&Domain name:", self.name_edit))
        layout.addWidget(self.name_edit)
        layout.addWidget(self.reason)
        layout.addStretch(1)
        layout.addWidget(self._buttons)
        self._buttons.accepted.connect(self._on_ok)
        self._buttons.rejected.connect(self.reject)
        self.name_edit.textChanged.connect(self._validate)
        keep_text_whole(self, 380, 170)
        self._validate()

    def _validate(self) -> bool:
        return check_field(self.name_edit.text(), normalize_domain, self.reason, self.ok_button)

    def _on_ok(self) -> None:
        if not self._validate():
            return
        self.ok_button.setEnabled(False)
        self._submit(self.name_edit.text().strip(), lambda _r: self.accept(), self._failed)

    def _failed(self, error: MailError) -> None:
        self._validate()
        error_box.show_error(self, error, doing="create the domain")
