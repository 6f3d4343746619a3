"""What the POP3 and SMTP work added, in the console: the Queue, Bans and Remote Admin tabs, the open-relay test,
and Server Properties built from the service's own setting descriptions (settings.describe)."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from gui.dialogs.queued_message import QueuedMessageDialog
from gui.dialogs.relay_test import RelayTestDialog
from tests.gui.conftest import open_server_properties


def select_rows(view, *rows: int) -> None:
    view.table.clearSelection()
    for r in rows:
        view.table.selectRow(r)


def test_queue_tab_lists_retries_shows_and_deletes(qtbot, window, fake):
    window.server_tabs.setCurrentWidget(window.queue_view)
    view = window.queue_view
    qtbot.waitUntil(lambda: view.table.rowCount() == 2)
    assert view.table.item(0, 2).text() == "orders@partner.example"
    assert view.table.item(1, 1).text() == "<> (report)"
    assert not view.retry_button.isEnabled() and view.retry_all_button.isEnabled()
    select_rows(view, 0)
    assert view.retry_button.isEnabled() and view.delete_button.isEnabled()
    qtbot.mouseClick(view.retry_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: view.status.text().startswith("1 message retried."))
    assert ("queue.retry", {"id": 17}) in fake.requests
    qtbot.mouseClick(view.view_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: isinstance(view.dialog, QueuedMessageDialog))
    assert "Subject: Order 4471" in view.dialog.text.toPlainText()
    view.dialog.close()
    qtbot.mouseClick(view.delete_button, Qt.MouseButton.LeftButton)
    assert isinstance(view.dialog, QMessageBox)
    view.dialog.done(QMessageBox.StandardButton.Yes)
    qtbot.waitUntil(lambda: view.table.rowCount() == 1)
    assert [q["id"] for q in fake.service.queue] == [18]


def test_bans_tab_lifts_a_ban(qtbot, window, fake):
    window.server_tabs.setCurrentWidget(window.bans_view)
    view = window.bans_view
    qtbot.waitUntil(lambda: view.table.rowCount() == 2)
    assert view.table.item(0, 0).text() == "203.0.113.77" and view.table.item(0, 1).text() == "Address"
    select_rows(view, 0)
    qtbot.mouseClick(view.lift_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: view.table.rowCount() == 1)
    assert view.status.text().startswith("Lifted the ban on 203.0.113.77.")
    assert view.table.item(0, 0).text() == "admin@contoso.com"


def test_remote_admin_tab_makes_shows_once_copies_and_revokes_tokens(qtbot, window, fake):
    from PySide6.QtGui import QGuiApplication

    from gui.dialogs.new_token import NewTokenDialog

    window.server_tabs.setCurrentWidget(window.tokens_view)
    view = window.tokens_view
    qtbot.waitUntil(lambda: view.status.text().startswith("No token"))
    assert view.new_button.isEnabled() and not view.revoke_button.isEnabled()
    qtbot.mouseClick(view.new_button, Qt.MouseButton.LeftButton)
    dialog = view.dialog
    assert isinstance(dialog, NewTokenDialog) and not dialog.ok_button.isEnabled()
    qtbot.keyClicks(dialog.name_edit, "laptop/alice")             # a slash is not allowed
    assert not dialog.ok_button.isEnabled() and "letters, digits" in dialog.reason.text()
    dialog.name_edit.setText("laptop of alice")
    assert dialog.ok_button.isEnabled()
    qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.token.startswith("p3t_"))
    assert dialog.token_edit.text() == dialog.token and dialog.token_edit.isReadOnly()
    assert not dialog.cancel_button.isVisible()
    qtbot.mouseClick(dialog.copy_button, Qt.MouseButton.LeftButton)
    assert QGuiApplication.clipboard().text() == dialog.token
    qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    assert not dialog.isVisible()
    qtbot.waitUntil(lambda: view.table.rowCount() == 1)
    assert view.table.item(0, 0).text() == "laptop of alice" and view.table.item(0, 3).text() == "never"
    assert dialog.token not in str(view.items)                      # the list never holds the token itself
    select_rows(view, 0)
    qtbot.mouseClick(view.revoke_button, Qt.MouseButton.LeftButton)
    assert isinstance(view.dialog, QMessageBox) and "laptop of alice" in view.dialog.text()
    view.dialog.done(QMessageBox.StandardButton.Yes)
    qtbot.waitUntil(lambda: view.table.rowCount() == 0)
    assert view.status.text().startswith("Revoked the token 'laptop of alice'.")
    assert ("admin.token_revoke", {"name": "laptop of alice"}) in fake.requests


def test_relay_test_shows_every_trick_and_the_verdict(qtbot, window, fake):
    window.do_relay_test()
    dialog = window.dialog
    assert isinstance(dialog, RelayTestDialog)
    qtbot.waitUntil(lambda: dialog.table.rowCount() == 5)
    assert "Not an open relay" in dialog.verdict.text()
    fake.service.relay_results[1].update(relayed=True, verdict="RELAYED", reply="250 ok")
    dialog.close()
    window.do_relay_test()
    qtbot.waitUntil(lambda: window.dialog.table.rowCount() == 5)
    assert "open relay:" in window.dialog.verdict.text()
    assert window.dialog.table.item(1, 1).text() == "RELAYED"


def test_relay_test_is_in_the_servers_all_tasks_menu(qtbot, window):
    window.tree.setCurrentIndex(window.tree_model.index_of(window.tree_model.server))
    menu = window.context_menu()
    tasks = next(a.menu() for a in menu.actions() if a.menu() is not None and "Tas" in a.text())
    assert window.relay_action in tasks.actions()


def tab_titles(dialog) -> list[str]:
    return [dialog.tabs.tabText(i) for i in range(dialog.tabs.count())]


def test_server_properties_edit_the_settings_the_service_describes(qtbot, window, fake):
    dialog = open_server_properties(qtbot, window)
    assert ("settings.describe", {}) in fake.requests
    assert "Other" not in tab_titles(dialog)
    placed = {"relay_networks": "SMTP", "smarthost": "Delivery", "queue_lifetime": "Delivery",
              "throttle_failures": "Security", "ban_duration": "Security", "admin_tcp_port": "Security",
              "send_rate_limit": "Limits"}
    for name, title in placed.items():
        page = dialog.tabs.widget(tab_titles(dialog).index(title))
        assert page.isAncestorOf(dialog.fields[name]), name
        assert dialog.fields[name].editor.isEnabled(), name
    dialog.fields["relay_networks"].editor.setText("192.168.1.0/24")
    dialog.fields["throttle_failures"].editor.setText("5")
    dialog.fields["throttle_failures"].editor.setText("five")
    assert "not a whole number" in dialog.fields["throttle_failures"].reason.text()
    assert not dialog.ok_button.isEnabled()
    dialog.fields["throttle_failures"].editor.setText("5")
    qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: fake.service.settings["throttle_failures"] == 5)
    assert fake.service.settings["relay_networks"] == "192.168.1.0/24"
    assert fake.service.settings["throttle_failures"] == 5


def test_a_secret_setting_shows_set_and_is_sent_only_when_typed(qtbot, window, fake):
    fake.service.settings["smarthost_password"] = "sealed:abcdef"
    dialog = open_server_properties(qtbot, window)
    secret = dialog.fields["smarthost_password"].editor
    assert secret.echoMode() == secret.EchoMode.Password
    assert secret.text() == "" and secret.placeholderText().startswith("(set")
    assert "smarthost_password" not in dialog.changes()
    secret.setText("hunter2")
    assert dialog.changes()["smarthost_password"] == "hunter2"
    qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: fake.service.settings["smarthost_password"] != "sealed:abcdef")
    assert fake.service.settings["smarthost_password"].startswith("sealed:")


def test_properties_fall_back_to_the_consoles_settings_with_an_older_service(qtbot, window, fake, monkeypatch):
    from core.errors import Invalid

    def unknown(p, ev):
        raise Invalid("Unknown operation 'settings.describe'.")
    monkeypatch.setattr(fake.service, "op_settings_describe", unknown)
    dialog = open_server_properties(qtbot, window)
    assert tab_titles(dialog)[:6] == ["General", "POP3", "SMTP", "Delivery", "Security", "Limits"]
    assert "smtp_port" in dialog.fields
