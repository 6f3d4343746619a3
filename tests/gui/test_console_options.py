"""Issue 15: the root node's Connect to Another Computer, removing a remembered server, View > Options
(messages turned off can be shown again; one registry of them), and Mail Client Settings for every
mailbox."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QCheckBox, QMenu

from gui.dialogs.connect_computer import ConnectComputerDialog
from gui.dialogs.mailbox_created import MailboxCreatedDialog
from gui.dialogs.options import DONT_SHOW_TEXT, MAILBOX_CREATED, REMINDERS, OptionsDialog, is_hidden
from gui.models.nodes import NodeKind
from gui.remote_servers import RemoteServer, TokenVault, pin_fingerprint, pinned_fingerprint, remember, remembered
from gui.views.main_window import MainWindow
from gui.views.server_switch import LOCAL_KEY
from tests.gui.conftest import open_window
from tests.gui.test_connect_remote import MemoryKeyring
from tests.gui.test_main_window import list_names, menu_texts, open_domain, select_rows, trigger
from tests.gui.test_mnemonics import mnemonic

GUI = Path(__file__).resolve().parents[2] / "gui"


def menu_for(window: MainWindow, kind: NodeKind) -> QMenu:
    tree = window.tree_model
    node = {NodeKind.ROOT: tree.root, NodeKind.SERVER: tree.server}.get(kind)
    if node is None:
        node = tree.server.children[0]
    window.tree.setCurrentIndex(tree.index_of(node))
    window._set_active_pane("tree")
    return window.context_menu()


# -- Connect to Another Computer on the root node ---------------------------------------------------
def test_the_root_node_offers_connect_to_another_computer(qtbot, window):
    menu = menu_for(window, NodeKind.ROOT)
    assert menu_texts(menu)[0] == "Connect to Another Computer…"
    trigger(menu, "Connect to Another Computer…")
    assert isinstance(window.dialog, ConnectComputerDialog)
    assert "Connect to Another Computer…" not in menu_texts(menu_for(window, NodeKind.SERVER))


def menus_of(qtbot, window: MainWindow) -> dict[str, QMenu]:
    """Every menu of the console: the menu bar's and the context menus of each kind of item."""
    menus = {a.text(): a.menu() for a in window.menuBar().actions() if a.menu()}
    for kind in (NodeKind.ROOT, NodeKind.SERVER, NodeKind.DOMAIN):
        menus[f"context {kind.value}"] = menu_for(window, kind)
    open_domain(qtbot, window, "contoso.com")
    select_rows(window.mailbox_pane, list_names(window.mailbox_pane)[:1])
    window._set_active_pane("list")
    menus["context mailbox"] = window.context_menu()
    remote = RemoteServer("mail2.example.com")
    remember(window.settings, remote)
    window.server_switch.refresh_tree()
    node = next(n for n in window.tree_model.remote_nodes() if n.key == remote.key)
    menus["context remote"] = window.remote_menu(node)
    return menus


def test_no_menu_has_two_items_with_one_alt_letter(qtbot, window):
    for name, menu in menus_of(qtbot, window).items():
        stack = [menu]
        while stack:
            m = stack.pop()
            letters: dict[str, str] = {}
            for action in m.actions():
                if action.isSeparator() or not action.isVisible():
                    continue
                if action.menu():
                    stack.append(action.menu())
                letter = mnemonic(action.text())
                assert letter, f"{name}: '{action.text()}' has no Alt+letter"
                assert letter not in letters, f"{name}: '{action.text()}' and '{letters[letter]}' share Alt+{letter}"
                letters[letter] = action.text()


