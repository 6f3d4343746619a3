"""The snap-in window: scope pane (tree) left, result pane right, menus, toolbar, status bar.

Actions live here and one ``update_actions`` slot follows the selection of the focused pane.
Every action is a function in ``gui.ops``; the models follow the service's change events.
"""
from __future__ import annotations

import sys
from functools import partial
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QItemSelectionModel, QModelIndex, QProcess, QSettings, Qt, QTimer
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import (QApplication, QDialog, QLabel, QMainWindow, QMenu, QMessageBox, QSplitter,
                               QStackedWidget, QTabWidget, QToolBar, QTreeView, QVBoxLayout, QWidget)

from core.catalog import MAIL_LISTENERS
from gui import icons, ops
from gui.dialogs import error_box
from gui.dialogs.change_password import ChangePasswordDialog
from gui.dialogs.confirm_delete import ConfirmDeleteDialog
from gui.dialogs.item_properties import DomainPropertiesDialog, MailboxPropertiesDialog
from gui.dialogs.mailbox_created import MailboxCreatedDialog, client_settings
from gui.dialogs.new_domain import NewDomainDialog
from gui.dialogs.new_mailbox import NewMailboxDialog
from gui.dialogs.server_properties import ServerPropertiesDialog
from gui.models.domain_table import DomainTableModel
from gui.models.mailbox_table import MailboxTableModel
from gui.models.nodes import ActionState, NodeKind, Target, action_states
from gui.models.tree_model import Node, ScopeTreeModel
from gui.views.banner import ConnectionBanner
from gui.views.help_window import HelpWindow
from gui.views.list_pane import ListPane
from gui.views.server_switch import ServerSwitch
from gui.views.bans_view import BansView
from gui.views.queue_view import QueueView
from gui.views.tokens_view import TokensView
from gui.dialogs.relay_test import RelayTestDialog
from gui.views.status_view import StatusView, listener_failures

APP_TITLE = "POP3 Service"
MAIN_PY = Path(__file__).resolve().parents[2] / "main.py"

# name: (text, icon, shortcut, status tip)
ACTION_SPECS: dict[str, tuple[str, str, str, str]] = {
    "new_domain": ("New &Domain…", "domain", "", "Create an e-mail domain on this server"),
    "new_mailbox": ("New &Mailbox…", "mailbox", "", "Create a mailbox in the selected domain"),
    "lock": ("&Lock", "lock", "", "Lock: no logon, mail is still delivered"),
    "unlock": ("&Unlock", "unlock", "", "Unlock: allow logons again"),
    "delete": ("&Delete", "delete", "Del", "Delete the selected items and their mail"),
    "change_password": ("Change &Password…", "password", "", "Set a new password for the mailbox"),
    "properties": ("P&roperties", "properties", "Alt+Return", "Show the properties of the selected item"),
    "refresh": ("Re&fresh", "refresh", "F5", "Read the lists again from the service"),
    "start": ("&Start", "state-running", "", "Start the service's listeners"),
    "stop": ("S&top", "state-stopped", "", "Stop the service's listeners"),
    "pause": ("&Pause", "state-paused", "", "Pause: refuse new logons, keep current sessions"),
    "resume": ("Res&ume", "state-running", "", "Resume a paused service"),
    "restart": ("R&estart", "restart", "", "Stop, then start the service's listeners"),
    "help": ("&Help Topics", "help", "F1", "Help on the current screen"),
}
SERVICE_ACTIONS = ("start", "stop", "pause", "resume", "restart")


# QSettings.value(..., type=bool) trips a reference-counting bug in PySide6 (a fatal error at
# exit), and INI files give text back anyway: read flags and lists by hand.
def stored_flag(settings: QSettings, key: str, default: bool) -> bool:
    value = settings.value(key)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def stored_list(settings: QSettings, key: str) -> list[str]:
    value = settings.value(key)
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return [str(value)]


