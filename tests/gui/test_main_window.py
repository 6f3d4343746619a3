"""The console window driven as an administrator would: tree, lists, menus, shortcuts, live updates."""
from __future__ import annotations

from PySide6.QtCore import QItemSelectionModel, Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QMenu

from core import passwords
from gui.dialogs.confirm_delete import ConfirmDeleteDialog
from gui.dialogs.item_properties import DomainPropertiesDialog, MailboxPropertiesDialog
from gui.dialogs.mailbox_created import MailboxCreatedDialog
from gui.dialogs.new_domain import NewDomainDialog
from gui.dialogs.new_mailbox import NewMailboxDialog
from gui.dialogs.server_properties import ServerPropertiesDialog
from gui.views.list_pane import EMPTY_TEXT
from tests.fake_service import FakeServiceClient
from tests.gui.conftest import open_window


def tree_labels(window) -> list[str]:
    model = window.tree_model
    return [model.data(model.index_of(n)) for n in model.server.children]


def list_names(pane) -> list[str]:
    return [pane.model.data(pane.model.index(r, 0)) for r in range(pane.model.rowCount())]


def open_domain(qtbot, window, name: str) -> None:
    assert window.select_domain(name)
    qtbot.waitUntil(lambda: window.mailbox_model.domain == name and window.mailbox_model.fully_loaded)


def select_rows(pane, names: list[str]) -> None:
    view = pane.view
    view.setFocus()
    view.clearSelection()
    for name in names:
        row = list_names(pane).index(name)
        view.selectionModel().select(pane.model.index(row, 0), QItemSelectionModel.SelectionFlag.Select
                                     | QItemSelectionModel.SelectionFlag.Rows)


def menu_texts(menu: QMenu) -> list[str]:
    out = []
    for a in menu.actions():
        if a.menu():
            out += [f"{a.text()}>{t}" for t in menu_texts(a.menu())]
        elif not a.isSeparator():
            out.append(a.text().replace("&", ""))
    return out


def trigger(menu: QMenu, text: str) -> None:
    for a in menu.actions():
        if a.menu():
            try:
                return trigger(a.menu(), text)
            except LookupError:
                continue
        if a.text().replace("&", "") == text:
            assert a.isEnabled(), f"{text} is disabled: {a.toolTip()}"
            a.trigger()
            return
    raise LookupError(text)


def test_tree_and_domain_list_look_like_the_snap_in(window):
    model = window.tree_model
    assert model.data(model.index_of(model.root)) == "POP3 Service"
    assert model.data(model.index_of(model.server)) == "mail.contoso.com"
    assert tree_labels(window) == ["contoso.com", "fabrikam.com", "lab.contoso.com", "northwind.local (locked)"]
    pane = window.domain_pane
    assert window.stack.currentWidget() is window.server_tabs
    headers = [pane.model.headerData(c, Qt.Orientation.Horizontal) for c in range(pane.model.columnCount())]
    assert headers == ["Domain Name", "Mailboxes", "Domain Size (KB)", "Messages", "State"]
    assert list_names(pane) == ["contoso.com", "fabrikam.com", "lab.contoso.com", "northwind.local"]
    assert pane.model.data(pane.model.index(3, 4)) == "Locked"
    assert window.count_label.text() == "4 domains"
    assert window.menuBar().actions()[0].text() == "&File"
    assert [a.text().replace("&", "") for a in window.menuBar().actions()] == ["File", "Action", "View", "Help"]


def test_selecting_a_domain_lists_its_mailboxes(qtbot, window):
    open_domain(qtbot, window, "contoso.com")
    pane = window.mailbox_pane
    assert window.stack.currentWidget() is pane
    headers = [pane.model.headerData(c, Qt.Orientation.Horizontal) for c in range(pane.model.columnCount())]
    assert headers == ["Mailbox Name", "Mailbox Size (KB)", "Messages", "State", "Quota (KB)"]
    assert list_names(pane)[:3] == ["administrator", "alice", "bob"]
    helpdesk = list_names(pane).index("helpdesk")
    assert pane.model.data(pane.model.index(helpdesk, 4)) == "51,200"
    assert pane.model.data(pane.model.index(list_names(pane).index("sales"), 3)) == "Locked"
    assert window.count_label.text() == "7 mailboxes"


