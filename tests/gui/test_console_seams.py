"""The seams of the split console: the wizard reaches the window only through its Console protocol,
the window offers all of it, and the split modules import at the top."""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from PySide6.QtWidgets import QDialog, QWidget

import gui
from gui.controller import ConsoleController
from gui.views.host import ConsoleHost
from gui.wizard import console as wizard_console
from gui.wizard.console import Console

GUI = Path(gui.__file__).parent
SPLIT_MODULES = ["app.py", "controller.py", "views/main_window.py", "views/result_pane.py", "views/item_commands.py",
                 "views/host.py", "views/server_switch.py", "wizard/console.py"]


def protocol_members(*protocols: type) -> set[str]:
    return {name for p in protocols for name in vars(p) if not name.startswith("_")}


def test_the_window_offers_everything_the_wizard_and_the_helpers_use(window):
    members = protocol_members(ConsoleHost, Console)
    assert {"controller", "dialog_parent", "open_dialog", "show_message", "select_domain"} <= members
    assert [name for name in sorted(members) if not hasattr(window, name)] == []
    assert isinstance(window.controller, ConsoleController)


def test_the_wizard_touches_only_the_console_protocol():
    """No private method of the window, and nothing of it outside the protocol (``console.X``)."""
    tree = ast.parse((GUI / "wizard" / "console.py").read_text())
    allowed = protocol_members(ConsoleHost, Console)
    used = {node.attr for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "console"}
    assert used and used <= allowed
    private = sorted({node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
                      and node.attr.startswith("_") and not node.attr.startswith("__")})
    assert private == []


class StandIn:
    """A console that is not the main window: what ``show_first_mailbox`` needs, and nothing else."""

    def __init__(self, controller: ConsoleController, parent: QWidget) -> None:
        self.controller = controller
        self.parent = parent
        self.calls: list[tuple[str, Any]] = []

    def dialog_parent(self) -> QWidget:
        return self.parent

    def open_dialog(self, dialog: QDialog, topic: str) -> QDialog:
        self.calls.append(("open_dialog", topic))
        return dialog

    def show_dialog(self, dialog: QDialog) -> None:
        self.calls.append(("show_dialog", dialog))

    def show_message(self, text: str, timeout_ms: int) -> None:
        self.calls.append(("show_message", text))

    def select_server(self) -> None:
        self.calls.append(("select_server", None))

    def select_domain(self, name: str) -> bool:
        return False

    def select_domain_when_added(self, name: str) -> None:
        self.calls.append(("select_domain_when_added", name))

    def select_domain_when_loaded(self, name: str) -> None:
        self.calls.append(("select_domain_when_loaded", name))

    def show_mailbox_created(self, info: dict[str, Any]) -> None:
        self.calls.append(("show_mailbox_created", (dict(self.controller.server_settings), info)))


def test_the_first_mailbox_is_shown_after_the_server_facts_are_read(qtbot: Any, fake: Any) -> None:
    parent = QWidget()
    qtbot.addWidget(parent)
    stand_in = StandIn(ConsoleController(fake, parent=parent), parent)
    console: Console = stand_in
    fake.start()
    qtbot.waitUntil(lambda: fake.is_connected)
    stand_in.calls.clear()
    wizard_console.show_first_mailbox(console, "contoso.com", {"address": "alice@contoso.com"})
    assert stand_in.calls[0] == ("select_domain_when_loaded", "contoso.com")
    qtbot.waitUntil(lambda: len(stand_in.calls) == 2)
    name, (settings, info) = stand_in.calls[1]
    assert name == "show_mailbox_created" and info == {"address": "alice@contoso.com"}
    assert settings, "the settings are read before the client settings are shown"
    assert stand_in.controller.server_info.get("hostname") == "mail.contoso.com"


def test_the_split_modules_import_at_the_top():
    local = []
    for name in SPLIT_MODULES:
        tree = ast.parse((GUI / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                local += [f"{name}:{n.lineno}" for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert local == []
