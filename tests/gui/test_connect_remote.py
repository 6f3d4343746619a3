"""File > Connect to Another Computer and the remembered servers, against fake services: trust on
first use, tokens in a secure keyring only, a refused token asked again, back to this computer."""
from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from gui.dialogs.connect_computer import ConnectComputerDialog, remember
from gui.models.nodes import NodeKind
from gui.remote_servers import RemoteServer, TokenVault, pinned_fingerprint, remembered
from tests.fake_service import FakeService

FP = "AA:BB:" + "CC:" * 29 + "DD"
TOKEN = "p3t_remote-token"


class MemoryKeyring:
    """A stand-in for a secure system keyring (GNOME Keyring, KWallet)."""

    priority = 5

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, user: str) -> str | None:
        return self.items.get((service, user))

    def set_password(self, service: str, user: str, password: str) -> None:
        self.items[(service, user)] = password

    def delete_password(self, service: str, user: str) -> None:
        self.items.pop((service, user), None)


@pytest.fixture
def other(fake) -> FakeService:
    svc = FakeService(hostname="mail2.fabrikam.com")
    svc.seed({"fabrikam.net": ["ann", "ben"]})
    fake.remote_services["mail2.fabrikam.com:9110"] = (svc, TOKEN, FP)
    return svc


def fill_remote(dialog: ConnectComputerDialog, host: str, token: str) -> None:
    dialog.remote.setChecked(True)
    dialog.computer.setCurrentText(host)
    dialog.token.setText(token)


def answer_certificate(qtbot, window, button) -> QMessageBox:
    qtbot.waitUntil(lambda: isinstance(window.dialog, QMessageBox))
    box = window.dialog
    box.done(button)
    return box


def test_first_connection_shows_the_fingerprint_then_manages_the_other_computer(qtbot, window, fake, other,
                                                                               qsettings):
    keyring = MemoryKeyring()
    window.server_switch.vault = TokenVault(backend=keyring)
    window.do_connect()
    dialog = window.dialog
    assert dialog.ok_button.isEnabled()                     # the local computer is a complete choice
    dialog.remote.setChecked(True)
    assert not dialog.ok_button.isEnabled()                 # a computer and a token are needed
    fill_remote(dialog, "mail2.fabrikam.com", TOKEN)
    assert dialog.port.value() == 9110 and dialog.remember_token.isEnabled()
    qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    box = answer_certificate(qtbot, window, QMessageBox.StandardButton.Yes)
    assert FP in box.text() and "First connection" in box.text()
    qtbot.waitUntil(lambda: fake.is_connected and window.tree_model.domain_node("fabrikam.net") is not None)
    assert window.windowTitle().endswith("[mail2.fabrikam.com]")
    assert "mail2.fabrikam.com:9110" in window.connection_label.text()
    server = RemoteServer("mail2.fabrikam.com")
    assert pinned_fingerprint(qsettings, server) == FP
    assert keyring.items == {("pop3-service-console", "mail2.fabrikam.com:9110"): TOKEN}
    assert remembered(qsettings) == [server]
    # The tree offers the way back to this computer.
    assert [(n.kind, n.label) for n in window.tree_model.remote_nodes()] == [(NodeKind.REMOTE, "This computer")]
    # Changes go to the other computer.
    fake.request("domain.add", {"name": "remote-added.net"})
    qtbot.waitUntil(lambda: "remote-added.net" in other.domains)

    # Back to this computer by selecting it in the tree; the other one is then listed.
    local = window.tree_model.remote_nodes()[0]
    window.tree.setCurrentIndex(window.tree_model.index_of(local))
    qtbot.waitUntil(lambda: fake.is_connected and window.tree_model.domain_node("contoso.com") is not None)
    assert window.current_node() is window.tree_model.server
    nodes = window.tree_model.remote_nodes()
    assert [n.label for n in nodes] == ["mail2.fabrikam.com"]
    # ... and selecting the remembered one connects with the pinned certificate and the stored token.
    window.tree.setCurrentIndex(window.tree_model.index_of(nodes[0]))
    qtbot.waitUntil(lambda: fake.is_connected and window.tree_model.domain_node("fabrikam.net") is not None)
    assert not isinstance(window.dialog, QMessageBox) or not window.dialog.isVisible()


