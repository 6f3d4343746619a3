"""Mouse and keyboard in the console window: one dialog per double-click, Shift+F10 and the Menu key,
the service buttons on the toolbar, and Stop asking before it ends open sessions."""
from __future__ import annotations

from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QContextMenuEvent, QMouseEvent
from PySide6.QtWidgets import QApplication, QMessageBox

from gui.dialogs.item_properties import MailboxPropertiesDialog
from gui.views.item_commands import sessions_question
from tests.gui.test_main_window import list_names, menu_texts, open_domain, select_rows


def double_click(widget, pos: QPoint) -> None:
    """What a platform delivers for a double-click: press, release, press, double-click, release
    (QTest.mouseDClick sends fewer, and the view then emits neither doubleClicked nor activated)."""
    local = QPointF(pos)
    where = QPointF(widget.mapToGlobal(pos))
    left, none = Qt.MouseButton.LeftButton, Qt.MouseButton.NoButton
    for kind, buttons in ((QEvent.Type.MouseButtonPress, left), (QEvent.Type.MouseButtonRelease, none),
                          (QEvent.Type.MouseButtonPress, left), (QEvent.Type.MouseButtonDblClick, left),
                          (QEvent.Type.MouseButtonRelease, none)):
        QApplication.sendEvent(widget, QMouseEvent(kind, local, where, left, buttons, Qt.KeyboardModifier.NoModifier))


def _count_dialogs(window, monkeypatch) -> list[object]:
    opened: list[object] = []
    original = window.open_dialog

    def counting(dialog, topic):
        opened.append(dialog)
        return original(dialog, topic)
    monkeypatch.setattr(window, "open_dialog", counting)
    monkeypatch.setattr(window.commands.host, "open_dialog", counting, raising=False)
    return opened


def test_double_click_on_a_mailbox_opens_one_properties_dialog(qtbot, window, monkeypatch):
    opened = _count_dialogs(window, monkeypatch)
    open_domain(qtbot, window, "contoso.com")
    view = window.mailbox_pane.view
    row = list_names(window.mailbox_pane).index("alice")
    double_click(view.viewport(), view.visualRect(window.mailbox_model.index(row, 0)).center())
    qtbot.waitUntil(lambda: isinstance(window.dialog, MailboxPropertiesDialog))
    qtbot.wait(50)
    assert len(opened) == 1
    assert sum(isinstance(w, MailboxPropertiesDialog) and w.isVisible() for w in QApplication.topLevelWidgets()) == 1


def test_enter_on_a_mailbox_opens_its_properties(qtbot, window, monkeypatch):
    opened = _count_dialogs(window, monkeypatch)
    window.activateWindow()
    open_domain(qtbot, window, "contoso.com")
    select_rows(window.mailbox_pane, ["alice"])
    view = window.mailbox_pane.view
    view.setCurrentIndex(window.mailbox_model.index(list_names(window.mailbox_pane).index("alice"), 0))
    qtbot.keyClick(view, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: isinstance(window.dialog, MailboxPropertiesDialog))
    assert len(opened) == 1


def test_shift_f10_opens_the_context_menu_of_the_focused_list(qtbot, window):
    window.activateWindow()
    open_domain(qtbot, window, "contoso.com")
    select_rows(window.mailbox_pane, ["alice"])
    view = window.mailbox_pane.view
    qtbot.keyClick(view, Qt.Key.Key_F10, Qt.KeyboardModifier.ShiftModifier)
    qtbot.waitUntil(lambda: window.last_menu is not None and window.last_menu.isVisible())
    texts = menu_texts(window.last_menu)
    assert "Change Password…" in texts and "Properties" in texts
    assert window.targets()[0].key == "alice@contoso.com"     # the selection stayed as it was
    # The menu sits at the selected row, not at the middle of the view.
    row_rect = view.visualRect(window.mailbox_model.index(list_names(window.mailbox_pane).index("alice"), 0))
    assert window.last_menu.pos().y() >= view.viewport().mapToGlobal(row_rect.topLeft()).y()
    window.last_menu.close()


def test_shift_f10_opens_the_context_menu_of_the_tree(qtbot, window):
    window.activateWindow()
    window.select_server()
    window.tree.setFocus()
    qtbot.keyClick(window.tree, Qt.Key.Key_F10, Qt.KeyboardModifier.ShiftModifier)
    qtbot.waitUntil(lambda: window.last_menu is not None and window.last_menu.isVisible())
    assert "All Tasks>Start" in [t.replace("&", "") for t in menu_texts(window.last_menu)]
    window.last_menu.close()


