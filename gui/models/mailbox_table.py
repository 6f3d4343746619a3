"""A domain node's result pane: its mailboxes with their counters, state and quota."""
from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, Signal

from gui import icons
from gui.models.nodes import NodeKind
from gui.models.paged_table import Column, PagedTableModel, kilobytes


def _mailbox_state(m: dict[str, Any]) -> str:
    if m.get("locked"):
        return "Locked"
    if m.get("domain_locked"):
        return "Locked (domain)"
    return "Unlocked"


def _state_tip(m: dict[str, Any]) -> str:
    if m.get("domain_locked"):
        return (f"The domain {m.get('domain')} is locked, so this mailbox cannot log on; "
                "unlock the domain to unlock it.")
    if m.get("locked"):
        return "Locked: the user cannot log on; mail is still delivered."
    return ""


class MailboxTableModel(PagedTableModel):
    """Mailbox Name, Mailbox Size (KB), Messages, State, Quota (KB)."""

    op = "mailbox.list"
    kind = NodeKind.MAILBOX
    columns = [
        Column("Mailbox Name", lambda m: str(m["name"]), lambda m: m["name"], service_sort="name"),
        Column("Mailbox Size (KB)", lambda m: kilobytes(m.get("total_bytes", 0)), lambda m: m.get("total_bytes", 0),
               numeric=True, service_sort="size"),
        Column("Messages", lambda m: f"{m.get('message_count', 0):,}", lambda m: m.get("message_count", 0),
               numeric=True, service_sort="messages"),
        Column("State", _mailbox_state, lambda m: (bool(m.get("locked")), bool(m.get("domain_locked"))),
               tooltip=_state_tip, service_sort="state"),
        Column("Quota (KB)", lambda m: kilobytes(m.get("quota_bytes")),
               lambda m: -1 if m.get("quota_bytes") is None else m["quota_bytes"], numeric=True, service_sort="quota"),
    ]

    domain_gone = Signal(str)

    def __init__(self, client: Any, parent: QObject | None = None) -> None:
        super().__init__(client, parent)
        self.domain = ""

    def key_of(self, item: dict[str, Any]) -> str:
        return str(item.get("address") or f"{item['name']}@{item['domain']}")

    def params(self) -> dict[str, Any]:
        return {"domain": self.domain}

    def belongs(self, item: dict[str, Any]) -> bool:
        return bool(self.domain) and item.get("domain") == self.domain

    def _matches(self, key: str) -> bool:
        return not self._filter or self._filter in key.partition("@")[0].lower()

    def icon_for(self, item: dict[str, Any]) -> Any:
        return icons.item_icon("mailbox", locked=bool(item.get("locked") or item.get("domain_locked")))

    def set_domain(self, domain: str) -> None:
        """Show the mailboxes of ``domain`` ('' shows nothing)."""
        if domain == self.domain and self._active:
            return
        self.domain = domain
        if domain:
            self.reload()
        else:
            self.clear()

    def apply_event(self, name: str, data: Any) -> None:
        if name == "mailbox.added":
            self.apply_added(data)
        elif name == "mailbox.changed":
            self.apply_changed(data)
        elif name == "mailbox.deleted":
            if data.get("domain") == self.domain:
                self.apply_deleted(str(data.get("address") or f"{data.get('name')}@{data.get('domain')}"))
        elif name == "domain.changed" and data.get("name") == self.domain:
            self._domain_lock_moved(bool(data.get("locked")))
        elif name == "domain.deleted" and data.get("name") == self.domain:
            self.domain_gone.emit(self.domain)
            self.domain = ""
            self.clear()

    def _domain_lock_moved(self, locked: bool) -> None:
        """A domain lock reaches every mailbox; the service sends one event for the domain only."""
        if not self._rows or all(bool(r.get("domain_locked")) == locked for r in self._rows):
            return
        for r in self._rows:
            r["domain_locked"] = locked
        self.dataChanged.emit(self.index(0, 0), self.index(len(self._rows) - 1, len(self.columns) - 1))
