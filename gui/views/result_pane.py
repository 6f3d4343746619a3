"""The console's result pane: what the tree's selection shows on the right."""
from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import (
    QLabel,
    QStackedWidget,
    QTabWidget,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from gui.controller import ConsoleController
from gui.models.nodes import NodeKind
from gui.models.tree_model import Node
from gui.views.bans_view import BansView
from gui.views.list_pane import ListPane
from gui.views.queue_view import QueueView
from gui.views.status_view import StatusView
from gui.views.tokens_view import TokensView

INTRO = ("<h3>POP3 Service</h3><p>Use the POP3 Service to create e-mail domains and mailboxes, "
         "lock and unlock them, and control the mail service. Select the server below, or in the "
         "tree, to see its domains.</p>")


class ResultPane(QStackedWidget):
    """The root page (the servers), the server's tabs (domains, status, queue, bans, tokens), or a domain's
    mailboxes."""

    def __init__(self, controller: ConsoleController, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        client = controller.client
        tree_model = controller.tree_model
        self.root_page = QWidget()
        intro = QLabel(INTRO)
        intro.setWordWrap(True)
        self.server_list = QTreeView()
        self.server_list.setModel(tree_model)
        self.server_list.setRootIndex(tree_model.index_of(tree_model.root))
        self.server_list.setRootIsDecorated(False)
        self.server_list.setItemsExpandable(False)
        self.server_list.setHeaderHidden(True)
        page = QVBoxLayout(self.root_page)
        page.addWidget(intro)
        page.addWidget(self.server_list, 1)

        self._mailbox_model = controller.mailbox_model
        self.domain_pane = ListPane(controller.domain_model, noun="domains")
        self.mailbox_pane = ListPane(controller.mailbox_model, noun="mailboxes")
        self.status_view = StatusView(client)
        self.queue_view = QueueView(client)
        self.bans_view = BansView(client)
        self.tokens_view = TokensView(client, lambda: controller.server_info)
        self.server_tabs = QTabWidget()
        self.server_tabs.setTabPosition(QTabWidget.TabPosition.South)
        self.server_tabs.addTab(self.domain_pane, "Domains")
        self.server_tabs.addTab(self.status_view, "Service Status")
        self.server_tabs.addTab(self.queue_view, "Queue")
        self.server_tabs.addTab(self.bans_view, "Bans")
        self.server_tabs.addTab(self.tokens_view, "Remote Admin")
        for w in (self.root_page, self.server_tabs, self.mailbox_pane):
            self.addWidget(w)
        client.event_received.connect(self._on_event)

    def show_node(self, node: Node) -> None:
        """Show the page of the tree's selected node (the mailbox list follows its domain)."""
        if node.kind is NodeKind.ROOT:
            self.setCurrentWidget(self.root_page)
        elif node.kind is NodeKind.SERVER:
            self.setCurrentWidget(self.server_tabs)
            self.set_server_label(node.label)
        elif node.kind is NodeKind.DOMAIN:
            self.setCurrentWidget(self.mailbox_pane)
            self.mailbox_pane.title.setText(f"Mailboxes in {node.label}")
            model = self._mailbox_model
            if model.domain != node.key:
                self.mailbox_pane.filter.blockSignals(True)
                self.mailbox_pane.filter.clear()
                self.mailbox_pane.filter.blockSignals(False)
                model._filter = ""      # the box was cleared without its signal: no reload for the old domain
                model.set_domain(node.key)
            self.show_domain_note(node)

    def set_server_label(self, label: str) -> None:
        """The title of the domain list names the server."""
        self.domain_pane.title.setText(f"Domains on {label}")

    def show_domain_note(self, node: Node) -> None:
        """Above the mailboxes of a locked domain: why none of them can log on."""
        locked = node.kind is NodeKind.DOMAIN and bool(node.data.get("locked"))
        self.mailbox_pane.note.setText(f"The domain {node.label} is locked: none of its mailboxes can log on "
                                       "(mail is still delivered). Unlock the domain to unlock its mailboxes.")
        self.mailbox_pane.note.setVisible(locked)

    def list_for(self, node: Node) -> ListPane | None:
        """The list the actions may apply to when ``node`` is selected: the shown domains or mailboxes."""
        if node.kind is NodeKind.SERVER and self.server_tabs.currentWidget() is self.domain_pane:
            return self.domain_pane
        if node.kind is NodeKind.DOMAIN:
            return self.mailbox_pane
        return None

    def status_shown(self, node: Node) -> bool:
        """The Service Status tab is what the user looks at."""
        return node.kind is NodeKind.SERVER and self.server_tabs.currentWidget() is self.status_view

    def tab_help_topic(self, node: Node) -> str | None:
        """The help page of the server tab the user looks at (F1), None for the domain list."""
        if node.kind is not NodeKind.SERVER:
            return None
        topics: dict[QWidget, str] = {self.status_view: "status", self.queue_view: "queue", self.bans_view: "bans",
                                      self.tokens_view: "remote-administration"}
        return topics.get(self.server_tabs.currentWidget())

    def apply_server_info(self, info: dict[str, Any]) -> None:
        """The certificate and key problems on the status page."""
        self.status_view.set_certificate(info.get("tls") or {})
        self.status_view.set_key_problem(str(info.get("key_problem") or ""))

    def refresh_status(self) -> None:
        """Read the status page again when it is shown."""
        if self.status_view.isVisible():
            self.status_view.refresh()

    def _on_event(self, name: str, _data: Any) -> None:
        if name.startswith("ban.") and self.bans_view.isVisible():
            self.bans_view.refresh()
