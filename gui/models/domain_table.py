"""The server node's result pane: the domains with their counters and state."""
from __future__ import annotations

from typing import Any

from gui import icons
from gui.models.nodes import NodeKind
from gui.models.paged_table import Column, PagedTableModel, kilobytes


def _domain_state(d: dict[str, Any]) -> str:
    return "Locked" if d.get("locked") else "Unlocked"


class DomainTableModel(PagedTableModel):
    """Domain Name, Mailboxes, Domain Size (KB), Messages, State."""

    op = "domain.list"
    kind = NodeKind.DOMAIN
    columns = [
        Column("Domain Name", lambda d: str(d.get("display_name") or d["name"]), lambda d: d["name"],
               service_sort="name"),
        Column("Mailboxes", lambda d: f"{d.get('mailbox_count', 0):,}", lambda d: d.get("mailbox_count", 0),
               numeric=True, service_sort="count"),
        Column("Domain Size (KB)", lambda d: kilobytes(d.get("total_bytes", 0)), lambda d: d.get("total_bytes", 0),
               numeric=True, service_sort="size"),
        Column("Messages", lambda d: f"{d.get('message_count', 0):,}", lambda d: d.get("message_count", 0),
               numeric=True, service_sort="messages"),
        Column("State", _domain_state, lambda d: bool(d.get("locked")),
               tooltip=lambda d: "Locked: no mailbox of this domain can log on; mail is still delivered."
               if d.get("locked") else "", service_sort="state"),
    ]

    def icon_for(self, item: dict[str, Any]) -> Any:
        return icons.item_icon("domain", locked=bool(item.get("locked")))

    def apply_event(self, name: str, data: Any) -> None:
        if name == "domain.added":
            self.apply_added(data)
        elif name == "domain.changed":
            self.apply_changed(data)
        elif name == "domain.deleted":
            self.apply_deleted(str(data.get("name", "")))
