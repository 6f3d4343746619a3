"""The scope pane: POP3 Service → the server (state badge) → one node per domain (lock badge);
remembered servers (other computers, or this one when managing another) follow the server.

Domains load lazily in pages (``canFetchMore``/``fetchMore``) and then follow the service's
change events; the model never re-reads the list after one of our own requests.
"""
from __future__ import annotations

import bisect
from typing import Any, overload

from PySide6.QtCore import QAbstractItemModel, QModelIndex, QObject, QPersistentModelIndex, Qt, Signal

from gui import icons
from gui.models.nodes import NodeKind, Target

ROOT = QModelIndex()   # the invisible root: the default parent of the Qt API (one value, never changed)
DOMAIN_PAGE = 1000
_NODE_FLAGS = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
STATE_TEXT = {"running": "Running", "paused": "Paused", "stopped": "Stopped", "partial": "Partly running"}


class Node:
    """One node of the scope tree; a plain object, no Qt."""

    __slots__ = ("kind", "key", "data", "parent", "children", "row")

    def __init__(self, kind: NodeKind, key: str = "", data: dict[str, Any] | None = None,
                 parent: Node | None = None) -> None:
        self.kind = kind
        self.key = key
        self.data: dict[str, Any] = data or {}
        self.parent = parent
        self.children: list[Node] = []
        self.row = 0

    def renumber(self, start: int = 0) -> None:
        for i in range(start, len(self.children)):
            self.children[i].row = i

    @property
    def label(self) -> str:
        if self.kind is NodeKind.ROOT:
            return "POP3 Service"
        if self.kind is NodeKind.SERVER:
            return str(self.data.get("hostname") or self.data.get("target") or "(this computer)")
        if self.kind is NodeKind.REMOTE:
            return str(self.data.get("label") or self.key)
        return str(self.data.get("display_name") or self.key)

    def target(self) -> Target:
        return Target(self.kind, self.key, self.data)


