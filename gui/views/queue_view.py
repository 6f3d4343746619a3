"""The server's "Queue" tab: mail waiting for delivery to other servers (``queue.list``), with
Retry now, Delete and View message (``queue.show``)."""
from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QWidget

from gui import ops
from gui.dialogs.queued_message import QueuedMessageDialog
from gui.views.service_table import ServiceTable, when


class QueueView(ServiceTable):
    """The outgoing queue."""

    op = "queue.list"
    headers = ["Id", "From", "To", "Size (KB)", "Tries", "Next try (UTC)", "Last error"]
    numeric_columns = (0, 3, 4)
    elastic_columns = (1, 2, 6)
    empty_text = "The queue is empty: every message has been delivered."

    def __init__(self, client: Any, parent: QWidget | None = None) -> None:
        super().__init__(client, "Outgoing mail queue",
                         "Messages to other servers that could not be delivered yet. The service retries them "
                         "with growing delays, warns the sender after a while and bounces them in the end.",
                         parent)
        self.retry_all_button = self.add_button("Retry &all now", self.retry_all, needs_selection=False)
        self.retry_button = self.add_button("&Retry now", self.retry_selected)
        self.view_button = self.add_button("&View message…", self.view_selected)
        self.delete_button = self.add_button("&Delete", self.delete_selected)
        self.table.doubleClicked.connect(lambda _i: self.view_selected())
        self.update_buttons()

    def cells(self, item: dict[str, Any]) -> list[str]:
        recipients = item.get("recipients") or []
        to = ", ".join(recipients) if isinstance(recipients, list) else str(recipients)
        size = int(item.get("size") or 0)
        return [str(item.get("id", "")), str(item.get("sender", "")) + (" (report)" if item.get("is_report") else ""),
                to, f"{-(-size // 1024):,}", str(item.get("attempts", "")), when(item.get("next_attempt")),
                str(item.get("last_error", ""))]

    def summary(self) -> str:
        n = len(self.items)
        return f"{n:,} message{'s' if n != 1 else ''} waiting"

    def retry_all(self) -> None:
        ops.retry_queued(self._client, parent=self, ident=None, on_done=lambda r: self._done(r, "retried"))

    def retry_selected(self) -> None:
        for item in self.selected():
            ops.retry_queued(self._client, parent=self, ident=int(item["id"]),
                             on_done=lambda r: self._done(r, "retried"))

    def delete_selected(self) -> None:
        chosen = self.selected()
        if not chosen:
            return
        def delete() -> None:
            for item in chosen:
                ops.delete_queued(self._client, parent=self, ident=int(item["id"]),
                                  on_done=lambda r: self._done(r, "deleted"))

        self.confirm("Delete queued mail", f"Delete {len(chosen)} queued message{'s' if len(chosen) != 1 else ''}? "
                     "The sender is not told; the message is gone.", delete)

    def view_selected(self) -> None:
        chosen = self.selected()
        if chosen:
            ops.show_queued(self._client, parent=self, ident=int(chosen[0]["id"]), on_done=self._show)

    def _show(self, entry: dict[str, Any]) -> None:
        dialog = QueuedMessageDialog(self, entry)
        self.dialog = dialog
        dialog.open()

    def _done(self, result: dict[str, Any], what: str) -> None:
        count = int((result or {}).get(what, 0))
        self.refresh(note=f"{count} message{'s' if count != 1 else ''} {what}.")