def test_filter_as_you_type(qtbot, window):
    open_domain(qtbot, window, "contoso.com")
    pane = window.mailbox_pane
    qtbot.keyClicks(pane.filter, "b")
    qtbot.waitUntil(lambda: list_names(pane) == ["bob", "webmaster"])
    assert "matching" in window.count_label.text()
    pane.filter.clear()
    qtbot.waitUntil(lambda: len(list_names(pane)) == 7)


def test_column_sorts_by_clicking_the_header(qtbot, window):
    pane = window.domain_pane
    pane.view.sortByColumn(1, Qt.SortOrder.DescendingOrder)   # Mailboxes
    qtbot.waitUntil(lambda: list_names(pane)[0] == "contoso.com" and list_names(pane)[-1] == "lab.contoso.com")


def test_new_domain_from_the_action_menu(qtbot, window, fake):
    window.tree.setFocus()
    trigger(window.context_menu(), "New Domain…")
    dialog = window.dialog
    assert isinstance(dialog, NewDomainDialog)
    assert not dialog.ok_button.isEnabled()
    qtbot.keyClicks(dialog.name_edit, "bad_name")
    assert not dialog.ok_button.isEnabled() and dialog.reason.isVisible()
    assert "fully qualified" in dialog.reason.text()
    dialog.name_edit.clear()
    qtbot.keyClicks(dialog.name_edit, "Wingtip.com")
    assert dialog.ok_button.isEnabled() and not dialog.reason.isVisible()
    with qtbot.waitSignal(dialog.accepted):
        qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "wingtip.com" in tree_labels(window))
    qtbot.waitUntil(lambda: window.current_node().key == "wingtip.com")
    assert "wingtip.com" in fake.service.domains
    assert [op for op, _p in fake.requests].count("domain.list") == 2   # tree + list, never re-read


def test_duplicate_domain_is_refused_with_the_services_reason(qtbot, window, errors):
    window.do_new_domain()
    dialog = window.dialog
    qtbot.keyClicks(dialog.name_edit, "contoso.com")
    qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: bool(errors))
    assert "already exists" in errors[0]
    assert dialog.isVisible() and dialog.ok_button.isEnabled()   # the user can correct it


def test_new_mailbox_then_the_mail_client_confirmation(qtbot, window, fake):
    open_domain(qtbot, window, "contoso.com")
    window.tree.setFocus()
    trigger(window.context_menu(), "New Mailbox…")
    dialog = window.dialog
    assert isinstance(dialog, NewMailboxDialog)
    assert dialog.create_user.isChecked()          # the demo server's "always create" setting
    qtbot.keyClicks(dialog.name_edit, "carol")
    assert not dialog.ok_button.isEnabled()
    qtbot.keyClicks(dialog.password, "Tr1cky-pass")
    qtbot.keyClicks(dialog.confirm, "Tr1cky-pasz")
    assert dialog.confirm_reason.text() == passwords.CONFIRM_DIFFERS
    assert not dialog.ok_button.isEnabled()
    dialog.confirm.clear()
    qtbot.keyClicks(dialog.confirm, "Tr1cky-pass")
    assert dialog.ok_button.isEnabled()
    qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: isinstance(window.dialog, MailboxCreatedDialog))
    confirm = window.dialog
    text = confirm.text()
    assert "Account name (plaintext authentication): carol@contoso.com" in text
    assert "Account name (Secure Password Authentication): carol@contoso.com" in text
    assert "Incoming mail server (POP3): mail.contoso.com\nPOP3 port: 110 with STARTTLS, or 995 with SSL/TLS" in text
    assert "SMTP port: 587 with STARTTLS, or 465 with SSL/TLS" in text
    assert "requires secure password authentication" in text
    qtbot.mouseClick(confirm.copy_button, Qt.MouseButton.LeftButton)
    assert QGuiApplication.clipboard().text() == text
    confirm.dont_show.setChecked(True)
    confirm.accept()
    assert "carol" in list_names(window.mailbox_pane)
    assert fake.ops_sent("mailbox.add")[-1] == {"address": "carol@contoso.com", "create_user": True,
                                                "password": "Tr1cky-pass"}
    # "Don't show again" holds for the next mailbox.
    window.do_new_mailbox()
    second = window.dialog
    qtbot.keyClicks(second.name_edit, "dave")
    qtbot.keyClicks(second.password, "Dave-pass-1")
    qtbot.keyClicks(second.confirm, "Dave-pass-1")
    qtbot.mouseClick(second.ok_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "dave" in list_names(window.mailbox_pane))
    assert window.dialog is second


