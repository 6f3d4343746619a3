"""Which server the console manages: this computer, or another one over its remote
administration listener (File > Connect to Another Computer, and the remembered servers under
the root of the tree).

It asks for the certificate on first use (and warns loudly if a pinned one changes), keeps the
token in the system keyring only when that keyring is secure, and asks again for a refused token.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QSettings
from PySide6.QtWidgets import QMessageBox

from gui.dialogs.connect_computer import ConnectComputerDialog
from gui.models.tree_model import ScopeTreeModel
from gui.remote_servers import (
    RemoteServer,
    TokenVault,
    forget,
    pin_fingerprint,
    pinned_fingerprint,
    remember,
    remembered,
)
from gui.views.host import ConsoleHost

LOCAL_KEY = "local"


class ServerSwitch(QObject):
    """Points the console's client at a server and keeps the remembered list in the tree."""

    def __init__(self, host: ConsoleHost, client: Any, *, settings: QSettings, tree_model: ScopeTreeModel,
                 vault: TokenVault | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.host = host
        self.client = client
        self.settings = settings
        self.tree_model = tree_model
        self.vault = vault if vault is not None else TokenVault()
        self.server: RemoteServer | None = None        # the remote server being managed, if any
        self._token_to_save = ""
        self._local_dir = Path(getattr(client, "data_dir", ""))
        client.connected.connect(self._on_connected)
        if hasattr(client, "certificate_unknown"):
            client.certificate_unknown.connect(self._certificate_unknown)
            client.auth_failed.connect(self._auth_failed)
        self.refresh_tree()

    # -- what the window calls -------------------------------------------------------------------
    def open_dialog(self, *, preset: RemoteServer | None = None, message: str = "") -> ConnectComputerDialog:
        names = [s.key for s in remembered(self.settings)]
        dialog = ConnectComputerDialog(self.host.dialog_parent(), data_dir=str(self._local_dir), remembered=names,
                                       vault=self.vault, preset=preset, message=message)

        def chosen() -> None:
            choice = dialog.choice()
            if choice.local:
                self.connect_local(Path(choice.data_dir))
                return
            server = choice.server
            if server is None:
                return
            token = choice.token or self.vault.load(server)
            self.connect_remote(server, token, save=choice.remember_token and bool(choice.token))

        dialog.accepted.connect(chosen)
        self.host.open_dialog(dialog, "connect")
        return dialog

    def node_selected(self, key: str) -> None:
        """A remembered server was selected in the tree: connect to it."""
        self._select_server()   # first: the remembered nodes are rebuilt below
        if key == LOCAL_KEY:
            self.connect_local(self._local_dir)
            return
        server = RemoteServer.parse(key)
        if server is None:
            return
        token = self.vault.load(server)
        if token:
            self.connect_remote(server, token, save=False)
        else:
            reason = "" if self.vault.available else " (it is not kept: " + self.vault.reason + ")"
            self.open_dialog(preset=server, message=f"Give the admin token for {server.label}{reason}.")

    def connect_local(self, data_dir: Path) -> None:
        client = self.client
        self._select_server()
        self.server = None
        self._token_to_save = ""
        self._local_dir = Path(data_dir)
        if hasattr(client, "point_at_local"):
            client.point_at_local(self._local_dir)
        self.settings.setValue("connect/data_dir", str(self._local_dir))
        self.refresh_tree()

    def connect_remote(self, server: RemoteServer, token: str, *, save: bool) -> None:
        self._select_server()
        self.server = server
        self._token_to_save = token if save else ""
        remember(self.settings, server)
        self.client.point_at_remote(server.host, server.port, token, pinned_fingerprint(self.settings, server))
        self.refresh_tree()

    def can_remove(self, key: str) -> bool:
        """A remembered computer can be removed; this computer cannot."""
        return key != LOCAL_KEY and RemoteServer.parse(key) is not None

    def removable(self) -> list[tuple[str, str]]:
        """The remembered computers as (key, label), for View > Options."""
        return [(s.key, s.label) for s in remembered(self.settings)]

    def remove(self, key: str) -> None:
        """Forget a remembered computer: its place in the tree, its token and its pinned certificate.
        The one being managed now stays connected; it is not listed once the console leaves it."""
        server = RemoteServer.parse(key)
        if server is None or not self.can_remove(key):
            return
        forget(self.settings, server, self.vault)
        self.refresh_tree()
        self.host.show_message(f"{server.label} was removed from the console.", 5000)

    def refresh_tree(self) -> None:
        entries = [(s.key, s.label) for s in remembered(self.settings) if s != self.server]
        if self.server is not None:
            entries.insert(0, (LOCAL_KEY, "This computer"))
        self.tree_model.set_remembered(entries)

    # -- answers from the client -------------------------------------------------------------------
    def _select_server(self) -> None:
        self.host.select_server()

    def _on_connected(self) -> None:
        if self.server is None:
            return
        client = self.client
        seen = getattr(client, "seen_fingerprint", "")
        if seen:
            pin_fingerprint(self.settings, self.server, seen)
        if self._token_to_save:
            token, self._token_to_save = self._token_to_save, ""
            if not self.vault.save(self.server, token):
                self.host.show_message(f"The token was not stored: {self.vault.reason}.", 8000)

    def _certificate_unknown(self, fingerprint: str, details: str) -> None:
        server = self.server
        if server is None:
            return
        pinned = pinned_fingerprint(self.settings, server)
        if pinned and pinned != fingerprint:
            icon = QMessageBox.Icon.Warning
            text = (f"<b>The certificate of {server.label} has changed.</b><br><br>"
                    f"Remembered: <tt>{pinned}</tt><br>Now: <tt>{fingerprint}</tt><br><br>"
                    "If the server's certificate was renewed, this is expected. Otherwise someone may be "
                    "between you and the server. Trust the new certificate only if you can confirm it on the "
                    "server (its Service Status page shows the fingerprint).")
        else:
            icon = QMessageBox.Icon.Question
            text = (f"<b>First connection to {server.label}.</b><br><br>"
                    f"Its certificate is not vouched for by an authority ({details}). This is normal for the "
                    "service's own self-signed certificate. Check that its SHA-256 fingerprint is the one the "
                    "server shows on its Service Status page:<br><br>"
                    f"<tt>{fingerprint}</tt><br><br>Trust this certificate and connect?")
        box = QMessageBox(icon, "Server certificate", text,
                          QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, self.host.dialog_parent())
        box.setDefaultButton(QMessageBox.StandardButton.No)
        box.setTextFormat(box.textFormat().RichText)

        def decided(result: int) -> None:
            if result == QMessageBox.StandardButton.Yes and self.server == server:
                pin_fingerprint(self.settings, server, fingerprint)
                self.client.trust(fingerprint)
            elif self.server == server:
                self.client.stop()   # ends the attempt: the banner says the server is not reachable, and why
                self.host.show_message(f"Not connected to {server.label}: certificate not trusted.", 8000)

        box.finished.connect(decided)
        self.host.show_dialog(box)

    def _auth_failed(self, message: str) -> None:
        server = self.server
        if server is None:
            return
        self._token_to_save = ""
        self.vault.forget(server)   # a stored token that no longer works is of no use
        self.open_dialog(preset=server, message=f"{server.label} refused the token: {message}")