class MainWindow(QMainWindow):
    """The POP3 Service console."""

    def __init__(self, client: Any, *, settings: QSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.client = client
        self.settings = settings
        self.server_settings: dict[str, Any] = {}
        self.server_info: dict[str, Any] = {}
        self.service_state = "unknown"
        self.dialog: QDialog | None = None           # the dialog opened last (tests look here)
        self._active_pane = "tree"
        self._restore_path: list[str] | None = None
        self._select_when_added = ""
        self.help_window: HelpWindow | None = None
        self.last_menu: QMenu | None = None

        self.tree_model = ScopeTreeModel(client, self)
        self.domain_model = DomainTableModel(client, self)
        self.mailbox_model = MailboxTableModel(client, self)
        self._build_panes()
        self._build_actions()
        self._build_menus_and_toolbar()
        self._wire()
        self._restore_layout()
        self.setWindowTitle(APP_TITLE)
        self.setWindowIcon(icons.icon("console"))
        self._update_timer = QTimer(self)
        self._update_timer.setSingleShot(True)
        self._update_timer.timeout.connect(self.update_actions)
        self.tree.setCurrentIndex(self.tree_model.index_of(self.tree_model.server))
        self._maybe_restore_selection()
        self.server_switch = ServerSwitch(self)     # this computer or another; remembered servers
        self._build_service_panes()
        self.update_actions()
        if client.is_connected:
            self._on_connected()

    # -- construction ----------------------------------------------------------------------------
    def _build_panes(self) -> None:
        self.tree = QTreeView()
        self.tree.setModel(self.tree_model)
        self.tree.setHeaderHidden(True)
        self.tree.setUniformRowHeights(True)
        self.tree.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.tree.setAccessibleName("Console tree")
        self.tree.expand(self.tree_model.index_of(self.tree_model.root))
        self.tree.expand(self.tree_model.index_of(self.tree_model.server))

        self.root_page = QWidget()
        intro = QLabel("<h3>POP3 Service</h3><p>Use the POP3 Service to create e-mail domains and mailboxes, "
                       "lock and unlock them, and control the mail service. Select the server below, or in the "
                       "tree, to see its domains.</p>")
        intro.setWordWrap(True)
        self.server_list = QTreeView()
        self.server_list.setModel(self.tree_model)
        self.server_list.setRootIndex(self.tree_model.index_of(self.tree_model.root))
        self.server_list.setRootIsDecorated(False)
        self.server_list.setItemsExpandable(False)
        self.server_list.setHeaderHidden(True)
        page = QVBoxLayout(self.root_page)
        page.addWidget(intro)
        page.addWidget(self.server_list, 1)

        self.domain_pane = ListPane(self.domain_model, noun="domains")
        self.mailbox_pane = ListPane(self.mailbox_model, noun="mailboxes")
        self.status_view = StatusView(self.client)
        self.server_tabs = QTabWidget()
        self.server_tabs.setTabPosition(QTabWidget.TabPosition.South)
        self.server_tabs.addTab(self.domain_pane, "Domains")
        self.server_tabs.addTab(self.status_view, "Service Status")
        self.stack = QStackedWidget()
        for w in (self.root_page, self.server_tabs, self.mailbox_pane):
            self.stack.addWidget(w)

        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(self.tree)
        self.splitter.addWidget(self.stack)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([230, 670])
        self.banner = ConnectionBanner()
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.banner)
        layout.addWidget(self.splitter, 1)
        self.setCentralWidget(central)

        self.count_label = QLabel()
        self.connection_label = QLabel()
        self.statusBar().addPermanentWidget(self.count_label)
        self.statusBar().addPermanentWidget(self.connection_label)
        self.resize(960, 620)

    def _build_actions(self) -> None:
        self.actions: dict[str, QAction] = {}
        for name, (text, icon_name, shortcut, tip) in ACTION_SPECS.items():
            action = QAction(icons.icon(icon_name), text, self)
            if shortcut:
                action.setShortcut(QKeySequence(shortcut))
            action.setStatusTip(tip)
            action.setToolTip(text.replace("&", "").rstrip("…"))
            action.setProperty("base_tip", action.toolTip())
            action.triggered.connect(getattr(self, f"do_{name}"))
            self.addAction(action)
            self.actions[name] = action
        # Alt+Enter: the keypad Enter too.
        QShortcut(QKeySequence("Alt+Enter"), self, self.do_properties)
        self.connect_action = QAction("&Connect to Another Computer…", self)
        self.connect_action.triggered.connect(self.do_connect)
        self.exit_action = QAction("E&xit", self)
        self.exit_action.setShortcut(QKeySequence.StandardKey.Quit)
        self.exit_action.triggered.connect(self.close)
        self.about_action = QAction("&About POP3 Service", self)
        self.about_action.triggered.connect(self.do_about)
        self.find_action = QAction("&Filter the List", self)
        self.find_action.setShortcut(QKeySequence.StandardKey.Find)
        self.find_action.triggered.connect(self._focus_filter)
        self.addAction(self.find_action)

    def _build_menus_and_toolbar(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        self.setup_action = QAction("Set &Up the Server (Wizard)…", self)
        self.setup_action.setStatusTip("Change the ports, the TLS certificate or the mail folder with the setup wizard")
        self.setup_action.triggered.connect(self.do_setup_wizard)
        file_menu.addAction(self.setup_action)
        file_menu.addAction(self.connect_action)
        file_menu.addSeparator()
        file_menu.addAction(self.exit_action)
        self.action_menu = bar.addMenu("&Action")
        self.action_menu.setToolTipsVisible(True)
        self.action_menu.aboutToShow.connect(lambda: self._fill_menu(self.action_menu, self.targets()))
        self._fill_menu(self.action_menu, self.targets())
        view_menu = bar.addMenu("&View")
        self.toolbar = QToolBar("Standard")
        self.toolbar.setObjectName("standardToolbar")
        self.toolbar.setMovable(False)
        for name in ("refresh", None, "new_domain", "new_mailbox", None, "lock", "unlock", "delete", "properties",
                     None, "start", "stop", "pause", "restart", None, "help"):
            if name is None:
                self.toolbar.addSeparator()
            else:
                self.toolbar.addAction(self.actions[name])
        self.addToolBar(self.toolbar)
        self.toolbar_action = self.toolbar.toggleViewAction()
        self.toolbar_action.setText("&Toolbar")
        self.statusbar_action = QAction("&Status Bar", self, checkable=True, checked=True)
        self.statusbar_action.toggled.connect(self.statusBar().setVisible)
        self.tree_action = QAction("Console T&ree", self, checkable=True, checked=True)
        self.tree_action.toggled.connect(self.tree.setVisible)
        view_menu.addAction(self.tree_action)
        view_menu.addAction(self.toolbar_action)
        view_menu.addAction(self.statusbar_action)
        view_menu.addSeparator()
        view_menu.addAction(self.find_action)
        view_menu.addAction(self.actions["refresh"])
        help_menu = bar.addMenu("&Help")
        help_menu.addAction(self.actions["help"])
        help_menu.addSeparator()
        help_menu.addAction(self.about_action)

    def _wire(self) -> None:
        c = self.client
        c.connected.connect(self._on_connected)
        c.disconnected.connect(self._on_disconnected)
        c.event_received.connect(self._on_event)
        self.tree.selectionModel().currentChanged.connect(self._on_node_changed)
        self.tree.customContextMenuRequested.connect(self._tree_menu)
        self.tree_model.domains_loaded.connect(self._maybe_restore_selection)
        self.tree_model.load_failed.connect(self._load_failed)
        self.tree_model.rowsRemoved.connect(self._schedule_update)
        for pane in (self.domain_pane, self.mailbox_pane):
            pane.view.selectionModel().selectionChanged.connect(self._list_selection_changed)
            pane.view.customContextMenuRequested.connect(partial(self._list_menu, pane))
            pane.view.doubleClicked.connect(partial(self._list_activated, pane))
            pane.view.activated.connect(partial(self._list_activated, pane))
            pane.model.total_changed.connect(self._update_counts)
            pane.model.loading_changed.connect(self._update_counts)
            pane.model.load_failed.connect(self._load_failed)
            pane.model.dataChanged.connect(self._schedule_update)
            pane.model.modelReset.connect(self._schedule_update)
        self.mailbox_model.domain_gone.connect(self._domain_gone)
        self.server_tabs.currentChanged.connect(lambda _i: self._set_active_pane("list"))
        QApplication.instance().focusChanged.connect(self._focus_changed)  # type: ignore[union-attr]
        self.banner.retry_button.clicked.connect(self.client.retry_now)
        self.banner.start_button.clicked.connect(self.start_service_process)

    # -- connection --------------------------------------------------------------------------------
    def _on_connected(self) -> None:
        self.banner.setVisible(False)
        self.connection_label.setText(f"Connected: {self.client.target}")
        self.client.request("server.info", {}, self._apply_server_info, self._load_failed)
        self.client.request("settings.get", {}, self._apply_settings, self._load_failed)
        self.client.request("service.status", {}, self._apply_status, self._load_failed)
        self.refresh_lists()
        self.update_actions()

    def _on_disconnected(self) -> None:
        self.tree_model.clear()
        self.tree_model.set_service_state("unknown")
        self.service_state = "unknown"
        reason = f" ({self.client.last_error})" if getattr(self.client, "last_error", "") else ""
        self.banner.show_message(
            f"<b>The POP3 Service is not reachable</b> at {self.client.location}{reason}.<br>"
            "The lists below may be out of date. The console reconnects by itself when the service is back.")
        self.connection_label.setText("Not connected")
        self.update_actions()

    def _apply_server_info(self, info: dict[str, Any]) -> None:
        self.server_info = dict(info)
        self.tree_model.set_server_info(info)
        if hasattr(self.status_view, "set_certificate"):
            self.status_view.set_certificate(info.get("tls") or {})
            self.status_view.set_key_problem(str(info.get("key_problem") or ""))
        self.setWindowTitle(f"{APP_TITLE} - [{info.get('hostname') or 'this computer'}]")
        self.domain_pane.title.setText(f"Domains on {self.tree_model.server.label}")
        self._update_counts()

    def _apply_settings(self, values: dict[str, Any]) -> None:
        self.server_settings = dict(values)
        self.status_view.set_logging_level(values.get("logging", 2))
        self.update_actions()

    def _apply_status(self, status: dict[str, Any]) -> None:
        self.service_state = str(status.get("state", "unknown"))
        self.tree_model.set_service_state(self.service_state)
        if isinstance(status.get("listeners"), list):
            self.server_info["listeners"] = status["listeners"]
        self.status_view.apply_status(status)
        failures = listener_failures(status)
        if failures:
            self.statusBar().showMessage("Not running: " + "; ".join(failures), 15000)
        self.update_actions()

    def _load_failed(self, error: Any) -> None:
        if getattr(error, "code", "") == "unavailable":
            return   # the banner says it
        self.statusBar().showMessage(f"Could not read from the service: {getattr(error, 'message', error)}", 8000)

    def refresh_lists(self) -> None:
        """Read the tree and the shown list again (connect, reconnect, F5), keeping the selection."""
        node = self.current_node()
        if node.kind is NodeKind.DOMAIN:
            # Reloading the tree removes the node for a moment; come back to it when it is there.
            self._restore_path = self.tree_model.path_of(node)
            self.mailbox_model.domain = node.key
            self.mailbox_model.reload()
        self.tree_model.reload()
        if self.current_node().kind is NodeKind.SERVER or node.kind is NodeKind.SERVER:
            self.domain_model.reload()
        if self.status_view.isVisible():
            self.status_view.refresh()

    def start_service_process(self) -> None:
        """Offer of the banner: start this user's own service for this data directory (background mode)."""
        from gui.wizard.console import start_background_service
        start_background_service(self)

    def do_setup_wizard(self) -> None:
        """File → Set Up the Server: the setup wizard for ports, certificate and storage."""
        from gui.wizard.console import open_setup_wizard
        open_setup_wizard(self)

    def show_first_mailbox(self, domain: str, mailbox: dict[str, Any]) -> None:
        """After the first setup: the new domain, and the client settings of its first mailbox."""
        from gui.wizard.console import show_first_mailbox
        show_first_mailbox(self, domain, mailbox)

    # -- events ------------------------------------------------------------------------------------
    def _on_event(self, name: str, data: Any) -> None:
        if not isinstance(data, dict):
            return
        if name == "domain.deleted" and self.current_node().key == data.get("name") \
                and self.current_node().kind is NodeKind.DOMAIN:
            # Go up to the server first, as MMC does, rather than to whichever neighbour Qt picks.
            self.tree.setCurrentIndex(self.tree_model.index_of(self.tree_model.server))
            self.statusBar().showMessage(f"The domain {data.get('name')} was deleted.", 5000)
        self.tree_model.apply_event(name, data)
        self.domain_model.apply_event(name, data)
        self.mailbox_model.apply_event(name, data)
        if name == "settings.changed":
            self.server_settings[str(data.get("name"))] = data.get("value")
            if data.get("name") == "logging":
                self.status_view.set_logging_level(data.get("value"))
        elif name == "service.state":
            self._apply_status(data)
        elif name == "domain.added" and data.get("name") == self._select_when_added:
            self._select_when_added = ""
            self.select_domain(str(data["name"]))
        if name.startswith("domain.") and self.current_node().kind is NodeKind.DOMAIN:
            self._update_domain_note()
        self._schedule_update()

    def _domain_gone(self, name: str) -> None:
        self.statusBar().showMessage(f"The domain {name} was deleted.", 5000)
        self.tree.setCurrentIndex(self.tree_model.index_of(self.tree_model.server))

    # -- selection -----------------------------------------------------------------------------------
    def current_node(self) -> Node:
        idx = self.tree.currentIndex()
        node = self.tree_model.node(idx) if idx.isValid() else self.tree_model.server
        return node if node.parent is not None else self.tree_model.server

    def current_pane(self) -> ListPane | None:
        node = self.current_node()
        if node.kind is NodeKind.SERVER and self.server_tabs.currentWidget() is self.domain_pane:
            return self.domain_pane
        if node.kind is NodeKind.DOMAIN:
            return self.mailbox_pane
        return None

    def targets(self) -> list[Target]:
        """What an action applies to: the list's selection when the list is active, else the tree node."""
        pane = self.current_pane()
        if self._active_pane == "list" and pane is not None:
            rows = pane.selected_rows()
            if rows:
                return [pane.model.target(r) for r in rows]
        return [self.current_node().target()]

    def context_domain(self, targets: list[Target]) -> str:
        for t in targets:
            if t.domain:
                return t.domain if len({x.domain for x in targets}) == 1 else ""
        node = self.current_node()
        return node.key if node.kind is NodeKind.DOMAIN else ""

    def select_domain(self, name: str) -> bool:
        node = self.tree_model.domain_node(name)
        if node is None:
            return False
        self.tree.setCurrentIndex(self.tree_model.index_of(node))
        return True

    def _on_node_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        node = self.current_node()
        if node.kind is NodeKind.REMOTE:
            self.server_switch.node_selected(node.key)   # selects the server node when it switches
            return
        if node.kind is NodeKind.ROOT:
            self.stack.setCurrentWidget(self.root_page)
        elif node.kind is NodeKind.SERVER:
            self.stack.setCurrentWidget(self.server_tabs)
            if not self.domain_model.fully_loaded and not self.domain_model.loading and self.client.is_connected:
                self.domain_model.reload()
            self.domain_pane.title.setText(f"Domains on {node.label}")
        elif node.kind is NodeKind.DOMAIN:
            self.stack.setCurrentWidget(self.mailbox_pane)
            self.mailbox_pane.title.setText(f"Mailboxes in {node.label}")
            if self.mailbox_model.domain != node.key:
                self.mailbox_pane.filter.blockSignals(True)
                self.mailbox_pane.filter.clear()
                self.mailbox_pane.filter.blockSignals(False)
                self.mailbox_model._filter = ""
                self.mailbox_model.set_domain(node.key)
            self._update_domain_note()
        self._active_pane = "tree"
        self._update_counts()
        self.update_actions()

    def _update_domain_note(self) -> None:
        node = self.current_node()
        locked = node.kind is NodeKind.DOMAIN and bool(node.data.get("locked"))
        self.mailbox_pane.note.setText(f"The domain {node.label} is locked: none of its mailboxes can log on "
                                       "(mail is still delivered). Unlock the domain to unlock its mailboxes.")
        self.mailbox_pane.note.setVisible(locked)

    def _list_selection_changed(self, *_args: Any) -> None:
        self._active_pane = "list"
        self.update_actions()

    def _set_active_pane(self, pane: str) -> None:
        self._active_pane = pane
        self._schedule_update()

    def _focus_changed(self, _old: QWidget | None, new: QWidget | None) -> None:
        if new is self.tree:
            self._set_active_pane("tree")
        elif new in (self.domain_pane.view, self.mailbox_pane.view):
            self._set_active_pane("list")

    def _list_activated(self, pane: ListPane, index: QModelIndex) -> None:
        """Double-click or Enter: open a domain (as MMC), or a mailbox's properties."""
        if not index.isValid():
            return
        target = pane.model.target(index.row())
        if target.kind is NodeKind.DOMAIN:
            self.select_domain(target.key)
        else:
            self._set_active_pane("list")
            self.do_properties()

    def _schedule_update(self, *_args: Any) -> None:
        self._update_timer.start(0)

    # -- actions: state ------------------------------------------------------------------------------
    def action_state(self) -> dict[str, ActionState]:
        targets = self.targets()
        return action_states(targets, connected=self.client.is_connected,
                             context_domain=self.context_domain(targets), service_state=self.service_state)

    def update_actions(self) -> None:
        for name, state in self.action_state().items():
            action = self.actions[name]
            action.setEnabled(state.enabled)
            base = action.property("base_tip")
            action.setToolTip(base if state.enabled else f"{base}: {state.reason}")
        node = self.current_node()
        self.actions["help"].setData(node.kind.help_topic())

    def _fill_menu(self, menu: QMenu, targets: list[Target]) -> None:
        """The context menu and the Action menu, derived from the kinds of the targets."""
        self.update_actions()
        menu.clear()
        kinds = {t.kind for t in targets}
        kind = next(iter(kinds)) if len(kinds) == 1 else None
        new_menu = menu.addMenu("&New")
        new_menu.addAction(self.actions["new_domain"])
        new_menu.addAction(self.actions["new_mailbox"])
        if kind is not None and kind.can_lock():
            menu.addSeparator()
            menu.addAction(self.actions["lock"])
            menu.addAction(self.actions["unlock"])
        if kind is not None and kind.can_change_password():
            menu.addAction(self.actions["change_password"])
        if kind is not None and kind.controls_service():
            tasks = menu.addMenu("All Tas&ks")
            tasks.setToolTipsVisible(True)
            for name in SERVICE_ACTIONS:
                tasks.addAction(self.actions[name])
            if hasattr(self, "relay_action"):
                tasks.addSeparator()
                tasks.addAction(self.relay_action)
        menu.addSeparator()
        if kind is not None and kind.can_delete():
            menu.addAction(self.actions["delete"])
        menu.addAction(self.actions["refresh"])
        if kind is not None and kind.has_properties():
            menu.addSeparator()
            menu.addAction(self.actions["properties"])
        menu.addSeparator()
        menu.addAction(self.actions["help"])

    def context_menu(self) -> QMenu:
        menu = QMenu(self)
        menu.setToolTipsVisible(True)
        self._fill_menu(menu, self.targets())
        return menu

    def _tree_menu(self, pos: Any) -> None:
        idx = self.tree.indexAt(pos)
        if idx.isValid():
            self.tree.setCurrentIndex(idx)
        self._set_active_pane("tree")
        self.last_menu = self.context_menu()
        self.last_menu.popup(self.tree.viewport().mapToGlobal(pos))

    def _list_menu(self, pane: ListPane, pos: Any) -> None:
        idx = pane.view.indexAt(pos)
        if idx.isValid() and not pane.view.selectionModel().isRowSelected(idx.row(), QModelIndex()):
            pane.view.selectionModel().select(idx, QItemSelectionModel.SelectionFlag.ClearAndSelect
                                              | QItemSelectionModel.SelectionFlag.Rows)
        elif not idx.isValid():
            pane.view.clearSelection()
        self._set_active_pane("list")
        self.last_menu = self.context_menu()
        self.last_menu.popup(pane.view.viewport().mapToGlobal(pos))

    def _focus_filter(self) -> None:
        pane = self.current_pane()
        if pane is not None:
            pane.filter.setFocus()
            pane.filter.selectAll()

    def _enabled(self, name: str) -> bool:
        state = self.action_state()[name]
        if not state.enabled:
            self.statusBar().showMessage(state.reason, 5000)
        return state.enabled

    # -- actions: doing --------------------------------------------------------------------------------
    def _open(self, dialog: QDialog, topic: str) -> QDialog:
        self.dialog = dialog
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        QShortcut(QKeySequence("F1"), dialog, lambda: self.show_help(topic))
        dialog.open()
        return dialog

    def do_new_domain(self) -> None:
        if not self._enabled("new_domain"):
            return
        dialog: NewDomainDialog

        def submit(name: str, ok: Any, fail: Any) -> None:
            def done(result: Any) -> None:
                ok(result)
                key = str((result or {}).get("name", name))
                if not self.select_domain(key):
                    self._select_when_added = key
            ops.add_domain(self.client, parent=dialog, name=name, on_done=done, on_fail=fail)

        dialog = NewDomainDialog(self, submit=submit)
        self._open(dialog, "new-domain")

    def do_new_mailbox(self) -> None:
        if not self._enabled("new_mailbox"):
            return
        domain = self.context_domain(self.targets())
        node = self.tree_model.domain_node(domain)
        display = str(node.data.get("display_name") or domain) if node else domain
        dialog: NewMailboxDialog

        def submit(values: dict[str, Any], ok: Any, fail: Any) -> None:
            ops.add_mailbox(self.client, parent=dialog, address=values["address"], password=values["password"],
                            create_user=values["create_user"], on_done=ok, on_fail=fail)

        dialog = NewMailboxDialog(self, domain=domain, display_domain=display,
                                  auth=str(self.server_settings.get("auth", "passwordfile")),
                                  create_user_default=bool(self.server_settings.get("createuser", False)),
                                  submit=submit)
        dialog.accepted.connect(lambda: self._mailbox_created(getattr(dialog, "created_info", None)
                                                              or {"address": dialog.address}))
        self._open(dialog, "new-mailbox")

    def _mailbox_created(self, info: dict[str, Any]) -> None:
        if stored_flag(self.settings, "confirm/hide_mailbox_created", False):
            return
        address = str(info.get("address"))
        name, _, domain = address.partition("@")
        rows = client_settings(dict({"name": name, "domain": domain}, **info),
                               hostname=str(self.server_info.get("hostname") or "this server"),
                               auth=str(self.server_settings.get("auth", "passwordfile")),
                               spa_required=bool(self.server_settings.get("sparequired", True)),
                               ports=self.listener_ports())
        dialog = MailboxCreatedDialog(self, rows, address=address)
        dialog.finished.connect(lambda _r: self.settings.setValue("confirm/hide_mailbox_created",
                                                                  dialog.dont_show.isChecked()))
        self._open(dialog, "new-mailbox")

    def listener_ports(self) -> dict[str, int]:
        """Port per listener: the service's report when we have it, else the settings."""
        ports: dict[str, int] = {}
        for item in self.server_info.get("listeners") or []:
            if isinstance(item, dict) and item.get("name"):
                ports[str(item["name"])] = int(item.get("port") or 0) if item.get("state") != "disabled" else 0
        s = self.server_settings
        for spec in MAIL_LISTENERS:
            name, key = spec.name, spec.port_setting
            if name not in ports and key in s:
                ports[name] = int(s[key] or 0)
        return ports

    def _batch(self, targets: list[Target], verb: str) -> None:
        kind = targets[0].kind
        sender = {
            (NodeKind.DOMAIN, "lock"): lambda k, **kw: ops.lock_domain(self.client, parent=self, name=k, **kw),
            (NodeKind.DOMAIN, "unlock"): lambda k, **kw: ops.unlock_domain(self.client, parent=self, name=k, **kw),
            (NodeKind.MAILBOX, "lock"): lambda k, **kw: ops.lock_mailbox(self.client, parent=self, address=k, **kw),
            (NodeKind.MAILBOX, "unlock"): lambda k, **kw: ops.unlock_mailbox(self.client, parent=self, address=k,
                                                                             **kw),
        }[(kind, verb)]
        if verb == "lock":
            keys = [t.key for t in targets if not t.locked]
        else:
            keys = [t.key for t in targets if t.locked and not t.data.get("domain_locked")]
        ops.for_each(keys, sender, parent=self, doing=f"{verb} {len(keys)} {kind.noun(len(keys))}")

    def do_lock(self) -> None:
        if self._enabled("lock"):
            self._batch(self.targets(), "lock")

    def do_unlock(self) -> None:
        if self._enabled("unlock"):
            self._batch(self.targets(), "unlock")

    def do_delete(self) -> None:
        if not self._enabled("delete"):
            return
        targets = self.targets()
        dialog = ConfirmDeleteDialog(self, targets, auth=str(self.server_settings.get("auth", "passwordfile")))

        def confirmed() -> None:
            with_users = not dialog.delete_user.isHidden() and dialog.delete_user.isChecked()
            keys = [t.key for t in targets]
            if targets[0].kind is NodeKind.DOMAIN:
                send = lambda k, **kw: ops.delete_domain(self.client, parent=self, name=k,  # noqa: E731
                                                         delete_users=with_users, **kw)
            else:
                send = lambda k, **kw: ops.delete_mailbox(self.client, parent=self, address=k,  # noqa: E731
                                                          delete_user=with_users, **kw)
            ops.for_each(keys, send, parent=self, doing=f"delete {len(keys)} {targets[0].kind.noun(len(keys))}")

        dialog.accepted.connect(confirmed)
        self._open(dialog, "delete")

    def do_change_password(self) -> None:
        if not self._enabled("change_password"):
            return
        address = self.targets()[0].key
        dialog: ChangePasswordDialog

        def submit(password: str, ok: Any, fail: Any) -> None:
            ops.change_password(self.client, parent=dialog, address=address, password=password,
                                on_done=ok, on_fail=fail)

        dialog = ChangePasswordDialog(self, address=address, submit=submit)
        self._open(dialog, "mailbox")

    def do_properties(self) -> None:
        if not self._enabled("properties"):
            return
        target = self.targets()[0]
        if target.kind is NodeKind.SERVER:
            # Read the settings fresh: the dialog must start from what the server has now.
            self.client.request("settings.get", {}, self._open_server_properties,
                                lambda e: error_box.show_error(self, e, doing="read the server properties"))
        elif target.kind is NodeKind.DOMAIN:
            self._open(DomainPropertiesDialog(self, target.data), "domain")
        elif target.kind is NodeKind.MAILBOX:
            self._open(MailboxPropertiesDialog(self, target.data, client=self.client), "mailbox")

    def _open_server_properties(self, values: dict[str, Any]) -> None:
        self.server_settings = dict(values)

        def open_with(described: list[dict[str, Any]] | None) -> None:
            dialog = ServerPropertiesDialog(self, client=self.client, settings=values,
                                            domain_count=self.tree_model.domain_total,
                                            hostname=str(self.server_info.get("hostname") or ""),
                                            restart_listeners=self.restart_listeners, described=described,
                                            listeners=self.server_info.get("listeners"))
            self._open(dialog, "server-properties")

        # The service's own descriptions: the settings its modules register are editable too.
        self.client.request("settings.describe", {}, lambda r: open_with((r or {}).get("items")),
                            lambda _e: open_with(None))

    def restart_listeners(self, names: list[str]) -> None:
        for name in names:
            ops._send(self.client, "service.control", {"action": "stop", "listener": name}, parent=self,
                      doing=f"restart the {name} listener",
                      on_done=lambda _r, name=name: ops._send(
                          self.client, "service.control", {"action": "start", "listener": name}, parent=self,
                          doing=f"restart the {name} listener"))

    def do_refresh(self) -> None:
        if self.client.is_connected:
            self.client.request("service.status", {}, self._apply_status, self._load_failed)
            self.refresh_lists()
        else:
            self.client.retry_now()

    def _control(self, action: str) -> None:
        if self._enabled(action):
            ops.control_service(self.client, parent=self, action=action, on_done=self._apply_status)

    def do_start(self) -> None:
        self._control("start")

    def do_stop(self) -> None:
        self._control("stop")

    def do_pause(self) -> None:
        self._control("pause")

    def do_resume(self) -> None:
        self._control("resume")

    def do_restart(self) -> None:
        if self._enabled("restart"):
            ops.restart_service(self.client, parent=self, on_done=self._apply_status)

    def do_help(self) -> None:
        kinds = {t.kind for t in self.targets()}
        topic = next(iter(kinds)).help_topic() if len(kinds) == 1 else self.current_node().kind.help_topic()
        if self.current_node().kind is NodeKind.SERVER and self.server_tabs.currentWidget() is self.status_view:
            topic = "status"
        self.show_help(topic)

    def show_help(self, topic: str) -> None:
        if self.help_window is None:
            self.help_window = HelpWindow(self)
        self.help_window.show_topic(topic)

    def do_connect(self) -> None:
        self.server_switch.open_dialog()

    def switch_data_dir(self, data_dir: Path) -> None:
        """Manage the service of another data directory on this computer."""
        if data_dir == getattr(self.client, "data_dir", None) and not getattr(self.client, "is_remote", False):
            return
        self.server_switch.connect_local(data_dir)

    # -- the outgoing queue, bans and the relay test (what the POP3 and SMTP work added) ----------
    def _build_service_panes(self) -> None:
        self.queue_view = QueueView(self.client)
        self.bans_view = BansView(self.client)
        self.tokens_view = TokensView(self.client, lambda: self.server_info)
        self.server_tabs.addTab(self.queue_view, "Queue")
        self.server_tabs.addTab(self.bans_view, "Bans")
        self.server_tabs.addTab(self.tokens_view, "Remote Admin")
        self.relay_action = QAction("Test for Open &Relay…", self)
        self.relay_action.setStatusTip("Try the classic open-relay tricks against this server's SMTP port")
        self.relay_action.triggered.connect(self.do_relay_test)
        self.client.event_received.connect(self._service_pane_event)

    def _service_pane_event(self, name: str, _data: Any) -> None:
        if name.startswith("ban.") and self.bans_view.isVisible():
            self.bans_view.refresh()

    def do_relay_test(self) -> None:
        if not self.client.is_connected:
            self.statusBar().showMessage("The console is not connected to the POP3 Service.", 5000)
            return
        dialog = RelayTestDialog(self)
        self._open(dialog, "server")
        ops.relay_test(self.client, parent=dialog, on_done=dialog.show_results,
                       on_fail=lambda e: dialog.show_error(getattr(e, "message", str(e))))

    def do_about(self) -> None:
        box = QMessageBox(QMessageBox.Icon.Information, "About POP3 Service",
                          "<b>POP3 Service</b><br>A point-and-click POP3 and SMTP mail server, after the Windows "
                          "Server 2003 POP3 Service and its snap-in.", QMessageBox.StandardButton.Ok, self)
        self.dialog = box
        box.open()

    # -- status bar --------------------------------------------------------------------------------
    def _update_counts(self, *_args: Any) -> None:
        pane = self.current_pane()
        if pane is None:
            self.count_label.setText("")
            return
        model = pane.model
        noun = pane.noun if model.total != 1 else {"mailboxes": "mailbox", "domains": "domain"}[pane.noun]
        text = f"{model.total:,} {noun}"
        if model.filter_text:
            text += f" matching “{model.filter_text}”"
        if model.rowCount() < model.total:
            text += f" ({model.rowCount():,} loaded)"
        if model.loading:
            text += " — loading…"
        self.count_label.setText(text)

    # -- layout persistence ------------------------------------------------------------------------------
    def _restore_layout(self) -> None:
        s = self.settings
        geometry = s.value("window/geometry")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        state = s.value("window/state")
        if isinstance(state, QByteArray):
            self.restoreState(state)
        splitter = s.value("window/splitter")
        if isinstance(splitter, QByteArray):
            self.splitter.restoreState(splitter)
        for key, pane in (("columns/domains", self.domain_pane), ("columns/mailboxes", self.mailbox_pane)):
            header = s.value(key)
            if isinstance(header, QByteArray):
                pane.view.header().restoreState(header)
        self.statusbar_action.setChecked(stored_flag(s, "view/statusbar", True))
        self.tree_action.setChecked(stored_flag(s, "view/tree", True))
        last = s.value("tree/last")
        if isinstance(last, str) and last:
            self._restore_path = last.split("/")

    def save_layout(self) -> None:
        s = self.settings
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/state", self.saveState())
        s.setValue("window/splitter", self.splitter.saveState())
        s.setValue("columns/domains", self.domain_pane.view.header().saveState())
        s.setValue("columns/mailboxes", self.mailbox_pane.view.header().saveState())
        s.setValue("view/statusbar", self.statusbar_action.isChecked())
        s.setValue("view/tree", self.tree_action.isChecked())
        s.setValue("tree/last", "/".join(self.tree_model.path_of(self.current_node())))
        s.sync()

    def _maybe_restore_selection(self) -> None:
        if not self._restore_path:
            return
        node = self.tree_model.node_at(self._restore_path)
        if node is not None:
            self._restore_path = None
            self.tree.setCurrentIndex(self.tree_model.index_of(node))
        elif self.tree_model.loaded and self.tree_model.domain_total <= len(self.tree_model.server.children):
            self._restore_path = None   # it is gone

    def closeEvent(self, event: QCloseEvent) -> None:
        self.save_layout()
        if self.help_window is not None:
            self.help_window.close()
        super().closeEvent(event)