# -- removing a remembered server ---------------------------------------------------------------
def test_a_remembered_server_is_removed_with_its_token_and_certificate_and_stays_removed(qtbot, window, qsettings,
                                                                                         tmp_path):
    keyring = MemoryKeyring()
    window.server_switch.vault = TokenVault(backend=keyring)
    kept, gone = RemoteServer("mail2.example.com"), RemoteServer("old.example.com", 9200)
    for server in (kept, gone):
        remember(qsettings, server)
        pin_fingerprint(qsettings, server, "AA:BB")
        window.server_switch.vault.save(server, "p3t_" + server.host)
    window.server_switch.refresh_tree()
    node = next(n for n in window.tree_model.remote_nodes() if n.key == gone.key)
    menu = window.remote_menu(node)
    assert menu_texts(menu) == ["Connect to old.example.com:9200", "Remove from Console", "Help Topics"]
    trigger(menu, "Remove from Console")
    assert [n.key for n in window.tree_model.remote_nodes()] == [kept.key]
    assert remembered(qsettings) == [kept] and pinned_fingerprint(qsettings, gone) == ""
    assert keyring.items == {("pop3-service-console", kept.key): "p3t_mail2.example.com"}
    assert window.current_node() is window.tree_model.server     # removing did not connect to it
    # The next console (same settings file) does not bring it back.
    again = QSettings(qsettings.fileName(), QSettings.Format.IniFormat)
    assert remembered(again) == [kept]


def test_this_computer_cannot_be_removed(qtbot, window, fake, qsettings):
    window.server_switch.vault = TokenVault(backend=None)
    window.server_switch.server = RemoteServer("mail2.example.com")     # as while managing another computer
    window.server_switch.refresh_tree()
    local = window.tree_model.remote_nodes()[0]
    assert local.key == LOCAL_KEY
    assert menu_texts(window.remote_menu(local)) == ["Connect to This computer", "Help Topics"]
    window.server_switch.remove(LOCAL_KEY)
    assert window.tree_model.remote_nodes()[0].key == LOCAL_KEY


# -- View > Options --------------------------------------------------------------------------------
def test_options_show_a_message_again_and_forget_computers_on_ok_only(qtbot, window, qsettings):
    window.server_switch.vault = TokenVault(backend=MemoryKeyring())
    remember(qsettings, RemoteServer("mail2.example.com"))
    window.server_switch.refresh_tree()
    qsettings.setValue(MAILBOX_CREATED.key, True)
    trigger(window.menuBar().actions()[2].menu(), "Options…")
    dialog = window.dialog
    assert isinstance(dialog, OptionsDialog)
    box = dialog.reminder_boxes[MAILBOX_CREATED]
    assert not box.isChecked()
    box.setChecked(True)
    dialog.computers.setCurrentRow(0)
    dialog.remove_button.click()
    assert dialog.computers.count() == 0 and remembered(qsettings)     # not yet: Cancel would keep it
    dialog.reject()
    assert is_hidden(qsettings, MAILBOX_CREATED) and remembered(qsettings)
    window.do_options()
    dialog = window.dialog
    dialog.reminder_boxes[MAILBOX_CREATED].setChecked(True)
    dialog.computers.setCurrentRow(0)
    dialog.remove_button.click()
    assert dialog.no_computers.isVisibleTo(dialog)
    dialog.accept()
    assert not is_hidden(qsettings, MAILBOX_CREATED) and remembered(qsettings) == []
    assert window.tree_model.remote_nodes() == []


def test_the_mailbox_created_sheet_comes_back_after_options(qtbot, window, fake, qsettings):
    window.show_mailbox_created({"address": "alice@contoso.com"})
    sheet = window.dialog
    assert isinstance(sheet, MailboxCreatedDialog) and sheet.dont_show is not None
    sheet.dont_show.setChecked(True)
    sheet.accept()
    window.dialog = None
    window.show_mailbox_created({"address": "bob@contoso.com"})
    assert window.dialog is None                                   # turned off
    window.do_options()
    window.dialog.reminder_boxes[MAILBOX_CREATED].setChecked(True)
    window.dialog.accept()
    window.show_mailbox_created({"address": "bob@contoso.com"})
    assert isinstance(window.dialog, MailboxCreatedDialog) and not window.dialog.dont_show.isChecked()


