"""File > Connect to Another Computer, as MMC's "Select Computer" dialog.

The local choice works today (it may also point at another data directory, i.e. a second
service on this machine). Another computer needs the service's remote admin listener, which does
not exist yet: the dialog remembers the names and the window says so plainly.
"""
from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtWidgets import (QButtonGroup, QComboBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout,
                               QHBoxLayout, QLabel, QLineEdit, QPushButton, QRadioButton, QVBoxLayout, QWidget)

REMEMBERED_MAX = 10


@dataclass(frozen=True)
class ConnectChoice:
    """Where to connect: this computer (with its data directory) or another computer by name."""

    local: bool
    data_dir: str = ""
    computer: str = ""


class ConnectComputerDialog(QDialog):
    """Pick this computer or another one; OK is enabled once the choice is complete."""

    def __init__(self, parent: QWidget | None, *, data_dir: str, remembered: list[str]) -> None:
        super().__init__(parent)
        self.setWindowTitle("Select Computer")
        self.local = QRadioButton("&Local computer (the computer this console is running on)")
        self.remote = QRadioButton("&Another computer:")
        group = QButtonGroup(self)
        group.addButton(self.local)
        group.addButton(self.remote)
        self.local.setChecked(True)
        self.data_dir = QLineEdit(data_dir)
        browse = QPushButton("&Browse…")
        browse.clicked.connect(self._browse)
        self.computer = QComboBox()
        self.computer.setEditable(True)
        self.computer.addItems(remembered)
        self.computer.setCurrentText("")
        self.computer.lineEdit().setPlaceholderText("mail.example.com")
        local_row = QHBoxLayout()
        local_row.addWidget(self.data_dir, 1)
        local_row.addWidget(browse)
        form = QFormLayout()
        form.addRow(self.local)
        form.addRow("      Data directory:", local_row)
        form.addRow(self.remote)
        form.addRow("      Computer name:", self.computer)
        note = QLabel("Managing another computer needs its POP3 Service to accept remote administration, "
                      "which this version does not offer yet.")
        note.setWordWrap(True)
        note.setStyleSheet("color: #555;")
        form.addRow(note)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.ok_button = buttons.button(QDialogButtonBox.StandardButton.Ok)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Select the computer you want this console to manage."))
        layout.addLayout(form)
        layout.addWidget(buttons)
        for signal in (self.local.toggled, self.data_dir.textChanged, self.computer.currentTextChanged):
            signal.connect(self._update)
        self.resize(480, 10)
        self._update()

    def choice(self) -> ConnectChoice:
        if self.local.isChecked():
            return ConnectChoice(local=True, data_dir=self.data_dir.text().strip())
        return ConnectChoice(local=False, computer=self.computer.currentText().strip())

    def _update(self) -> None:
        local = self.local.isChecked()
        self.data_dir.setEnabled(local)
        self.computer.setEnabled(not local)
        c = self.choice()
        self.ok_button.setEnabled(bool(c.data_dir) if local else bool(c.computer))

    def _browse(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Data directory", self.data_dir.text())
        if path:
            self.data_dir.setText(path)


def remember(names: list[str], computer: str) -> list[str]:
    """The remembered-servers list with ``computer`` first, without duplicates, at most 10."""
    out = [computer] + [n for n in names if n.lower() != computer.lower()]
    return out[:REMEMBERED_MAX]