def test_the_menu_key_opens_one_menu_at_the_current_item(qtbot, window):
    window.activateWindow()
    open_domain(qtbot, window, "contoso.com")
    select_rows(window.mailbox_pane, ["bob"])
    view = window.mailbox_pane.view
    shown = []
    original = window.context_menu
    window.context_menu = lambda: shown.append(1) or original()
    QApplication.sendEvent(view, QContextMenuEvent(QContextMenuEvent.Reason.Keyboard, QPoint(5, 5),
                                                   view.mapToGlobal(QPoint(5, 5))))
    assert window.last_menu is not None and window.last_menu.isVisible()
    # Shift+F10 on a platform that also sends a context-menu event for it: still one menu.
    qtbot.keyClick(view, Qt.Key.Key_F10, Qt.KeyboardModifier.ShiftModifier)
    assert len(shown) == 1
    assert window.targets()[0].key == "bob@contoso.com"
    window.last_menu.close()


def test_resume_is_on_the_toolbar_next_to_pause(window):
    names = [name for a in window.toolbar.actions() for name, b in window.named_actions.items() if a is b]
    assert names[names.index("pause") + 1] == "resume"
    assert {"start", "stop", "pause", "resume", "restart"} <= set(names)


def test_start_resumes_a_paused_service(qtbot, window, fake):
    window.select_server()
    window.tree.setFocus()
    window.named_actions["pause"].trigger()
    qtbot.waitUntil(lambda: window.controller.service_state == "paused")
    assert window.named_actions["start"].isEnabled() and window.named_actions["resume"].isEnabled()
    window.named_actions["start"].trigger()
    qtbot.waitUntil(lambda: window.controller.service_state == "running")


def _with_sessions(fake, monkeypatch, **sessions: int) -> None:
    status = fake.service.status

    def busy():
        report = status()
        for item in report["listeners"]:
            item["sessions"] = sessions.get(item["name"], 0)
        return report
    monkeypatch.setattr(fake.service, "status", busy)


def test_stop_asks_first_when_sessions_are_open(qtbot, window, fake, monkeypatch):
    _with_sessions(fake, monkeypatch, pop3=2, smtp=1)
    window.select_server()
    window.tree.setFocus()
    window.named_actions["stop"].trigger()
    qtbot.waitUntil(lambda: isinstance(window.dialog, QMessageBox))
    box = window.dialog
    assert box.text().startswith("3 sessions are open (POP3: 2, SMTP: 1).")
    assert box.defaultButton() is box.button(QMessageBox.StandardButton.No)
    box.button(QMessageBox.StandardButton.No).click()
    qtbot.wait(50)
    assert not [p for p in fake.ops_sent("service.control") if p["action"] == "stop"]
    assert window.controller.service_state == "running"

    window.named_actions["stop"].trigger()
    qtbot.waitUntil(lambda: isinstance(window.dialog, QMessageBox) and window.dialog is not box)
    window.dialog.button(QMessageBox.StandardButton.Yes).click()
    qtbot.waitUntil(lambda: window.controller.service_state == "stopped")


def test_stop_without_sessions_does_not_ask(qtbot, window, fake):
    window.select_server()
    window.tree.setFocus()
    window.named_actions["stop"].trigger()
    qtbot.waitUntil(lambda: window.controller.service_state == "stopped")
    assert not isinstance(window.dialog, QMessageBox)


def test_restart_asks_too_when_sessions_are_open(qtbot, window, fake, monkeypatch):
    _with_sessions(fake, monkeypatch, submission=1)
    window.select_server()
    window.tree.setFocus()
    window.named_actions["restart"].trigger()
    qtbot.waitUntil(lambda: isinstance(window.dialog, QMessageBox))
    assert window.dialog.text().startswith("1 session is open (SMTP submission: 1). Restarting the service ends it")
    window.dialog.button(QMessageBox.StandardButton.Yes).click()
    qtbot.waitUntil(lambda: [p["action"] for p in fake.ops_sent("service.control")][-2:] == ["stop", "start"])


def test_sessions_question_names_the_listeners():
    assert sessions_question("stop", {"pop3s": 4}) == (
        "4 sessions are open (POP3 over TLS: 4). Stopping the service ends them: the mail clients and servers "
        "connected now lose their connection.\n\nStop the POP3 Service?")
