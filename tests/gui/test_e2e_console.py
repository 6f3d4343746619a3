"""The console against the real service: ``python main.py service`` in a temp data dir, and winpop.

What the console does must be visible to winpop, and what winpop does must appear in the
console by itself (change events), without Refresh.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from gui.dialogs.mailbox_created import MailboxCreatedDialog
from gui.dialogs.new_domain import NewDomainDialog

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not (ROOT / "service" / "daemon.py").exists(), reason="no service yet")


def tree_keys(window) -> list[str]:
    return [n.key for n in window.tree_model.server.children]


def test_domain_and_mailbox_created_in_the_console_show_in_winpop(qtbot, console, service, errors):
    window = console
    window.tree.setFocus()
    window.do_new_domain()
    dialog = window.dialog
    assert isinstance(dialog, NewDomainDialog)
    qtbot.keyClicks(dialog.name_edit, "console.example")
    with qtbot.waitSignal(dialog.accepted, timeout=10_000):
        qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.current_node().key == "console.example", timeout=5000)
    listed = service.winpop("list", check=True).stdout
    assert "console.example" in listed

    window.do_new_mailbox()
    box = window.dialog
    qtbot.keyClicks(box.name_edit, "alice")
    box.create_user.setChecked(True)
    qtbot.keyClicks(box.password, "Corr3ct-horse")
    qtbot.keyClicks(box.confirm, "Corr3ct-horse")
    qtbot.mouseClick(box.ok_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: isinstance(window.dialog, MailboxCreatedDialog), timeout=10_000)
    assert "alice@console.example" in window.dialog.text()
    window.dialog.accept()
    qtbot.waitUntil(lambda: window.mailbox_model.item("alice@console.example") is not None, timeout=5000)
    assert "alice" in service.winpop("list", "console.example", check=True).stdout
    assert not errors


def test_changes_made_with_winpop_appear_in_the_console_by_themselves(qtbot, console, service):
    window = console
    service.winpop("add", "winpop.example", check=True)
    qtbot.waitUntil(lambda: "winpop.example" in tree_keys(window), timeout=2000)
    assert window.select_domain("winpop.example")
    qtbot.waitUntil(lambda: window.mailbox_model.fully_loaded, timeout=5000)
    service.call("mailbox.add", address="bob@winpop.example", password="Sec-ret-123")
    qtbot.waitUntil(lambda: window.mailbox_model.item("bob@winpop.example") is not None, timeout=2000)
    service.winpop("lock", "winpop.example", check=True)
    qtbot.waitUntil(lambda: window.mailbox_model.item("bob@winpop.example")["domain_locked"], timeout=2000)
    assert window.tree_model.domain_node("winpop.example").data["locked"]


def test_losing_the_service_shows_the_banner_and_it_reconnects(qtbot, console, service):
    window = console
    service.call("domain.add", name="before.example")
    qtbot.waitUntil(lambda: "before.example" in tree_keys(window), timeout=2000)
    service.stop()
    qtbot.waitUntil(lambda: window.banner.isVisible(), timeout=5000)
    assert not window.named_actions["new_domain"].isEnabled()
    service.start()
    qtbot.waitUntil(lambda: not window.banner.isVisible(), timeout=10_000)
    qtbot.waitUntil(lambda: "before.example" in tree_keys(window), timeout=5000)
    assert window.named_actions["new_domain"].isEnabled()
