"""A result-pane list that loads itself in pages and then follows the service's change events.

The service lists with ``offset``/``limit``/``filter`` and ``sort``/``descending`` (any column,
then the name, in the database); the model keeps a loaded prefix of that order and asks for the
next page when the view scrolls near the end (``canFetchMore``/``fetchMore``). Sorting by another
column asks the service for the first page in that order, unless every row is already here (then
it sorts in memory, without a request). Filtering asks the service again with ``filter``.

Invariant while not fully loaded: the rows are exactly the first ``len(rows)`` items of the
service's list in the current order, so the next page's offset is ``len(rows)``. Events keep it:
an added item inside the prefix is inserted at its place, one beyond it only raises ``total``.
A column without a service sort (``service_sort`` empty) loads everything and sorts in memory.
"""
from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass
from functools import total_ordering
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QObject, QPersistentModelIndex, Qt, Signal
from shiboken6 import isValid

from gui.models.nodes import NodeKind, Target

ROOT = QModelIndex()   # the invisible root: the default parent of the Qt API (one value, never changed)
_ROW_FLAGS = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemNeverHasChildren
_NO_FLAGS = Qt.ItemFlag.NoItemFlags
_RIGHT = int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
PAGE = 500          # rows per request while scrolling
BULK_PAGE = 2000    # rows per request when everything is needed (sorting by another column)


@dataclass(frozen=True)
class Column:
    """One column: its header, how to show a row, and how to sort by it."""

    title: str
    text: Callable[[dict[str, Any]], str]
    sort_key: Callable[[dict[str, Any]], Any]
    numeric: bool = False
    tooltip: Callable[[dict[str, Any]], str] | None = None
    service_sort: str = ""      # the list op's ``sort`` value for this column ('' = sort here)


def kilobytes(size: int | None) -> str:
    """Bytes as whole KB, rounded up as Explorer does (1 byte shows as 1 KB)."""
    if size is None:
        return ""
    return f"{-(-int(size) // 1024):,}"


@total_ordering
class _Reversed:
    """Wraps a sort key so that ``bisect`` works on a descending list."""

    __slots__ = ("key",)

    def __init__(self, key: Any) -> None:
        self.key = key

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Reversed) and self.key == other.key

    def __lt__(self, other: _Reversed) -> bool:
        return other.key < self.key