def test_delete_key_deletes_the_selected_mailboxes_after_confirmation(qtbot, window, fake):
    open_domain(qtbot, window, "contoso.com")
    pane = window.mailbox_pane
    select_rows(pane, ["bob", "info"])
    qtbot.keyClick(pane.view, Qt.Key.Key_Delete)
    dialog = window.dialog
    assert isinstance(dialog, ConfirmDeleteDialog)
    assert "these 2 mailboxes" in dialog.findChildren(type(window.count_label))[1].text()
    assert not dialog.delete_user.isVisible()   # password-file users go with their mailbox
    qtbot.mouseClick(dialog.yes_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "bob" not in list_names(pane) and "info" not in list_names(pane))
    qtbot.waitUntil(lambda: window.domain_model.item("contoso.com")["mailbox_count"] == 5)


def test_delete_offers_the_associated_user_with_system_accounts(qtbot, window, fake):
    fake.service.settings["auth"] = "local"
    window.controller.server_settings["auth"] = "local"
    open_domain(qtbot, window, "fabrikam.com")
    select_rows(window.mailbox_pane, ["jane"])
    window.do_delete()
    dialog = window.dialog
    assert dialog.delete_user.isVisibleTo(dialog)
    dialog.delete_user.setChecked(True)
    qtbot.mouseClick(dialog.yes_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "jane" not in list_names(window.mailbox_pane))
    assert fake.ops_sent("mailbox.delete")[-1] == {"address": "jane@fabrikam.com", "delete_user": True}


def test_lock_and_unlock_many_domains_at_once(qtbot, window, fake):
    pane = window.domain_pane
    select_rows(pane, ["contoso.com", "fabrikam.com", "northwind.local"])
    qtbot.waitUntil(lambda: window.named_actions["lock"].isEnabled() and window.named_actions["unlock"].isEnabled())
    window.named_actions["lock"].trigger()
    qtbot.waitUntil(lambda: all(pane.model.item(n)["locked"] for n in ("contoso.com", "fabrikam.com")))
    assert len(fake.ops_sent("domain.lock")) == 2            # the locked one is left alone
    assert "contoso.com (locked)" in tree_labels(window)
    select_rows(pane, ["contoso.com", "fabrikam.com", "northwind.local"])
    qtbot.waitUntil(lambda: window.named_actions["unlock"].isEnabled())
    window.named_actions["unlock"].trigger()
    qtbot.waitUntil(lambda: not any(pane.model.item(n)["locked"]
                                    for n in ("contoso.com", "fabrikam.com", "northwind.local")))


def test_unlock_is_disabled_inside_a_locked_domain_with_the_reason(qtbot, window, fake):
    fake.service.domains["northwind.local"].mailboxes["nancy"].locked = True
    open_domain(qtbot, window, "northwind.local")
    assert window.mailbox_pane.note.isVisibleTo(window)
    select_rows(window.mailbox_pane, ["nancy"])
    unlock = window.named_actions["unlock"]
    qtbot.waitUntil(lambda: window.named_actions["delete"].isEnabled())
    assert not unlock.isEnabled()
    assert "domain northwind.local is locked" in unlock.toolTip()


