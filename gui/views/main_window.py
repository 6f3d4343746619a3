"""The snap-in window: scope pane (tree) left, result pane right, menus, toolbar, status bar.

Actions live here and one ``update_actions`` slot follows the selection of the focused pane.
Every action is a function in ``gui.ops``; the models follow the service's change events.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from PySide6.QtCore import (
    QByteArray,
    QEvent,
    QItemSelectionModel,
    QModelIndex,
    QObject,
    QPoint,
    QSettings,
    Qt,
    QTimer,
)
from PySide6.QtGui import QAction, QCloseEvent, QContextMenuEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QDialog,
    QLabel,
    QMainWindow,
    QMenu,
    QSplitter,
    QToolBar,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from gui import icons
from gui.controller import ConsoleController
from gui.dialogs.form import text_scaled
from gui.dialogs.options import OptionsDialog, stored_flag
from gui.models.nodes import ActionState, NodeKind, Target, action_states
from gui.models.tree_model import Node
from gui.views.banner import ConnectionBanner
from gui.views.help_window import HelpWindow
from gui.views.item_commands import ItemCommands
from gui.views.list_pane import ListPane
from gui.views.result_pane import ResultPane
from gui.views.server_switch import ServerSwitch
from gui.wizard import console as wizard_console

APP_TITLE = "POP3 Service"

# name: (text, icon, shortcut, status tip)
ACTION_SPECS: dict[str, tuple[str, str, str, str]] = {
    "new_domain": ("New &Domain…", "domain", "", "Create an e-mail domain on this server"),
    "new_mailbox": ("New &Mailbox…", "mailbox", "", "Create a mailbox in the selected domain"),
    "lock": ("&Lock", "lock", "", "Lock: no logon, mail is still delivered"),
    "unlock": ("&Unlock", "unlock", "", "Unlock: allow logons again"),
    "delete": ("&Delete", "delete", "Del", "Delete the selected items and their mail"),
    "change_password": ("Change &Password…", "password", "", "Set a new password for the mailbox"),
    "client_settings": ("Mail &Client Settings…", "mailbox", "",
                        "What to type into the user's mail client: servers, ports, encryption, account name"),
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


class MainWindow(QMainWindow):
    """The POP3 Service console: the tree, the result pane, the actions and the window's layout."""

    def __init__(self, client: Any, *, settings: QSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.client = client
        self.settings = settings
        self.dialog: QDialog | None = None           # the dialog opened last (tests look here)
        self._active_pane = "tree"
        self._restore_path: list[str] | None = None
        self._select_when_added = ""
        self.help_window: HelpWindow | None = None
        self.last_menu: QMenu | None = None

        self.controller = ConsoleController(client, parent=self)
        self.tree_model = self.controller.tree_model
        self.domain_model = self.controller.domain_model
        self.mailbox_model = self.controller.mailbox_model
        self.commands = ItemCommands(self, self.controller, settings)
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
        # This computer or another; the remembered servers under the root of the tree.
        self.server_switch = ServerSwitch(self, client, settings=settings, tree_model=self.tree_model, parent=self)
        self.update_actions()
        self.controller.start()

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

        self.stack = ResultPane(self.controller)
        self.domain_pane = self.stack.domain_pane
        self.mailbox_pane = self.stack.mailbox_pane
        self.server_tabs = self.stack.server_tabs
        self.status_view = self.stack.status_view
        self.queue_view = self.stack.queue_view
        self.bans_view = self.stack.bans_view
        self.tokens_view = self.stack.tokens_view

        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(self.tree)
        self.splitter.addWidget(self.stack)
        self.splitter.setStretchFactor(1, 1)
        # The tree grows with the text (domain names stay whole at 150 %); the result pane takes the rest.
        self.splitter.setSizes([text_scaled(self, 250, 1).width(), 650])
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
        self.resize(text_scaled(self, 960, 620))

    def _build_actions(self) -> None:
        self.named_actions: dict[str, QAction] = {}   # by name (actions() is the QWidget method)
        for name, (text, icon_name, shortcut, tip) in ACTION_SPECS.items():
            action = QAction(icons.icon(icon_name), text, self)
            if shortcut:
                action.setShortcut(QKeySequence(shortcut))
            action.setStatusTip(tip)
            action.setToolTip(text.replace("&", "").rstrip("…"))
            action.setProperty("base_tip", action.toolTip())
            action.triggered.connect(getattr(self, f"do_{name}"))
            self.addAction(action)
            self.named_actions[name] = action
        # Alt+Enter: the keypad Enter too.
        QShortcut(QKeySequence("Alt+Enter"), self, self.do_properties)
        # Shift+F10 (and the Menu key, see eventFilter): the context menu of the focused tree or list.
        QShortcut(QKeySequence("Shift+F10"), self, self.keyboard_context_menu)
        self.connect_action = QAction("&Connect to Another Computer…", self)
        self.connect_action.triggered.connect(self.do_connect)
        self.exit_action = QAction("E&xit", self)
        self.exit_action.setShortcut(QKeySequence.StandardKey.Quit)
        self.exit_action.triggered.connect(self.close)
        self.about_action = QAction("&About POP3 Service", self)
        self.about_action.triggered.connect(self.do_about)
        self.find_action = QAction("F&ilter the List", self)
        self.find_action.setShortcut(QKeySequence.StandardKey.Find)
        self.find_action.triggered.connect(self._focus_filter)
        self.addAction(self.find_action)
        self.relay_action = QAction("Test for Open &Relay…", self)
        self.relay_action.setStatusTip("Try the classic open-relay tricks against this server's SMTP port")
        self.relay_action.triggered.connect(self.do_relay_test)
        self.options_action = QAction("&Options…", self)
        self.options_action.setStatusTip("Show the messages you turned off again; forget remembered computers")
        self.options_action.triggered.connect(self.do_options)

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
                     None, "start", "stop", "pause", "resume", "restart", None, "help"):
            if name is None:
                self.toolbar.addSeparator()
            else:
                self.toolbar.addAction(self.named_actions[name])
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
        view_menu.addAction(self.named_actions["refresh"])
        view_menu.addSeparator()
        view_menu.addAction(self.options_action)
        help_menu = bar.addMenu("&Help")
        help_menu.addAction(self.named_actions["help"])
        help_menu.addSeparator()
        help_menu.addAction(self.about_action)

    def _wire(self) -> None:
        c = self.controller
        c.connection_changed.connect(self._connection_changed)
        c.lists_outdated.connect(self._reload_lists)
        c.server_info_changed.connect(self._server_info_changed)
        c.status_changed.connect(self.status_view.apply_status)
        c.logging_level_changed.connect(self.status_view.set_logging_level)
        c.facts_changed.connect(self.update_actions)
        c.message.connect(self.show_message)
        c.event_arrived.connect(self._event_arrived)
        c.event_applied.connect(self._event_applied)
        self.tree.selectionModel().currentChanged.connect(self._on_node_changed)
        self.tree.customContextMenuRequested.connect(self._tree_menu)
        self.tree.installEventFilter(self)
        self.tree_model.domains_loaded.connect(self._maybe_restore_selection)
        self.tree_model.load_failed.connect(c.report_read_failure)
        self.tree_model.rowsRemoved.connect(self._schedule_update)
        for pane in (self.domain_pane, self.mailbox_pane):
            pane.view.selectionModel().selectionChanged.connect(self._list_selection_changed)
            pane.view.customContextMenuRequested.connect(partial(self._list_menu, pane))
            # activated alone: a double-click emits doubleClicked and then activated (Enter only
            # activated), so listening to both opened two Properties dialogs.
            pane.view.activated.connect(partial(self._list_activated, pane))
            pane.view.installEventFilter(self)
            pane.model.total_changed.connect(self._update_counts)
            pane.model.loading_changed.connect(self._update_counts)
            pane.model.load_failed.connect(c.report_read_failure)
            pane.model.dataChanged.connect(self._schedule_update)
            pane.model.modelReset.connect(self._schedule_update)
        self.mailbox_model.domain_gone.connect(self._domain_gone)
        self.server_tabs.currentChanged.connect(lambda _i: self._set_active_pane("list"))
        app = QApplication.instance()
        if isinstance(app, QApplication):   # always, in the console
            app.focusChanged.connect(self._focus_changed)
        self.banner.retry_button.clicked.connect(c.retry_now)
        self.banner.start_button.clicked.connect(self.start_service_process)

    # -- what the controller reports -----------------------------------------------------------------
    def _connection_changed(self, connected: bool) -> None:
        if connected:
            self.banner.setVisible(False)
            self.connection_label.setText(f"Connected: {self.client.target}")
            return
        if self.controller.connecting:
            # Going to another server: the one left behind is not "not reachable"; the banner
            # waits for the outcome of the first attempt on the new one.
            self.banner.setVisible(False)
            self.connection_label.setText(f"Connecting to {self.client.target}…")
            self.setWindowTitle(APP_TITLE)
            self.stack.set_server_label(self.tree_model.server.label)
        else:
            self.banner.show_message(self.controller.disconnect_text(), can_start=not self.controller.is_remote)
            self.connection_label.setText("Not connected")
        self.update_actions()

    def _reload_lists(self) -> None:
        self.refresh_lists()
        self.update_actions()

    def _server_info_changed(self, info: dict[str, Any]) -> None:
        self.stack.apply_server_info(info)
        self.setWindowTitle(f"{APP_TITLE} - [{info.get('hostname') or 'this computer'}]")
        self.stack.set_server_label(self.tree_model.server.label)
        self._update_counts()

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
        self.stack.refresh_status()

    def _event_arrived(self, name: str, data: dict[str, Any]) -> None:
        if name == "domain.deleted" and self.current_node().key == data.get("name") \
                and self.current_node().kind is NodeKind.DOMAIN:
            # Go up to the server first, as MMC does, rather than to whichever neighbour Qt picks.
            self.select_server()
            self.show_message(f"The domain {data.get('name')} was deleted.", 5000)

    def _event_applied(self, name: str, data: dict[str, Any]) -> None:
        if name == "domain.added" and data.get("name") == self._select_when_added:
            self._select_when_added = ""
            self.select_domain(str(data["name"]))
        if name.startswith("domain.") and self.current_node().kind is NodeKind.DOMAIN:
            self.stack.show_domain_note(self.current_node())
        self._schedule_update()

    def _domain_gone(self, name: str) -> None:
        self.show_message(f"The domain {name} was deleted.", 5000)
        self.select_server()

    # -- what the wizard, the server switch and the item commands ask (gui.views.host) ---------------
    def dialog_parent(self) -> QWidget:
        """Dialogs and message boxes belong to the window."""
        return self

    def open_dialog(self, dialog: QDialog, topic: str) -> QDialog:
        """Open ``dialog`` (deleted when closed, F1 opens help ``topic``)."""
        self.dialog = dialog
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        QShortcut(QKeySequence("F1"), dialog, lambda: self.show_help(topic))
        dialog.open()
        return dialog

    def show_dialog(self, dialog: QDialog) -> None:
        """Open a message box or wizard the caller keeps."""
        self.dialog = dialog
        dialog.open()

    def show_message(self, text: str, timeout_ms: int) -> None:
        """A line in the status bar."""
        self.statusBar().showMessage(text, timeout_ms)

    def select_server(self) -> None:
        """Select the server node."""
        self.tree.setCurrentIndex(self.tree_model.index_of(self.tree_model.server))

    def select_domain(self, name: str) -> bool:
        """Select the domain ``name``; False when the tree does not list it (yet)."""
        node = self.tree_model.domain_node(name)
        if node is None:
            return False
        self.tree.setCurrentIndex(self.tree_model.index_of(node))
        return True

    def select_domain_when_added(self, name: str) -> None:
        """Select ``name`` now, or when its ``domain.added`` event arrives (a new domain)."""
        if not self.select_domain(name):
            self._select_when_added = name

    def select_domain_when_loaded(self, name: str) -> None:
        """Select ``name`` now, or when a page of the tree lists it (after the first setup)."""
        def select() -> None:
            if self.select_domain(name):
                try:
                    self.tree_model.domains_loaded.disconnect(select)
                except (RuntimeError, TypeError):
                    pass
        self.tree_model.domains_loaded.connect(select)
        select()

    def show_mailbox_created(self, info: dict[str, Any]) -> None:
        """The client settings of a new mailbox (after New Mailbox, or after the first setup)."""
        self.commands.mailbox_created(info)

    def show_first_mailbox(self, domain: str, mailbox: dict[str, Any]) -> None:
        """After the first setup: the new domain, and the client settings of its first mailbox."""
        wizard_console.show_first_mailbox(self, domain, mailbox)

    def start_service_process(self) -> None:
        """Offer of the banner: start this user's own service for this data directory (background mode)."""
        wizard_console.start_background_service(self)

    # -- selection -----------------------------------------------------------------------------------
    def current_node(self) -> Node:
        """The tree's selected node (the server while nothing below the root is selected)."""
        idx = self.tree.currentIndex()
        node = self.tree_model.node(idx) if idx.isValid() else self.tree_model.server
        return node if node.parent is not None else self.tree_model.server

    def current_pane(self) -> ListPane | None:
        """The list shown for the selected node, if any."""
        return self.stack.list_for(self.current_node())

    def targets(self) -> list[Target]:
        """What an action applies to: the list's selection when the list is active, else the tree node."""
        pane = self.current_pane()
        if self._active_pane == "list" and pane is not None:
            rows = pane.selected_rows()
            if rows:
                return [pane.model.target(r) for r in rows]
        return [self.current_node().target()]

    def context_domain(self, targets: list[Target]) -> str:
        """The one domain the targets are in (where New Mailbox adds), or ""."""
        for t in targets:
            if t.domain:
                return t.domain if len({x.domain for x in targets}) == 1 else ""
        node = self.current_node()
        return node.key if node.kind is NodeKind.DOMAIN else ""

    def _on_node_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        node = self.current_node()
        if node.kind is NodeKind.REMOTE:
            self.server_switch.node_selected(node.key)   # selects the server node when it switches
            return
        if node.kind is NodeKind.SERVER and not self.domain_model.fully_loaded and not self.domain_model.loading \
                and self.client.is_connected:
            self.domain_model.reload()
        self.stack.show_node(node)
        self._active_pane = "tree"
        self._update_counts()
        self.update_actions()

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
        """Enabled or not, and why, for each action on the current targets."""
        targets = self.targets()
        return action_states(targets, connected=self.client.is_connected,
                             context_domain=self.context_domain(targets),
                             service_state=self.controller.service_state)

    def update_actions(self) -> None:
        """The one slot that makes the actions follow the selection and the service."""
        for name, state in self.action_state().items():
            action = self.named_actions[name]
            action.setEnabled(state.enabled)
            base = action.property("base_tip")
            action.setToolTip(base if state.enabled else f"{base}: {state.reason}")
        node = self.current_node()
        self.named_actions["help"].setData(node.kind.help_topic())

    def _fill_menu(self, menu: QMenu, targets: list[Target]) -> None:
        """The context menu and the Action menu, derived from the kinds of the targets."""
        self.update_actions()
        menu.clear()
        kinds = {t.kind for t in targets}
        kind = next(iter(kinds)) if len(kinds) == 1 else None
        if kind is NodeKind.ROOT:
            # As the snap-in's root node: the way to another computer's POP3 Service.
            menu.addAction(self.connect_action)
            menu.addSeparator()
        new_menu = menu.addMenu("&New")
        new_menu.addAction(self.named_actions["new_domain"])
        new_menu.addAction(self.named_actions["new_mailbox"])
        if kind is not None and kind.can_lock():
            menu.addSeparator()
            menu.addAction(self.named_actions["lock"])
            menu.addAction(self.named_actions["unlock"])
        if kind is not None and kind.can_change_password():
            menu.addAction(self.named_actions["change_password"])
            menu.addAction(self.named_actions["client_settings"])
        if kind is not None and kind.controls_service():
            tasks = menu.addMenu("All Tas&ks")
            tasks.setToolTipsVisible(True)
            for name in SERVICE_ACTIONS:
                tasks.addAction(self.named_actions[name])
            tasks.addSeparator()
            tasks.addAction(self.relay_action)
        menu.addSeparator()
        if kind is not None and kind.can_delete():
            menu.addAction(self.named_actions["delete"])
        menu.addAction(self.named_actions["refresh"])
        if kind is not None and kind.has_properties():
            menu.addSeparator()
            menu.addAction(self.named_actions["properties"])
        menu.addSeparator()
        menu.addAction(self.named_actions["help"])

    def context_menu(self) -> QMenu:
        """The context menu for the current targets."""
        menu = QMenu(self)
        menu.setToolTipsVisible(True)
        self._fill_menu(menu, self.targets())
        return menu

    def remote_menu(self, node: Node) -> QMenu:
        """The menu of a remembered server: connect to it, or remove it (not this computer)."""
        menu = QMenu(self)
        menu.setToolTipsVisible(True)
        connect = menu.addAction(icons.icon("server"), f"&Connect to {node.label}")
        connect.triggered.connect(lambda: self.server_switch.node_selected(node.key))
        if self.server_switch.can_remove(node.key):
            remove = menu.addAction(icons.icon("delete"), "&Remove from Console")
            remove.setToolTip("Forget this computer, its admin token and the certificate you trusted")
            remove.triggered.connect(lambda: self.server_switch.remove(node.key))
        menu.addSeparator()
        menu.addAction(self.named_actions["help"])
        return menu

    def _tree_menu(self, pos: Any) -> None:
        idx = self.tree.indexAt(pos)
        if idx.isValid() and self.tree_model.node(idx).kind is NodeKind.REMOTE:
            # Not selected first: selecting a remembered server connects to it.
            self.last_menu = self.remote_menu(self.tree_model.node(idx))
            self.last_menu.popup(self.tree.viewport().mapToGlobal(pos))
            return
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

    def keyboard_context_menu(self) -> None:
        """Shift+F10 or the Menu key: the context menu of the focused tree or list, at its current item."""
        if self.last_menu is not None and self.last_menu.isVisible():
            return   # a platform that turns Shift+F10 into a context-menu event as well: one menu
        focus = QApplication.focusWidget()
        panes = {pane.view: pane for pane in (self.domain_pane, self.mailbox_pane)}
        if focus in panes:
            pane = panes[focus]
            self._set_active_pane("list")
            rows = pane.selected_rows()
            current = pane.view.currentIndex()
            row = current.row() if current.isValid() and current.row() in rows else (rows[0] if rows else -1)
            rect = pane.view.visualRect(pane.model.index(row, 0)) if row >= 0 else None
            self._popup_menu(pane.view, rect.bottomLeft() if rect is not None else None)
        elif focus is self.tree:
            self._set_active_pane("tree")
            rect = self.tree.visualRect(self.tree.currentIndex())
            self._popup_menu(self.tree, rect.bottomLeft() if rect.isValid() else None)

    def _popup_menu(self, view: QAbstractItemView, pos: QPoint | None) -> None:
        self.last_menu = self.context_menu()
        viewport = view.viewport()
        self.last_menu.popup(viewport.mapToGlobal(pos if pos is not None else QPoint(4, 4)))

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        """The Menu key on the tree and the lists: the same menu as Shift+F10, at the current item
        (Qt would place it at the middle of the view)."""
        if isinstance(event, QContextMenuEvent) and event.reason() == QContextMenuEvent.Reason.Keyboard:
            self.keyboard_context_menu()
            return True
        return super().eventFilter(watched, event)

    def _focus_filter(self) -> None:
        pane = self.current_pane()
        if pane is not None:
            pane.filter.setFocus()
            pane.filter.selectAll()

    def _enabled(self, name: str) -> bool:
        state = self.action_state()[name]
        if not state.enabled:
            self.show_message(state.reason, 5000)
        return state.enabled

    # -- actions: doing ------------------------------------------------------------------------------
    def do_new_domain(self) -> None:
        if self._enabled("new_domain"):
            self.commands.new_domain()

    def do_new_mailbox(self) -> None:
        if self._enabled("new_mailbox"):
            self.commands.new_mailbox(self.context_domain(self.targets()))

    def do_lock(self) -> None:
        if self._enabled("lock"):
            self.commands.lock(self.targets(), "lock")

    def do_unlock(self) -> None:
        if self._enabled("unlock"):
            self.commands.lock(self.targets(), "unlock")

    def do_delete(self) -> None:
        if self._enabled("delete"):
            self.commands.delete(self.targets())

    def do_change_password(self) -> None:
        if self._enabled("change_password"):
            self.commands.change_password(self.targets()[0].key)

    def do_client_settings(self) -> None:
        if self._enabled("client_settings"):
            self.commands.client_settings(self.targets()[0])

    def do_options(self) -> None:
        """View > Options: messages turned off, remembered computers."""
        dialog = OptionsDialog(self, self.settings, computers=self.server_switch.removable(),
                               remove_computer=self.server_switch.remove)
        self.open_dialog(dialog, "options")

    def do_properties(self) -> None:
        if self._enabled("properties"):
            self.commands.properties(self.targets()[0])

    def do_refresh(self) -> None:
        self.controller.refresh()

    def do_start(self) -> None:
        if self._enabled("start"):
            self.controller.control("start")

    def do_stop(self) -> None:
        if self._enabled("stop"):
            self.commands.end_sessions_first("stop", lambda: self.controller.control("stop"))

    def do_pause(self) -> None:
        if self._enabled("pause"):
            self.controller.control("pause")

    def do_resume(self) -> None:
        if self._enabled("resume"):
            self.controller.control("resume")

    def do_restart(self) -> None:
        if self._enabled("restart"):
            self.commands.end_sessions_first("restart", self.controller.restart_service)

    def do_help(self) -> None:
        kinds = {t.kind for t in self.targets()}
        topic = next(iter(kinds)).help_topic() if len(kinds) == 1 else self.current_node().kind.help_topic()
        topic = self.stack.tab_help_topic(self.current_node()) or topic
        self.show_help(topic)

    def show_help(self, topic: str) -> None:
        """The help window on ``topic``."""
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

    def do_setup_wizard(self) -> None:
        """File → Set Up the Server: the setup wizard for ports, certificate and storage."""
        wizard_console.open_setup_wizard(self)

    def do_relay_test(self) -> None:
        self.commands.relay_test()

    def do_about(self) -> None:
        self.commands.about()

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
        """Geometry, splitter, columns, what is shown and the selected node, for the next start."""
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
