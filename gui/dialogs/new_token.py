"""New Token: a name for the console that will use it, then the token itself, shown once, with Copy."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from core.errors import MailError
from core.names import check_token_name
from gui.dialogs import error_box
from gui.dialogs.form import Reason, buddy_label, check_field, keep_text_whole

Submit = Callable[[str, Callable[[Any], None], Callable[[MailError], None]], None]


class NewTokenDialog(QDialog):
    """Step 1 asks for a name; step 2 shows the token the service made, which it keeps only as a hash."""

    def __init__(self, parent: QWidget | None, *, submit: Submit, port: int = 0) -> None:
        super().__init__(parent)
        self.setWindowTitle("New Remote Administration Token")
        self._submit = submit
        self.token = ""
        self.pages = QStackedWidget()

        ask = QWidget()
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("laptop of alice")
        self.name_edit.setAccessibleName("Token name")
        self.reason = Reason()
        intro = QLabel("A token lets the console on another computer manage this server over the network "
                       "(<b>File → Connect to Another Computer</b>). Name it after that computer or person, "
                       "so you know which token to revoke later.")
        intro.setWordWrap(True)
        ask_layout = QVBoxLayout(ask)
        ask_layout.setContentsMargins(0, 0, 0, 0)
        ask_layout.addWidget(intro)
        ask_layout.addWidget(buddy_label("&Name:", self.name_edit))
        ask_layout.addWidget(self.name_edit)
        ask_layout.addWidget(self.reason)
        ask_layout.addStretch(1)

        show = QWidget()
        self.shown_label = QLabel()
        self.shown_label.setWordWrap(True)
        self.token_edit = QLineEdit()
        self.token_edit.setReadOnly(True)
        self.token_edit.setAccessibleName("Token")
        self.copy_button = QPushButton("&Copy")
        self.copy_button.clicked.connect(self.copy)
        row = QHBoxLayout()
        row.addWidget(self.token_edit, 1)
        row.addWidget(self.copy_button)
        where = (f"port {port}" if port else "the remote administration port (Server Properties → Security; it is off "
                 "until you set one)")
        after = QLabel(f"On the other computer, choose <b>File → Connect to Another Computer</b>, give this "
                       f"server's name and {where}, and paste the token. <b>This is the only time the token is "
                       f"shown</b>: the service keeps only a hash of it. If it is lost, revoke it and make another.")
        after.setWordWrap(True)
        show_layout = QVBoxLayout(show)
        show_layout.setContentsMargins(0, 0, 0, 0)
        show_layout.addWidget(self.shown_label)
        show_layout.addLayout(row)
        show_layout.addWidget(after)
        show_layout.addStretch(1)

        self.pages.addWidget(ask)
        self.pages.addWidget(show)
        self._buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.ok_button = self._buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok_button.setText("C&reate")
        self.cancel_button = self._buttons.button(QDialogButtonBox.StandardButton.Cancel)
        layout = QVBoxLayout(self)
        layout.addWidget(self.pages, 1)
        layout.addWidget(self._buttons)
        self._buttons.accepted.connect(self._on_ok)
        self._buttons.rejected.connect(self.reject)
        self.name_edit.textChanged.connect(self._validate)
        keep_text_whole(self, 520, 220)
        self._validate()

    def _validate(self) -> bool:
        return check_field(self.name_edit.text(), check_token_name, self.reason, self.ok_button)

    def _on_ok(self) -> None:
        if self.token:          # step 2: OK closes
            self.accept()
            return
        if not self._validate():
            return
        self.ok_button.setEnabled(False)
        self._submit(self.name_edit.text().strip(), self._created, self._failed)

    def _created(self, result: Any) -> None:
        self.token = str(result.get("token", ""))
        self.shown_label.setText(f"The token for <b>{result.get('name', '')}</b>:")
        self.token_edit.setText(self.token)
        self.token_edit.selectAll()
        self.pages.setCurrentIndex(1)
        self.ok_button.setText("OK")
        self.ok_button.setEnabled(True)
        self.cancel_button.setVisible(False)
        self.copy_button.setFocus()

    def _failed(self, error: MailError) -> None:
        self._validate()
        error_box.show_error(self, error, doing="create the token")

    def copy(self) -> None:
        QGuiApplication.clipboard().setText(self.token)
        self.copy_button.setText("Copied")