def test_every_dont_show_again_is_in_the_one_registry():
    """No module but gui/dialogs/options.py makes a "Don't show this message again" box or writes a
    key of one: a new message must be a Reminder, so View > Options lists it."""
    keys = {r.key for r in REMINDERS}
    assert len(keys) == len(REMINDERS)
    for path in GUI.rglob("*.py"):
        if path.name == "options.py" and path.parent.name == "dialogs":
            continue
        text = path.read_text(encoding="utf-8")
        assert "show this message again" not in text.lower(), path
        assert not re.search(r"""["']confirm/""", text), path
        for key in keys:
            assert key not in text, path


def test_options_list_every_reminder(qtbot, qsettings):
    dialog = OptionsDialog(None, qsettings, computers=[], remove_computer=lambda _k: None)
    qtbot.addWidget(dialog)
    assert set(dialog.reminder_boxes) == set(REMINDERS)
    assert all(isinstance(b, QCheckBox) and mnemonic(b.text()) for b in dialog.reminder_boxes.values())
    assert DONT_SHOW_TEXT.replace("&", "") == "Don't show this message again"


# -- Mail Client Settings ------------------------------------------------------------------------
def test_every_mailbox_has_mail_client_settings_in_its_menus(qtbot, window, fake):
    open_domain(qtbot, window, "contoso.com")
    names = list_names(window.mailbox_pane)
    select_rows(window.mailbox_pane, names[:1])
    window._set_active_pane("list")
    address = window.mailbox_pane.model.target(0).key
    assert "Mail Client Settings…" in menu_texts(window.context_menu())
    window.action_menu.aboutToShow.emit()
    assert "Mail Client Settings…" in menu_texts(window.action_menu)
    fake.requests.clear()
    trigger(window.context_menu(), "Mail Client Settings…")
    qtbot.waitUntil(lambda: isinstance(window.dialog, MailboxCreatedDialog))
    sheet = window.dialog
    assert [op for op, _ in fake.requests] == ["settings.get", "service.status"]   # read now, not remembered
    assert sheet.dont_show is None and address in sheet.windowTitle()
    text = sheet.text()
    assert f"E-mail address: {address}" in text and "POP3 port: 110 with STARTTLS, or 995 with SSL/TLS" in text
    # Not offered for two mailboxes at once, nor for a domain.
    select_rows(window.mailbox_pane, names[:2])
    assert not window.action_state()["client_settings"].enabled


def test_mail_client_settings_follow_the_real_services_listeners(qtbot, service, qsettings, errors):
    """Against a real service: the ports the sheet shows are the ones its listeners use now."""
    from gui.ipc_client import IpcClient
    service.call("domain.add", name="example.org")
    service.call("mailbox.add", address="ann@example.org", password="Secret-pass-1")
    client = IpcClient(service.data_dir)
    window = open_window(qtbot, client, qsettings)
    try:
        qtbot.waitUntil(lambda: window.tree_model.domain_node("example.org") is not None)
        open_domain(qtbot, window, "example.org")
        qtbot.waitUntil(lambda: window.mailbox_pane.model.rowCount() == 1)
        select_rows(window.mailbox_pane, ["ann"])
        window._set_active_pane("list")
        window.named_actions["client_settings"].trigger()
        qtbot.waitUntil(lambda: isinstance(window.dialog, MailboxCreatedDialog))
        text = window.dialog.text()
        assert "E-mail address: ann@example.org" in text
        assert f"POP3 port: {service.ports['pop3']} with STARTTLS, or {service.ports['pop3s']} with SSL/TLS" in text
        smtp = f"SMTP port: {service.ports['submission']} with STARTTLS, or {service.ports['smtps']} with SSL/TLS"
        assert smtp in text
        assert errors == []
    finally:
        client.stop()


@pytest.mark.parametrize("scale", [1.0, 1.5], ids=["100%", "150%"])
def test_the_options_dialog_fits(qtbot, qsettings, scale):
    dialog = OptionsDialog(None, qsettings, computers=[("a:9110", "a")], remove_computer=lambda _k: None)
    font = dialog.font()
    font.setPointSizeF(font.pointSizeF() * scale)
    dialog.setFont(font)
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.adjustSize()
    for box in dialog.reminder_boxes.values():
        assert box.width() >= box.sizeHint().width()
