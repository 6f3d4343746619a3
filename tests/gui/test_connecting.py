"""Issue 15: switching to another server never flashes the "not reachable" banner of the one left
behind, and the banner speaks plain sentences, never Qt's errorString() ("QLocalSocket::connectToServer:
Invalid name", "Connection refused")."""
from __future__ import annotations

import pytest
from PySide6.QtCore import QEvent, QObject
from PySide6.QtNetwork import QAbstractSocket, QLocalSocket
from PySide6.QtWidgets import QMessageBox

from gui import ipc_client
from gui.ipc_client import LOCAL_SOCKET_ERRORS, REMOTE_SOCKET_ERRORS, IpcClient, socket_error_text
from gui.remote_servers import RemoteServer, TokenVault
from gui.views.main_window import MainWindow
from tests.fake_service import FakeService
from tests.gui.conftest import open_window
from tests.gui.test_connect_remote import FP, TOKEN, MemoryKeyring, answer_certificate
from tests.support import free_port, wait_for

QT_WORDS = ("QLocalSocket", "QAbstractSocket", "QSslSocket", "::", "Connection refused", "Invalid name",
            "Unknown error")


class ShowRecorder(QObject):
    """Records every time a widget is shown or hidden (a flash of a moment counts)."""

    def __init__(self, widget) -> None:
        super().__init__(widget)
        self.events: list[str] = []
        widget.installEventFilter(self)

    def eventFilter(self, watched, event) -> bool:
        if event.type() == QEvent.Type.Show:
            self.events.append("shown")
        elif event.type() == QEvent.Type.Hide:
            self.events.append("hidden")
        return False

    @property
    def shown(self) -> int:
        return self.events.count("shown")


def plain(text: str) -> bool:
    return not any(word in text for word in QT_WORDS)


# -- the error texts -------------------------------------------------------------------------------
@pytest.mark.parametrize("error", list(QLocalSocket.LocalSocketError) + list(QAbstractSocket.SocketError),
                         ids=lambda e: f"{type(e).__name__}.{e.name}")
def test_every_socket_error_is_a_plain_sentence_in_the_banner(qtbot, qsettings, error, tmp_path):
    table = REMOTE_SOCKET_ERRORS if isinstance(error, QAbstractSocket.SocketError) else LOCAL_SOCKET_ERRORS
    assert error in table                      # every error the client can be told about has its sentence
    text = socket_error_text(error)
    assert text and text[0].islower() and plain(text), text
    # The real client, told of the error by its socket, puts that sentence in the banner.
    client = IpcClient(tmp_path / "nowhere")
    if isinstance(error, QAbstractSocket.SocketError):   # as if pointed at another computer (no lookup)
        client.remote, client.location = ("mail.example.com", 9110), "mail.example.com:9110"
    window = MainWindow(client, settings=qsettings)
    qtbot.addWidget(window)
    window.show()
    client._on_error(error)
    assert client.last_error == text
    assert window.banner.isVisible()
    banner = window.banner.message.text()
    assert text in banner.replace("&#x27;", "'") and plain(banner), banner
    client.stop()


def test_a_real_failed_connection_says_why_in_words(qtbot, qsettings, tmp_path, monkeypatch):
    """No service at the data directory, and an empty socket name (Qt's "Invalid name")."""
    monkeypatch.setattr(ipc_client, "RETRY_MS", 100)
    client = IpcClient(tmp_path / "no-service")
    window = MainWindow(client, settings=qsettings)
    qtbot.addWidget(window)
    window.show()
    client.start()
    qtbot.waitUntil(lambda: window.banner.isVisible() and client.last_error != "")
    assert "no service answers there" in window.banner.message.text()
    assert plain(window.banner.message.text()) and window.banner.start_button.isVisible()
    client.location = ""     # what QLocalSocket calls "Invalid name"
    client.retry_now()
    qtbot.waitUntil(lambda: client.last_error != "" and plain(client.last_error))
    client.stop()


# -- switching servers: the fake ------------------------------------------------------------------
@pytest.fixture
def other(fake) -> FakeService:
    svc = FakeService(hostname="mail2.fabrikam.com")
    svc.seed({"fabrikam.net": ["ann"]})
    fake.remote_services["mail2.fabrikam.com:9110"] = (svc, TOKEN, FP)
    return svc


