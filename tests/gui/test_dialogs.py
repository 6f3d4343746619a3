"""Dialogs filled in as a user would: validation beside the field, OK / Cancel / Apply."""
from __future__ import annotations

from PySide6.QtCore import Qt

from gui.dialogs.change_password import ChangePasswordDialog
from gui.dialogs.item_properties import MailboxPropertiesDialog
from gui.dialogs.new_mailbox import NewMailboxDialog
from tests.fake_service import FakeService
from tests.gui.conftest import open_server_properties


def test_server_properties_general_tab_has_the_six_original_settings(qtbot, window):
    dialog = open_server_properties(qtbot, window)
    assert dialog.tabs.tabText(0) == "General"
    # (An "Other" tab follows when the process has also loaded the protocol modules' settings.)
    assert [dialog.tabs.tabText(i) for i in range(dialog.tabs.count())][:6] == \
        ["General", "POP3", "SMTP", "Delivery", "Security", "Limits"]
    general = dialog.tabs.widget(0)
    for name in ("auth", "port", "logging", "mailroot", "sparequired", "createuser"):
        assert dialog.fields[name].isAncestorOf(dialog.fields[name].editor)
        assert general.isAncestorOf(dialog.fields[name])
    assert dialog.fields["logging"].editor.currentText() == "Medium"


def test_authentication_method_is_greyed_while_domains_exist(qtbot, window):
    dialog = open_server_properties(qtbot, window)
    auth = dialog.fields["auth"]
    assert not auth.editor.isEnabled()
    assert "only while no e-mail domain exists (there are 4)" in auth.reason.text()
    assert "only while no e-mail domain exists" in auth.editor.toolTip()


def test_authentication_method_can_change_on_an_empty_server(qtbot, fake, qsettings, errors):
    from tests.gui.conftest import open_window
    fake.service.domains.clear()
    fake.service._domain_names = None
    window = open_window(qtbot, fake, qsettings)
    dialog = open_server_properties(qtbot, window)
    auth = dialog.fields["auth"]
    assert auth.editor.isEnabled()
    auth.editor.setCurrentIndex(auth.editor.findData("local"))
    qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: fake.service.settings["auth"] == "local")
    qtbot.waitUntil(lambda: window.controller.server_settings.get("auth") == "local")   # through settings.changed


def test_apply_sends_changes_and_says_which_listener_must_restart(qtbot, window, fake):
    dialog = open_server_properties(qtbot, window)
    assert not dialog.apply_button.isEnabled()
    dialog.fields["port"].editor.setValue(1110)
    dialog.fields["logging"].editor.setCurrentIndex(3)
    assert dialog.apply_button.isEnabled()
    qtbot.mouseClick(dialog.apply_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.notice.isVisibleTo(dialog))
    assert fake.service.settings["port"] == 1110 and fake.service.settings["logging"] == 3
    assert "pop3" in dialog.notice.text()
    assert dialog.restart_button.isVisibleTo(dialog)
    qtbot.mouseClick(dialog.restart_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: fake.ops_sent("service.control")[-1] == {"action": "start", "listener": "pop3"})
    assert not dialog.apply_button.isEnabled()
    qtbot.waitUntil(lambda: window.status_view.events_box.title().endswith("Maximum)"))