def test_context_menus_follow_the_node_kind(qtbot, window):
    window.tree.customContextMenuRequested.emit(window.tree.visualRect(
        window.tree_model.index_of(window.tree_model.server)).center())
    server_menu = menu_texts(window.last_menu)
    window.last_menu.close()
    assert "All Tasks>Start" in [t.replace("&", "") for t in server_menu]
    assert "Delete" not in server_menu and "Properties" in server_menu
    open_domain(qtbot, window, "contoso.com")
    view = window.mailbox_pane.view
    row = list_names(window.mailbox_pane).index("alice")
    view.customContextMenuRequested.emit(view.visualRect(window.mailbox_model.index(row, 0)).center())
    mailbox_menu = menu_texts(window.last_menu)
    window.last_menu.close()
    for wanted in ("Lock", "Unlock", "Change Password…", "Delete", "Properties", "Help Topics"):
        assert wanted in mailbox_menu
    assert window.targets()[0].key == "alice@contoso.com"


def test_alt_enter_opens_properties_of_the_selection(qtbot, window):
    window.activateWindow()
    open_domain(qtbot, window, "contoso.com")
    select_rows(window.mailbox_pane, ["helpdesk"])
    qtbot.keyClick(window.mailbox_pane.view, Qt.Key.Key_Return, Qt.KeyboardModifier.AltModifier)
    qtbot.waitUntil(lambda: isinstance(window.dialog, MailboxPropertiesDialog))
    assert window.dialog.quota.text() == "50 MB"
    window.dialog.reject()
    window.tree.setFocus()
    window.do_properties()
    assert isinstance(window.dialog, DomainPropertiesDialog)


def test_properties_of_the_server_open_the_property_sheet(qtbot, window):
    window.tree.setCurrentIndex(window.tree_model.index_of(window.tree_model.server))
    window.tree.setFocus()
    window.named_actions["properties"].trigger()
    qtbot.waitUntil(lambda: isinstance(window.dialog, ServerPropertiesDialog))


def test_f5_refreshes_and_f1_opens_the_help_for_the_screen(qtbot, window, fake):
    window.tree.setFocus()
    before = len(fake.ops_sent("domain.list"))
    qtbot.keyClick(window.tree, Qt.Key.Key_F5)
    qtbot.waitUntil(lambda: len(fake.ops_sent("domain.list")) == before + 2)
    qtbot.keyClick(window.tree, Qt.Key.Key_F1)
    qtbot.waitUntil(lambda: window.help_window is not None and window.help_window.isVisible())
    assert window.help_window.topic == "server"
    assert "Domain Name" in window.help_window.browser.toPlainText()


def test_changes_made_elsewhere_appear_without_refresh(qtbot, window, fake):
    open_domain(qtbot, window, "contoso.com")
    reads = len(fake.requests)
    fake.external("domain.add", {"name": "adatum.com"})
    fake.external("mailbox.add", {"address": "zoe@contoso.com", "password": "Zoe-pass-1"})
    fake.external("mailbox.lock", {"address": "alice@contoso.com"})
    fake.external_delivery("bob@contoso.com", 4096)
    qtbot.waitUntil(lambda: "adatum.com" in tree_labels(window) and "zoe" in list_names(window.mailbox_pane),
                    timeout=1000)
    model = window.mailbox_model
    assert model.item("alice@contoso.com")["locked"] is True
    assert model.item("bob@contoso.com")["message_count"] == 15
    assert len(fake.requests) == reads          # nothing was re-read


def test_losing_the_service_shows_a_banner_and_reconnects(qtbot, window, fake):
    fake.go_offline()
    qtbot.waitUntil(lambda: window.banner.isVisible())
    assert "not reachable" in window.banner.message.text()
    assert not window.named_actions["new_domain"].isEnabled()
    assert window.tree_model.data(window.tree_model.index_of(window.tree_model.server)) == "mail.contoso.com"
    fake.external("domain.add", {"name": "while-away.com"})   # missed: no events while away
    fake.go_online()
    qtbot.waitUntil(lambda: not window.banner.isVisible() and "while-away.com" in tree_labels(window))
    assert window.named_actions["new_domain"].isEnabled()