def test_switching_to_another_computer_and_back_never_shows_the_banner(qtbot, window, fake, other):
    recorder = ShowRecorder(window.banner)
    window.server_switch.vault = TokenVault(backend=MemoryKeyring())
    window.server_switch.connect_remote(RemoteServer("mail2.fabrikam.com"), TOKEN, save=True)
    assert window.connection_label.text().startswith("Connecting to mail2.fabrikam.com:9110")
    answer_certificate(qtbot, window, QMessageBox.StandardButton.Yes)
    qtbot.waitUntil(lambda: fake.is_connected and window.tree_model.domain_node("fabrikam.net") is not None)
    local = window.tree_model.remote_nodes()[0]
    window.tree.setCurrentIndex(window.tree_model.index_of(local))
    qtbot.waitUntil(lambda: fake.is_connected and window.tree_model.domain_node("contoso.com") is not None)
    assert recorder.shown == 0, recorder.events


def test_switching_away_from_a_service_that_is_down_hides_its_banner_at_once(qtbot, window, fake, other):
    fake.go_offline()
    qtbot.waitUntil(window.banner.isVisible)
    recorder = ShowRecorder(window.banner)
    window.server_switch.vault = TokenVault(backend=MemoryKeyring())
    window.server_switch.connect_remote(RemoteServer("mail2.fabrikam.com"), TOKEN, save=False)
    assert not window.banner.isVisible()
    answer_certificate(qtbot, window, QMessageBox.StandardButton.Yes)
    qtbot.waitUntil(lambda: fake.is_connected and fake.is_remote)
    assert recorder.shown == 0, recorder.events


def test_a_server_that_does_not_answer_gets_its_own_banner_without_start(qtbot, window, fake):
    recorder = ShowRecorder(window.banner)
    window.server_switch.vault = TokenVault(backend=None)
    window.server_switch.connect_remote(RemoteServer("nowhere.example.com"), TOKEN, save=False)
    qtbot.waitUntil(window.banner.isVisible)
    assert recorder.shown == 1
    text = window.banner.message.text()
    assert "nowhere.example.com:9110" in text and "nothing accepts connections" in text and plain(text)
    assert not window.banner.start_button.isVisible()     # a service on another computer is not ours to start
    # Nothing of the server left behind is shown as if it were this one.
    assert window.tree_model.server.children == [] and window.domain_model.rowCount() == 0
    assert window.tree_model.server.label == "nowhere.example.com"
    assert window.windowTitle() == "POP3 Service" and "contoso" not in window.domain_pane.title.text()


def test_a_refused_certificate_ends_the_attempt_with_a_banner_that_says_so(qtbot, window, fake, other):
    recorder = ShowRecorder(window.banner)
    window.server_switch.vault = TokenVault(backend=None)
    window.server_switch.connect_remote(RemoteServer("mail2.fabrikam.com"), TOKEN, save=False)
    answer_certificate(qtbot, window, QMessageBox.StandardButton.No)
    qtbot.waitUntil(window.banner.isVisible)
    assert recorder.shown == 1 and "certificate is not trusted" in window.banner.message.text()


# -- switching servers: real services ------------------------------------------------------------
def test_switching_between_real_services_never_shows_the_banner(qtbot, service, qsettings, errors, monkeypatch):
    """The console on a real service's Unix socket; then the same service over its remote
    administration listener (TLS, trust on first use); then back. The banner is never shown."""
    monkeypatch.setattr(ipc_client, "RETRY_MS", 100)
    port = free_port()
    service.call("settings.set", name="admin_tcp_bind", value="127.0.0.1")
    service.call("settings.set", name="admin_tcp_port", value=port)
    wait_for(lambda: service.call("server.info")["admin_tcp"]["state"] == "running", 10, what="the TCP listener")
    token = service.call("admin.token_create", name="console")["token"]
    client = IpcClient(service.data_dir)
    window = open_window(qtbot, client, qsettings)
    recorder = ShowRecorder(window.banner)
    try:
        window.server_switch.vault = TokenVault(backend=MemoryKeyring())
        window.server_switch.connect_remote(RemoteServer("127.0.0.1", port), token, save=True)
        answer_certificate(qtbot, window, QMessageBox.StandardButton.Yes)
        qtbot.waitUntil(lambda: client.is_connected and client.is_remote)
        assert window.connection_label.text() == f"Connected: 127.0.0.1:{port}"
        local = window.tree_model.remote_nodes()[0]
        window.tree.setCurrentIndex(window.tree_model.index_of(local))
        qtbot.waitUntil(lambda: client.is_connected and not client.is_remote)
        # Once more, to the remembered one: the token from the keyring and the pinned certificate.
        remote = window.tree_model.remote_nodes()[0]
        window.tree.setCurrentIndex(window.tree_model.index_of(remote))
        qtbot.waitUntil(lambda: client.is_connected and client.is_remote)
        assert recorder.shown == 0, recorder.events
        assert errors == []
    finally:
        client.stop()