class ScopeTreeModel(QAbstractItemModel):
    """The console tree; ``client`` is an ``IpcClient`` (or the fake with the same interface)."""

    domains_loaded = Signal()          # a page of domains arrived
    load_failed = Signal(object)       # a MailError

    def __init__(self, client: Any, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._client = client
        self._invisible = Node(NodeKind.ROOT)
        self.root = Node(NodeKind.ROOT, "root", parent=self._invisible)
        self._invisible.children = [self.root]
        self.server = Node(NodeKind.SERVER, "server", {"state": "unknown"}, parent=self.root)
        self.root.children = [self.server]
        self._domain_total = 0
        self._generation = 0
        self._loading = False
        self._names: list[str] = []     # sorted keys of server.children, for bisect
        self.loaded = False             # a first page has arrived since the last reload

    # -- Qt API ------------------------------------------------------------------------------------
    def index(self, row: int, column: int, parent: QModelIndex | QPersistentModelIndex = ROOT) -> QModelIndex:
        if column != 0 or row < 0:
            return QModelIndex()
        node = self.node(parent) if parent.isValid() else self._invisible
        if row >= len(node.children):
            return QModelIndex()
        return self.createIndex(row, 0, node.children[row])

    @overload
    def parent(self) -> QObject | None: ...
    @overload
    def parent(self, index: QModelIndex | QPersistentModelIndex) -> QModelIndex: ...

    def parent(self, index: QModelIndex | QPersistentModelIndex | None = None) -> QObject | QModelIndex | None:
        """The parent of ``index`` (the model API); without an index, QObject's parent(), which
        shares the name in Python."""
        if index is None:
            return super().parent()
        if not index.isValid():
            return QModelIndex()
        up = self.node(index).parent
        if up is None or up is self._invisible:
            return QModelIndex()
        return self.createIndex(up.row, 0, up)

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = ROOT) -> int:
        if parent.isValid() and parent.column() != 0:
            return 0
        node = self.node(parent) if parent.isValid() else self._invisible
        return len(node.children)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = ROOT) -> int:
        return 1

    def hasChildren(self, parent: QModelIndex | QPersistentModelIndex = ROOT) -> bool:
        if not parent.isValid():
            return True
        node = self.node(parent)
        if node is self.server:
            return bool(node.children) or self._domain_total > 0
        return bool(node.children)

    def canFetchMore(self, parent: QModelIndex | QPersistentModelIndex) -> bool:
        return (parent.isValid() and self.node(parent) is self.server and not self._loading
                and len(self.server.children) < self._domain_total)

    def fetchMore(self, parent: QModelIndex | QPersistentModelIndex) -> None:
        if self.canFetchMore(parent):
            self._request_page(len(self.server.children))

    def flags(self, index: QModelIndex | QPersistentModelIndex) -> Qt.ItemFlag:
        return _NODE_FLAGS if index.isValid() else Qt.ItemFlag.NoItemFlags

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        node = self.node(index)
        if role == Qt.ItemDataRole.DisplayRole:
            if node.kind is NodeKind.SERVER:
                state = node.data.get("state", "unknown")
                return f"{node.label} ({STATE_TEXT[state]})" if state in STATE_TEXT and state != "running" \
                    else node.label
            if node.kind is NodeKind.DOMAIN and node.data.get("locked"):
                return f"{node.label} (locked)"
            return node.label
        if role == Qt.ItemDataRole.DecorationRole:
            if node.kind is NodeKind.ROOT:
                return icons.icon("console")
            if node.kind is NodeKind.SERVER:
                return icons.server_icon(node.data.get("state", "unknown"))
            if node.kind is NodeKind.REMOTE:
                return icons.icon("server")
            return icons.item_icon("domain", locked=bool(node.data.get("locked")))
        if role == Qt.ItemDataRole.ToolTipRole:
            if node.kind is NodeKind.SERVER:
                state = node.data.get("state", "unknown")
                return f"{node.label}: the POP3 Service is {STATE_TEXT.get(state, 'in an unknown state').lower()}"
            if node.kind is NodeKind.REMOTE:
                return f"Select to manage the POP3 Service on {node.label}"
            if node.kind is NodeKind.DOMAIN:
                d = node.data
                return (f"{node.label}: {d.get('mailbox_count', 0):,} mailboxes, "
                        f"{d.get('message_count', 0):,} messages{', locked' if d.get('locked') else ''}")
        if role == Qt.ItemDataRole.UserRole:
            return node.kind.value
        return None

    # -- own API -------------------------------------------------------------------------------------
    def node(self, index: QModelIndex | QPersistentModelIndex) -> Node:
        return index.internalPointer() if index.isValid() else self._invisible

    def index_of(self, node: Node) -> QModelIndex:
        if node is self._invisible or node.parent is None:
            return QModelIndex()
        return self.createIndex(node.row, 0, node)

    def domain_node(self, name: str) -> Node | None:
        i = bisect.bisect_left(self._names, name)
        if i < len(self._names) and self._names[i] == name:
            return self.server.children[i]
        return None

    def path_of(self, node: Node) -> list[str]:
        """A node's path of keys, for QSettings ("root", "server", "example.com")."""
        keys: list[str] = []
        current: Node | None = node
        while current is not self._invisible and current is not None:
            keys.insert(0, current.key)
            current = current.parent
        return keys

    def node_at(self, path: list[str]) -> Node | None:
        node: Node | None = self._invisible
        for key in path:
            if node is self.server:
                node = self.domain_node(key)
            else:
                node = next((c for c in node.children if c.key == key), None) if node else None
            if node is None:
                return None
        return node

    @property
    def domain_total(self) -> int:
        return self._domain_total

    def set_server_info(self, info: dict[str, Any]) -> None:
        self.server.data.update(hostname=info.get("hostname") or "", auth=info.get("auth"))
        idx = self.index_of(self.server)
        self.dataChanged.emit(idx, idx)

    def set_remembered(self, entries: list[tuple[str, str]]) -> None:
        """The remembered servers shown after the server node: (key, label) pairs."""
        old = self.root.children[1:]
        if [(n.key, n.label) for n in old] == entries:
            return
        parent = self.index_of(self.root)
        if old:
            self.beginRemoveRows(parent, 1, len(old))
            del self.root.children[1:]
            for n in old:
                n.parent = None
            self.endRemoveRows()
        if entries:
            self.beginInsertRows(parent, 1, len(entries))
            for key, label in entries:
                node = Node(NodeKind.REMOTE, key, {"label": label}, self.root)
                node.row = len(self.root.children)
                self.root.children.append(node)
            self.endInsertRows()

    def remote_nodes(self) -> list[Node]:
        return list(self.root.children[1:])

    def set_service_state(self, state: str) -> None:
        if self.server.data.get("state") != state:
            self.server.data["state"] = state
            idx = self.index_of(self.server)
            self.dataChanged.emit(idx, idx)

    def reload(self) -> None:
        """Forget the domains and read the first page again (connect, reconnect, F5)."""
        self._generation += 1
        self._loading = False
        if self.server.children:
            self.beginRemoveRows(self.index_of(self.server), 0, len(self.server.children) - 1)
            self.server.children = []
            self._names = []
            self._domain_total = 0
            self.endRemoveRows()
        self._domain_total = 0
        self.loaded = False
        self._request_page(0)

    def forget_server(self, target: str = "") -> None:
        """The console is going to another server: nothing of the old one stays (its name, state and
        domains); the server node is called ``target`` until the new one says its name."""
        self._generation += 1
        self._loading = False
        if self.server.children:
            self.beginRemoveRows(self.index_of(self.server), 0, len(self.server.children) - 1)
            for node in self.server.children:
                node.parent = None
            self.server.children = []
            self._names = []
            self.endRemoveRows()
        self._domain_total = 0
        self.loaded = False
        self.server.data = {"state": "unknown", "target": target}
        idx = self.index_of(self.server)
        self.dataChanged.emit(idx, idx)

    def clear(self) -> None:
        """The service is gone: keep the tree, but stop any load in flight."""
        self._generation += 1
        self._loading = False

    def _request_page(self, offset: int) -> None:
        generation = self._generation
        self._loading = True

        def ok(result: dict[str, Any]) -> None:
            if generation != self._generation:
                return
            self._loading = False
            self._add_page(int(result.get("total", 0)), result.get("items") or [])

        def err(error: Any) -> None:
            if generation == self._generation:
                self._loading = False
                self.load_failed.emit(error)

        self._client.request("domain.list", {"offset": offset, "limit": DOMAIN_PAGE}, ok, err)

    def _add_page(self, total: int, items: list[dict[str, Any]]) -> None:
        self.loaded = True
        fresh = [d for d in items if self.domain_node(d["name"]) is None]
        parent = self.index_of(self.server)
        if fresh:
            first = len(self.server.children)
            self.beginInsertRows(parent, first, first + len(fresh) - 1)
            for d in fresh:
                node = Node(NodeKind.DOMAIN, d["name"], dict(d), self.server)
                node.row = len(self.server.children)
                self.server.children.append(node)
                self._names.append(d["name"])
            self._domain_total = max(total, len(self.server.children))
            self.endInsertRows()
        else:
            self._domain_total = max(total, len(self.server.children))
        # A page is a prefix in name order, so appending keeps the order; an event may have
        # inserted a name inside it meanwhile, hence the dedupe above and this check.
        if self._names != sorted(self._names):
            self.layoutAboutToBeChanged.emit()
            old = {id(n): n.row for n in self.server.children}
            self.server.children.sort(key=lambda n: n.key)
            self._names = [n.key for n in self.server.children]
            self.server.renumber()
            moved_from = [self.createIndex(old[id(n)], 0, n) for n in self.server.children]
            self.changePersistentIndexList(moved_from, [self.index_of(n) for n in self.server.children])
            self.layoutChanged.emit()
        self.domains_loaded.emit()

    # -- change events ---------------------------------------------------------------------------
    def apply_event(self, name: str, data: Any) -> None:
        if name == "domain.added":
            self._domain_added(data)
        elif name == "domain.changed":
            node = self.domain_node(data.get("name", ""))
            if node is None:
                self._domain_added(data)
                return
            node.data.update(data)
            idx = self.index_of(node)
            self.dataChanged.emit(idx, idx)
        elif name == "domain.deleted":
            self._domain_deleted(data.get("name", ""))
        elif name == "service.state":
            self.set_service_state(str(data.get("state", "unknown")))

    def _domain_added(self, data: dict[str, Any]) -> None:
        key = data.get("name", "")
        if not key or self.domain_node(key) is not None:
            return
        i = bisect.bisect_left(self._names, key)
        loaded_all = len(self.server.children) >= self._domain_total
        self._domain_total += 1
        if i == len(self._names) and not loaded_all:
            return   # beyond the loaded prefix: a later page brings it
        self.beginInsertRows(self.index_of(self.server), i, i)
        node = Node(NodeKind.DOMAIN, key, dict(data), self.server)
        self.server.children.insert(i, node)
        self._names.insert(i, key)
        self.server.renumber(i)
        self.endInsertRows()

    def _domain_deleted(self, key: str) -> None:
        node = self.domain_node(key)
        self._domain_total = max(0, self._domain_total - 1)
        if node is None:
            return
        i = node.row
        self.beginRemoveRows(self.index_of(self.server), i, i)
        del self.server.children[i]
        del self._names[i]
        self.server.renumber(i)
        node.parent = None
        self.endRemoveRows()