def test_without_a_secure_keyring_the_token_is_not_kept_and_is_asked_again(qtbot, window, fake, other, qsettings):
    window.server_switch.vault = TokenVault(backend=None)
    window.server_switch.vault.reason = "no secure keyring here"
    window.do_connect()
    dialog = window.dialog
    fill_remote(dialog, "mail2.fabrikam.com:9110", TOKEN)
    assert not dialog.remember_token.isEnabled()
    assert "will not be remembered" in dialog.keyring_note.text()
    qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    answer_certificate(qtbot, window, QMessageBox.StandardButton.Yes)
    qtbot.waitUntil(lambda: fake.is_connected and fake.is_remote)
    text = qsettings.fileName()
    qsettings.sync()
    with open(text, encoding="utf-8") as fh:
        assert TOKEN not in fh.read()                     # never in the settings file
    window.switch_data_dir(fake.data_dir)
    qtbot.waitUntil(lambda: fake.is_connected and not fake.is_remote)
    node = window.tree_model.remote_nodes()[0]
    window.tree.setCurrentIndex(window.tree_model.index_of(node))
    qtbot.waitUntil(lambda: isinstance(window.dialog, ConnectComputerDialog) and window.dialog.isVisible())
    asked = window.dialog
    assert asked.remote.isChecked() and asked.computer.currentText() == "mail2.fabrikam.com"
    assert "token" in asked.message.text() and not asked.ok_button.isEnabled()


def test_a_refused_token_asks_again_and_a_refused_certificate_stays_away(qtbot, window, fake, other):
    window.server_switch.vault = TokenVault(backend=None)
    window.do_connect()
    fill_remote(window.dialog, "mail2.fabrikam.com", TOKEN)
    window.dialog.accept()
    answer_certificate(qtbot, window, QMessageBox.StandardButton.No)
    qtbot.wait(50)
    assert not fake.is_connected
    assert "certificate not trusted" in window.statusBar().currentMessage()

    window.do_connect()
    fill_remote(window.dialog, "mail2.fabrikam.com", "p3t_wrong")
    window.dialog.accept()
    answer_certificate(qtbot, window, QMessageBox.StandardButton.Yes)
    qtbot.waitUntil(lambda: isinstance(window.dialog, ConnectComputerDialog) and window.dialog.isVisible())
    assert "refused the token" in window.dialog.message.text()
    fill_remote(window.dialog, "mail2.fabrikam.com", TOKEN)
    window.dialog.accept()
    qtbot.waitUntil(lambda: fake.is_connected and window.tree_model.domain_node("fabrikam.net") is not None)


def test_a_changed_certificate_is_a_warning(qtbot, window, fake, other, qsettings):
    from gui.remote_servers import pin_fingerprint
    pin_fingerprint(qsettings, RemoteServer("mail2.fabrikam.com"), "11:22")
    window.server_switch.vault = TokenVault(backend=None)
    window.do_connect()
    fill_remote(window.dialog, "mail2.fabrikam.com", TOKEN)
    window.dialog.accept()
    box = answer_certificate(qtbot, window, QMessageBox.StandardButton.No)
    assert "has changed" in box.text() and box.icon() == QMessageBox.Icon.Warning
    assert not fake.is_connected


def test_server_names_parse_and_the_list_stays_short(qsettings):
    assert RemoteServer.parse("Mail.Example.com") == RemoteServer("mail.example.com", 9110)
    assert RemoteServer.parse("[::1]:9200") == RemoteServer("::1", 9200)
    assert RemoteServer.parse("mail:99999") is None and RemoteServer.parse("a b") is None
    assert RemoteServer("::1", 9200).key == "[::1]:9200"
    from gui.remote_servers import remember as remember_server
    for i in range(12):
        remember_server(qsettings, RemoteServer(f"m{i}.example.com"))
    assert len(remembered(qsettings)) == 10 and remembered(qsettings)[0].host == "m11.example.com"
    assert remember(["a", "B", "c"], "b") == ["b", "a", "c"]


def test_this_machine_has_no_secure_keyring_and_says_so():
    vault = TokenVault()
    if vault.available:
        pytest.skip("this machine has a secure keyring")
    assert "keyring" in vault.reason and not vault.save(RemoteServer("x"), "t")