class PagedTableModel(QAbstractTableModel):
    """Base of the domain and mailbox lists; subclasses give the op, the columns and the key."""

    loading_changed = Signal(bool)
    total_changed = Signal(int)
    load_failed = Signal(object)

    op = ""
    kind = NodeKind.DOMAIN
    columns: list[Column] = []

    def __init__(self, client: Any, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._client = client
        self._rows: list[dict[str, Any]] = []
        self._pos: dict[str, int] | None = {}
        self._total = 0
        self._filter = ""
        self._sort_column = 0
        self._descending = False
        self._generation = 0
        self._loading = False
        self._active = False      # has a load been asked for (a list with no source stays empty)
        self._want_all = False
        self.fetch_gate: Callable[[], bool] | None = None   # set by the view (ListPane)

    # -- subclass hooks -------------------------------------------------------------------------
    def key_of(self, item: dict[str, Any]) -> str:
        return str(item["name"])

    def params(self) -> dict[str, Any]:
        return {}

    def belongs(self, item: dict[str, Any]) -> bool:
        """Does an item from an event belong to this list (before the filter)?"""
        return True

    def icon_for(self, item: dict[str, Any]) -> Any:
        return None

    # -- Qt API ---------------------------------------------------------------------------------
    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = ROOT) -> int:
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = ROOT) -> int:
        return 0 if parent.isValid() else len(self.columns)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(self.columns):
            return None
        col = self.columns[section]
        if role == Qt.ItemDataRole.DisplayRole:
            return col.title
        if role == Qt.ItemDataRole.TextAlignmentRole and col.numeric:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or index.row() >= len(self._rows):
            return None
        item = self._rows[index.row()]
        col = self.columns[index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            return col.text(item)
        if role == Qt.ItemDataRole.DecorationRole and index.column() == 0:
            return self.icon_for(item)
        if role == Qt.ItemDataRole.TextAlignmentRole and col.numeric:
            return _RIGHT
        if role == Qt.ItemDataRole.ToolTipRole and col.tooltip is not None:
            return col.tooltip(item) or None
        if role == Qt.ItemDataRole.UserRole:
            return self.key_of(item)
        return None

    def flags(self, index: QModelIndex | QPersistentModelIndex) -> Qt.ItemFlag:
        # Called for every visible cell on every layout: a constant, not an enum expression.
        return _ROW_FLAGS if index.isValid() else _NO_FLAGS

    def canFetchMore(self, parent: QModelIndex | QPersistentModelIndex = ROOT) -> bool:
        return not parent.isValid() and self._active and not self._loading and len(self._rows) < self._total

    def fetchMore(self, parent: QModelIndex | QPersistentModelIndex = ROOT) -> None:
        if self.fetch_gate is not None and not self.fetch_gate():
            return   # the view asked while laying out, not because its end is in sight
        if self.canFetchMore(parent):
            self._request(len(self._rows), PAGE)

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        if not 0 <= column < len(self.columns):
            return
        descending = order == Qt.SortOrder.DescendingOrder
        if (column, descending) == (self._sort_column, self._descending):
            return
        self._sort_column = column
        self._descending = descending
        if self.fully_loaded:
            self._sort_in_memory()          # every row is here: no request needed
        elif self._active:
            self.reload()                   # the first page in the new order, from the service

    # -- own API --------------------------------------------------------------------------------
    @property
    def total(self) -> int:
        return self._total

    @property
    def loading(self) -> bool:
        return self._loading

    @property
    def fully_loaded(self) -> bool:
        return self._active and not self._loading and len(self._rows) >= self._total

    @property
    def filter_text(self) -> str:
        return self._filter

    def row(self, i: int) -> dict[str, Any]:
        return self._rows[i]

    def row_of(self, key: str) -> int:
        return self._positions().get(key, -1)

    def item(self, key: str) -> dict[str, Any] | None:
        i = self.row_of(key)
        return self._rows[i] if i >= 0 else None

    def target(self, i: int) -> Target:
        item = self._rows[i]
        return Target(self.kind, self.key_of(item), item)

    def set_filter(self, text: str) -> None:
        text = text.strip().lower()
        if text != self._filter:
            self._filter = text
            self.reload()

    def reload(self) -> None:
        """Drop the rows and ask for the first page (F5, reconnect, a new filter or source)."""
        self._generation += 1
        self._loading = False
        self.beginResetModel()
        self._rows = []
        self._pos = {}
        self._total = 0
        self.endResetModel()
        self._active = True
        self._want_all = not self._in_server_order()
        self._request(0, BULK_PAGE if self._want_all else PAGE)

    def clear(self) -> None:
        """Show nothing and ignore answers still on their way."""
        self._generation += 1
        self._active = False
        self._set_loading(False)
        self.beginResetModel()
        self._rows = []
        self._pos = {}
        self._total = 0
        self.endResetModel()
        self.total_changed.emit(0)

    # -- loading ----------------------------------------------------------------------------------
    def _in_server_order(self) -> bool:
        """Can the service give the rows in the current order (so paging works)?"""
        return bool(self.columns[self._sort_column].service_sort) if self.columns else True

    def _sort_params(self) -> dict[str, Any]:
        sort = self.columns[self._sort_column].service_sort if self.columns else ""
        if not sort or (sort == "name" and not self._descending):
            return {}
        return {"sort": sort, "descending": self._descending}

    def _set_loading(self, loading: bool) -> None:
        if loading != self._loading:
            self._loading = loading
            self.loading_changed.emit(loading)

    def _request(self, offset: int, limit: int) -> None:
        generation = self._generation
        params = dict(self.params(), offset=offset, limit=limit)
        params.update(self._sort_params())
        if self._filter:
            params["filter"] = self._filter
        self._set_loading(True)

        def ok(result: dict[str, Any]) -> None:
            if isValid(self) and generation == self._generation:
                self._set_loading(False)
                self._add_page(int(result.get("total", 0)), result.get("items") or [])

        def err(error: Any) -> None:
            if isValid(self) and generation == self._generation:
                self._set_loading(False)
                self.load_failed.emit(error)

        self._client.request(self.op, params, ok, err)

    def _add_page(self, total: int, items: list[dict[str, Any]]) -> None:
        pos = self._positions()
        fresh = [it for it in items if self.key_of(it) not in pos]
        if fresh:
            first = len(self._rows)
            self.beginInsertRows(QModelIndex(), first, first + len(fresh) - 1)
            for it in fresh:
                pos[self.key_of(it)] = len(self._rows)
                self._rows.append(dict(it))
            self.endInsertRows()
        old_total, self._total = self._total, max(total, len(self._rows))
        if self._total != old_total or not fresh:
            self.total_changed.emit(self._total)
        if len(self._rows) < self._total and self._want_all and items:
            self._request(len(self._rows), BULK_PAGE)
        elif len(self._rows) >= self._total and not self._in_server_order():
            self._sort_in_memory()

    def _sort_key(self) -> Callable[[dict[str, Any]], Any]:
        col = self.columns[self._sort_column]
        name_key = self.columns[0].sort_key
        base = lambda item: (col.sort_key(item), name_key(item))  # noqa: E731
        if self._descending:
            return lambda item: _Reversed(base(item))
        return base

    def _sort_in_memory(self) -> None:
        self.layoutAboutToBeChanged.emit()
        old = self.persistentIndexList()
        old_keys = [self.key_of(self._rows[i.row()]) if i.row() < len(self._rows) else None for i in old]
        self._rows.sort(key=self._sort_key())
        self._pos = None
        pos = self._positions()
        new = [self.index(pos[k], i.column()) if k in pos else QModelIndex()
               for k, i in zip(old_keys, old, strict=True)]
        self.changePersistentIndexList(old, new)
        self.layoutChanged.emit()

    def _positions(self) -> dict[str, int]:
        if self._pos is None:
            self._pos = {self.key_of(it): i for i, it in enumerate(self._rows)}
        return self._pos

    # -- change events --------------------------------------------------------------------------
    def _matches(self, key: str) -> bool:
        return not self._filter or self._filter in key.lower()

    def apply_added(self, item: dict[str, Any]) -> None:
        if not self._active or not self.belongs(item):
            return
        key = self.key_of(item)
        if key in self._positions():
            self.apply_changed(item)
            return
        if not self._matches(key):
            return
        self._total += 1
        sort_key = self._sort_key()
        i = bisect.bisect_left(self._rows, sort_key(item), key=sort_key)
        if i == len(self._rows) and len(self._rows) < self._total - 1 and self._in_server_order():
            self.total_changed.emit(self._total)
            return   # beyond the loaded prefix: a later page brings it
        self.beginInsertRows(QModelIndex(), i, i)
        self._rows.insert(i, dict(item))
        self._pos = None
        self.endInsertRows()
        self.total_changed.emit(self._total)

    def apply_changed(self, item: dict[str, Any]) -> None:
        if not self._active or not self.belongs(item):
            return
        i = self._positions().get(self.key_of(item), -1)
        if i < 0:
            return
        self._rows[i].update(item)
        self.dataChanged.emit(self.index(i, 0), self.index(i, len(self.columns) - 1))

    def apply_deleted(self, key: str) -> None:
        if not self._active or not self._matches(key):
            return
        i = self._positions().get(key, -1)
        self._total = max(0, self._total - 1)
        if i >= 0:
            self.beginRemoveRows(QModelIndex(), i, i)
            del self._rows[i]
            self._pos = None
            self.endRemoveRows()
        self.total_changed.emit(self._total)