def test_cancel_after_apply_keeps_what_was_applied(qtbot, window, fake):
    """Apply commits; Cancel discards only what was not applied (issue 15)."""
    dialog = open_server_properties(qtbot, window)
    dialog.fields["sparequired"].editor.setChecked(False)
    qtbot.mouseClick(dialog.apply_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: fake.service.settings["sparequired"] is False and not dialog._busy)
    dialog.fields["createuser"].editor.setChecked(not fake.service.settings["createuser"])   # not applied
    sent = len(fake.ops_sent("settings.set"))
    qtbot.mouseClick(dialog.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.wait(100)
    assert len(fake.ops_sent("settings.set")) == sent
    assert fake.service.settings["sparequired"] is False


def test_cancel_without_apply_sends_nothing(qtbot, window, fake):
    dialog = open_server_properties(qtbot, window)
    dialog.fields["createuser"].editor.setChecked(False)
    dialog.fields["hostname"].editor.setText("elsewhere.example")
    dialog.reject()
    assert fake.ops_sent("settings.set") == []


def test_invalid_values_show_the_reason_and_block_ok(qtbot, window):
    dialog = open_server_properties(qtbot, window)
    field = dialog.fields["idle_timeout"]
    field.editor.clear()
    qtbot.keyClicks(field.editor, "60")
    assert not dialog.ok_button.isEnabled()
    assert "out of range" in field.reason.text()
    field.editor.clear()
    qtbot.keyClicks(field.editor, "900")
    assert dialog.ok_button.isEnabled() and not field.reason.isVisibleTo(dialog)
    quota = dialog.fields["default_quota"]
    qtbot.keyClicks(quota.editor, "lots")
    assert "not a size" in quota.reason.text()


def test_mailroot_change_warns_that_mail_does_not_move(qtbot, window):
    dialog = open_server_properties(qtbot, window)
    dialog.fields["mailroot"].editor.setText("/srv/mail")
    assert dialog.mailroot_note.isVisibleTo(dialog)


def test_new_mailbox_refuses_bad_names_beside_the_field(qtbot):
    dialog = NewMailboxDialog(None, domain="example.com", auth="local", create_user_default=True,
                              submit=lambda *a: None)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.keyClicks(dialog.name_edit, "bad/name")
    assert dialog.name_reason.text() == "Mailbox names may not contain '/' or '\\'."
    assert not dialog.ok_button.isEnabled()
    dialog.name_edit.clear()
    qtbot.keyClicks(dialog.name_edit, "fine.name")
    assert not dialog.name_reason.isVisibleTo(dialog)
    assert not dialog.ok_button.isEnabled()          # still needs the password
    dialog.create_user.setChecked(False)              # an account already exists: no password here
    assert not dialog.password.isEnabled() and dialog.ok_button.isEnabled()
    assert dialog.values() == {"address": "fine.name@example.com", "create_user": False, "password": None}


def test_new_mailbox_checkbox_default_follows_the_server_setting(qtbot):
    for default in (True, False):
        dialog = NewMailboxDialog(None, domain="example.com", auth="local", create_user_default=default,
                                  submit=lambda *a: None)
        qtbot.addWidget(dialog)
        assert dialog.create_user.isChecked() is default and dialog.create_user.isEnabled()


def test_with_the_password_file_every_mailbox_needs_its_password(qtbot):
    dialog = NewMailboxDialog(None, domain="example.com", auth="passwordfile", create_user_default=False,
                              submit=lambda *a: None)
    qtbot.addWidget(dialog)
    assert dialog.create_user.isChecked() and not dialog.create_user.isEnabled()
    qtbot.keyClicks(dialog.name_edit, "alice")
    assert not dialog.ok_button.isEnabled()


def test_change_password_from_the_mailbox_menu(qtbot, window, fake):
    assert window.select_domain("contoso.com")
    qtbot.waitUntil(lambda: window.mailbox_model.fully_loaded)
    pane = window.mailbox_pane
    row = window.mailbox_model.row_of("alice@contoso.com")
    pane.view.setFocus()
    pane.view.selectRow(row) if hasattr(pane.view, "selectRow") else pane.view.setCurrentIndex(
        window.mailbox_model.index(row, 0))
    qtbot.waitUntil(lambda: window.named_actions["change_password"].isEnabled())
    window.named_actions["change_password"].trigger()
    dialog = window.dialog
    assert isinstance(dialog, ChangePasswordDialog)
    qtbot.keyClicks(dialog.password, "n3w-Secret")
    assert not dialog.ok_button.isEnabled()
    qtbot.keyClicks(dialog.confirm, "n3w-Secret")
    with qtbot.waitSignal(dialog.accepted):
        qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    assert fake.service.domains["contoso.com"].mailboxes["alice"].password == "n3w-Secret"


def test_mailbox_quota_from_its_properties(qtbot, window, fake):
    assert window.select_domain("contoso.com")
    qtbot.waitUntil(lambda: window.mailbox_model.fully_loaded)
    info = window.mailbox_model.item("bob@contoso.com")
    dialog = MailboxPropertiesDialog(window, info, client=fake)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.keyClicks(dialog.quota, "10 MB")
    with qtbot.waitSignal(dialog.accepted):
        qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.mailbox_model.item("bob@contoso.com")["quota_bytes"] == 10 * 1024 * 1024)
    row = window.mailbox_model.row_of("bob@contoso.com")
    assert window.mailbox_model.data(window.mailbox_model.index(row, 4)) == "10,240"


def test_fake_service_checks_params_like_the_real_one():
    """The fake validates against the same op table, so a misspelt parameter fails in tests too."""
    import pytest

    from core.errors import Invalid
    with pytest.raises(Invalid):
        FakeService().call("domain.add", {"domain": "x.com"})
