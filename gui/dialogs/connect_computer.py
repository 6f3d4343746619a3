"""File > Connect to Another Computer, as MMC's "Select Computer" dialog.

This computer (optionally another data directory, i.e. a second service on this machine), or
another computer's remote administration listener: host, port and an admin token (made there
with ``winpop token create NAME``). The token is kept in a secure system keyring if there is
one and the box is ticked; without one the dialog says so and the token is asked again next time.
"""
from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from core.ipc.protocol import DEFAULT_TCP_PORT
from gui.dialogs.form import keep_text_whole
from gui.remote_servers import RemoteServer, TokenVault

REMEMBERED_MAX = 10


@dataclass(frozen=True)
class ConnectChoice:
    """Where to connect: this computer (with its data directory) or another computer."""

    local: bool
    data_dir: str = ""
    computer: str = ""
    port: int = DEFAULT_TCP_PORT
    token: str = ""                 # '' = use the one in the keyring
    remember_token: bool = False

    @property
    def server(self) -> RemoteServer | None:
        return None if self.local else RemoteServer.parse(self.computer, self.port)


class ConnectComputerDialog(QDialog):
    """Pick this computer or another one; OK is enabled once the choice is complete."""

    def __init__(self, parent: QWidget | None, *, data_dir: str, remembered: list[str],
                 vault: TokenVault | None = None, preset: RemoteServer | None = None, message: str = "") -> None:
        super().__init__(parent)
        self.setWindowTitle("Select Computer")
        self.vault = vault if vault is not None else TokenVault()
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
        entry = self.computer.lineEdit()
        if entry is not None:   # an editable combo box has its line edit
            entry.setPlaceholderText("mail.example.com")
        self.computer.setAccessibleName("Computer name")
        self.port = QSpinBox()
        self.port.setRange(1, 65535)
        self.port.setValue(DEFAULT_TCP_PORT)
        self.port.setAccessibleName("Port")
        self.token = QLineEdit()
        self.token.setEchoMode(QLineEdit.EchoMode.Password)
        self.token.setAccessibleName("Admin token")
        self.token.setPlaceholderText("p3t_…  (winpop token create NAME, on that computer)")
        self.remember_token = QCheckBox("&Remember the token in the system keyring")
        self.keyring_note = QLabel()
        self.keyring_note.setWordWrap(True)
        self.keyring_note.setStyleSheet("color: #555;")
        if self.vault.available:
            self.remember_token.setChecked(True)
            self.keyring_note.setVisible(False)
        else:
            self.remember_token.setEnabled(False)
            self.keyring_note.setText(f"The token will not be remembered: {self.vault.reason}. "
                                      "The console asks for it each time.")
        local_row = QHBoxLayout()
        local_row.addWidget(self.data_dir, 1)
        local_row.addWidget(browse)
        remote_row = QHBoxLayout()
        remote_row.addWidget(self.computer, 1)
        remote_row.addWidget(QLabel("Port:"))
        remote_row.addWidget(self.port)
        form = QFormLayout()
        form.addRow(self.local)
        form.addRow("      Data directory:", local_row)
        form.addRow(self.remote)
        form.addRow("      Computer name:", remote_row)
        form.addRow("      Admin token:", self.token)
        form.addRow("", self.remember_token)
        note = QLabel("The other computer's POP3 Service must accept remote administration "
                      "(winpop set admin_tcp_port 9110). The connection is encrypted (TLS); the first time, "
                      "the console shows the server certificate's fingerprint for you to check.")
        note.setWordWrap(True)
        note.setStyleSheet("color: #555;")
        self.message = QLabel(message)
        self.message.setWordWrap(True)
        self.message.setStyleSheet("color: #a00000;")
        self.message.setVisible(bool(message))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.ok_button = buttons.button(QDialogButtonBox.StandardButton.Ok)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Select the computer you want this console to manage."))
        layout.addWidget(self.message)
        layout.addLayout(form)
        layout.addWidget(self.keyring_note)
        layout.addWidget(note)
        layout.addWidget(buttons)
        for signal in (self.local.toggled, self.data_dir.textChanged, self.computer.currentTextChanged,
                       self.token.textChanged):
            signal.connect(self._update)
        self.computer.currentTextChanged.connect(self._computer_chosen)
        keep_text_whole(self, 560, 10)
        if preset is not None:
            self.remote.setChecked(True)
            self.computer.setCurrentText(preset.host)
            self.port.setValue(preset.port)
            self.token.setFocus()
        self._update()

    def choice(self) -> ConnectChoice:
        if self.local.isChecked():
            return ConnectChoice(local=True, data_dir=self.data_dir.text().strip())
        return ConnectChoice(local=False, computer=self.computer.currentText().strip(), port=self.port.value(),
                             token=self.token.text().strip(),
                             remember_token=self.remember_token.isEnabled() and self.remember_token.isChecked())

    def _computer_chosen(self, text: str) -> None:
        server = RemoteServer.parse(text, self.port.value())
        if server is not None and ":" in text.strip("[]").split("]")[-1]:
            self.port.setValue(server.port)   # a remembered "host:port" fills the port

    def _stored_token(self) -> bool:
        server = self.choice().server
        return bool(server and self.vault.available and self.vault.load(server))

    def _update(self) -> None:
        local = self.local.isChecked()
        self.data_dir.setEnabled(local)
        for w in (self.computer, self.port, self.token):
            w.setEnabled(not local)
        self.remember_token.setEnabled(not local and self.vault.available)
        c = self.choice()
        if local:
            self.ok_button.setEnabled(bool(c.data_dir))
            return
        stored = self._stored_token() if c.server else False
        self.token.setPlaceholderText("(kept in the system keyring)" if stored
                                      else "p3t_…  (winpop token create NAME, on that computer)")
        self.ok_button.setEnabled(c.server is not None and (bool(c.token) or stored))

    def _browse(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Data directory", self.data_dir.text())
        if path:
            self.data_dir.setText(path)


def remember(names: list[str], computer: str) -> list[str]:
    """The remembered-servers list with ``computer`` first, without duplicates, at most 10."""
    out = [computer] + [n for n in names if n.lower() != computer.lower()]
    return out[:REMEMBERED_MAX]
