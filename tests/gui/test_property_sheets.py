"""Property sheets behave like property sheets (issue 15), against a real service with two
administrators (two IpcClients): Apply commits, OK applies what is left and closes, Cancel discards
only what was not applied; a setting the other administrator changed meanwhile is never silently
overwritten: the sheet says which one and what it is now, and Apply again replaces it deliberately.
Fields nobody touched follow the other administrator's changes by themselves."""
from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from gui.dialogs.item_properties import MailboxPropertiesDialog
from gui.ipc_client import IpcClient
from tests.gui.conftest import open_server_properties

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not (ROOT / "service" / "daemon.py").exists(), reason="no service yet")
PASSWORD = "Secret-123x"


@pytest.fixture
def other(qtbot, service):
    """The second administrator: another console's connection to the same service."""
    client = IpcClient(service.data_dir)
    client.start()
    qtbot.waitUntil(lambda: client.is_connected)
    yield client
    client.stop()


def send(qtbot, client: IpcClient, op: str, **params) -> object:
    """``op`` from ``client``, waiting for its answer (the other administrator's change)."""
    answers: list[object] = []
    client.request(op, params, answers.append, lambda e: answers.append(e))
    qtbot.waitUntil(lambda: bool(answers))
    assert not isinstance(answers[0], Exception), answers[0]
    return answers[0]


def test_a_setting_changed_meanwhile_is_named_and_replaced_only_when_applied_again(qtbot, console, other,
                                                                                    service, errors):
    dialog = open_server_properties(qtbot, console)
    hostname, timeout = dialog.fields["hostname"], dialog.fields["idle_timeout"]
    hostname.editor.setText("mine.example")

    send(qtbot, other, "settings.set", name="idle_timeout", value=900)        # untouched here: follows
    qtbot.waitUntil(lambda: timeout.editor.text() == "900")
    send(qtbot, other, "settings.set", name="hostname", value="theirs.example")   # touched here: noted
    qtbot.waitUntil(lambda: not hostname.meanwhile.isHidden())   # (on a tab not shown)
    assert "theirs.example" in hostname.meanwhile.text() and hostname.editor.text() == "mine.example"

    qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)   # refused: the sheet stays open
    qtbot.waitUntil(lambda: not dialog._busy and "Server host name" in dialog.notice.text())
    assert dialog.isVisible() and not errors
    assert "Apply again" in hostname.meanwhile.text() and hostname.editor.text() == "mine.example"
    assert hostname.meanwhile.isVisibleTo(dialog)   # its tab is the one shown now
    assert "theirs.example" in hostname.meanwhile.text() and " by " in hostname.meanwhile.text()   # who, what
    assert service.call("settings.get", name="hostname") == {"hostname": "theirs.example"}
    assert service.call("settings.get", name="idle_timeout") == {"idle_timeout": 900}   # never sent back

    qtbot.mouseClick(dialog.apply_button, Qt.MouseButton.LeftButton)   # deliberately, over theirs
    qtbot.waitUntil(lambda: service.call("settings.get", name="hostname") == {"hostname": "mine.example"})
    qtbot.waitUntil(lambda: not dialog._busy)
    assert hostname.meanwhile.isHidden() and "Server host name" not in dialog.notice.text()
    assert not dialog.apply_button.isEnabled() and not errors


def test_cancel_after_apply_keeps_the_applied_value_and_the_other_administrators_change(qtbot, console, other,
                                                                                       service, errors):
    dialog = open_server_properties(qtbot, console)
    dialog.fields["createuser"].editor.setChecked(True)
    qtbot.mouseClick(dialog.apply_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: service.call("settings.get", name="createuser") == {"createuser": True})
    qtbot.waitUntil(lambda: not dialog._busy)
    send(qtbot, other, "settings.set", name="createuser", value=False)
    qtbot.waitUntil(lambda: not dialog.fields["createuser"].editor.isChecked())   # untouched since Apply
    dialog.fields["sparequired"].editor.setChecked(False)                          # not applied
    qtbot.mouseClick(dialog.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.wait(300)
    values = service.call("settings.get")
    assert (values["createuser"], values["sparequired"]) == (False, True)
    assert not errors


def test_the_mailbox_quota_changed_meanwhile_is_not_overwritten(qtbot, console, other, service, errors):
    service.call("domain.add", name="example.com")
    service.call("mailbox.add", address="alice@example.com", password=PASSWORD)
    qtbot.waitUntil(lambda: console.select_domain("example.com"))
    qtbot.waitUntil(lambda: console.mailbox_model.item("alice@example.com") is not None)
    console.mailbox_pane.view.setCurrentIndex(console.mailbox_model.index(0, 0))
    console.mailbox_pane.view.setFocus()
    console.do_properties()
    qtbot.waitUntil(lambda: isinstance(console.dialog, MailboxPropertiesDialog))
    sheet = console.dialog

    send(qtbot, other, "mailbox.set_quota", address="alice@example.com", quota="20 MB")   # untouched: follows
    qtbot.waitUntil(lambda: sheet.quota.text() == "20 MB")
    sheet.quota.setText("5 MB")
    send(qtbot, other, "mailbox.set_quota", address="alice@example.com", quota="30 MB")   # touched: noted
    qtbot.waitUntil(lambda: sheet.quota_meanwhile.isVisibleTo(sheet) and "30 MB" in sheet.quota_meanwhile.text())

    qtbot.mouseClick(sheet.apply_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "Apply again" in sheet.quota_meanwhile.text())
    assert service.call("mailbox.get", address="alice@example.com")["quota_bytes"] == 30 * 1024 * 1024
    assert sheet.quota.text() == "5 MB" and not errors
    with qtbot.waitSignal(sheet.accepted, timeout=10_000):
        qtbot.mouseClick(sheet.ok_button, Qt.MouseButton.LeftButton)
    assert service.call("mailbox.get", address="alice@example.com")["quota_bytes"] == 5 * 1024 * 1024


# -- against the test double: the order of answers and events -----------------------------------------
def test_the_event_of_its_own_apply_is_no_change_by_someone_else(qtbot, window, fake, errors):
    """The fake publishes a change's event before it answers (the service may too): the sheet's
    own change is not reported as someone else's, and the next Apply sends the new version."""
    dialog = open_server_properties(qtbot, window)
    field = dialog.fields["idle_timeout"]
    field.editor.setText("900")
    qtbot.mouseClick(dialog.apply_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not dialog._busy and fake.service.settings["idle_timeout"] == 900)
    assert field.meanwhile.isHidden() and dialog.versions["idle_timeout"] == fake.service.versions["idle_timeout"]
    field.editor.setText("1200")
    qtbot.mouseClick(dialog.apply_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: fake.service.settings["idle_timeout"] == 1200)
    assert fake.ops_sent("settings.set")[-1]["expected_version"] == fake.service.versions["idle_timeout"] - 1
    assert not errors


def test_an_event_without_a_version_still_updates_an_untouched_field(qtbot, window, fake):
    """An older service's events carry no version: the value is shown, the version kept."""
    dialog = open_server_properties(qtbot, window)
    before = dict(dialog.versions)
    dialog.apply_event("settings.changed", {"name": "idle_timeout", "value": 1800})
    assert dialog.fields["idle_timeout"].editor.text() == "1800" and dialog.versions == before
    assert not dialog.apply_button.isEnabled()