def test_service_control_and_the_server_badge(qtbot, window, fake):
    server = window.tree_model.index_of(window.tree_model.server)
    window.tree.setCurrentIndex(server)
    window.tree.setFocus()
    window.named_actions["pause"].trigger()
    qtbot.waitUntil(lambda: window.tree_model.data(server) == "mail.contoso.com (Paused)")
    assert window.named_actions["resume"].isEnabled() and not window.named_actions["pause"].isEnabled()
    window.named_actions["stop"].trigger()
    qtbot.waitUntil(lambda: window.controller.service_state == "stopped")
    assert window.named_actions["start"].isEnabled()
    window.named_actions["start"].trigger()
    qtbot.waitUntil(lambda: window.controller.service_state == "running")
    window.named_actions["restart"].trigger()
    qtbot.waitUntil(lambda: [p["action"] for p in fake.ops_sent("service.control")][-2:] == ["stop", "start"])
    qtbot.waitUntil(lambda: window.controller.service_state == "running")


def test_status_view_shows_listeners_counters_and_events(qtbot, window, fake):
    window.server_tabs.setCurrentWidget(window.status_view)
    view = window.status_view
    qtbot.waitUntil(lambda: view.listeners.rowCount() == 5 and view.events.rowCount() == 5)
    assert view.state_label.text() == "The POP3 Service is running."
    assert view.counter_text("smtp_accepted") == "1,284"
    # The newest lines of the service log (log.recent), not the audit log.
    assert view.events.item(0, 1).text() == "INFO" and "bob@contoso.com logged on" in view.events.item(0, 3).text()
    assert view.events.item(2, 1).text() == "WARNING"
    assert view.events_box.title() == "Service log (logging level: Medium)"
    assert ("log.recent", {"limit": 200}) in fake.requests and not fake.ops_sent("audit.list")
    fake.service.counters["smtp_accepted"] += 1
    qtbot.waitUntil(lambda: view.counter_text("smtp_accepted") == "1,285", timeout=3000)


def test_layout_and_last_node_come_back_on_the_next_start(qtbot, window, fake, qsettings):
    open_domain(qtbot, window, "fabrikam.com")
    window.mailbox_pane.view.header().resizeSection(0, 333)
    window.splitter.setSizes([300, 600])
    window.close()
    again = open_window(qtbot, FakeServiceClient(fake.service), qsettings)
    qtbot.waitUntil(lambda: again.current_node().key == "fabrikam.com")
    assert again.mailbox_pane.view.header().sectionSize(0) == 333
    assert again.splitter.sizes()[0] == 300


def test_empty_domain_says_there_is_nothing_to_show(qtbot, window, fake):
    fake.external("domain.add", {"name": "empty.example"})
    qtbot.waitUntil(lambda: window.select_domain("empty.example"))
    qtbot.waitUntil(lambda: window.mailbox_model.fully_loaded)
    assert window.mailbox_pane.empty.isVisibleTo(window) and window.mailbox_pane.empty.text() == EMPTY_TEXT


def test_domain_deleted_elsewhere_while_shown_goes_back_to_the_server(qtbot, window, fake):
    open_domain(qtbot, window, "lab.contoso.com")
    fake.external("domain.delete", {"name": "lab.contoso.com"})
    qtbot.waitUntil(lambda: window.current_node().kind.value == "server")
    assert "lab.contoso.com" not in list_names(window.domain_pane)


def test_refresh_keeps_the_selected_domain(qtbot, window, fake):
    open_domain(qtbot, window, "fabrikam.com")
    before = len(fake.ops_sent("mailbox.list"))
    window.do_refresh()
    qtbot.waitUntil(lambda: len(fake.ops_sent("mailbox.list")) == before + 1 and window.mailbox_model.fully_loaded)
    qtbot.waitUntil(lambda: window.current_node().key == "fabrikam.com")
    assert list_names(window.mailbox_pane) == ["jane", "john", "orders"]
