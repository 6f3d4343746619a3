"""The server's "Bans" tab: addresses and login names banned after failed logons (``ban.list``),
with Lift (``ban.lift``). Bans also end by themselves when they expire."""
from __future__ import annotations

from functools import partial
from typing import Any

from PySide6.QtWidgets import QWidget

from gui import ops
from gui.views.service_table import ServiceTable, when


class BansView(ServiceTable):
    """Current bans."""

    op = "ban.list"
    headers = ["Banned", "Kind", "Failures", "Since (UTC)", "Until (UTC)", "Reason"]
    numeric_columns = (2,)
    elastic_columns = (0, 5)
    empty_text = "No address or login name is banned."

    def __init__(self, client: Any, parent: QWidget | None = None) -> None:
        super().__init__(client, "Banned addresses and login names",
                         "After too many failed logons (POP3, SMTP AUTH, remote administration) the address or "
                         "the login name is refused for a while. Lift a ban when you know the cause, such as a "
                         "user's phone with an old password. Addresses on the allow-list (Server Properties → "
                         "Security) are never banned.", parent)
        self.lift_button = self.add_button("&Lift ban", self.lift_selected)
        self.update_buttons()

    def key_of(self, item: dict[str, Any]) -> Any:
        return (item.get("kind"), item.get("value"))

    def cells(self, item: dict[str, Any]) -> list[str]:
        kind = {"address": "Address", "login": "Login name"}.get(str(item.get("kind")), str(item.get("kind", "")))
        return [str(item.get("value", "")), kind, str(item.get("failures", "")), when(item.get("created_at")),
                when(item.get("expires_at")), str(item.get("reason", ""))]

    def summary(self) -> str:
        n = len(self.items)
        return f"{n:,} ban{'s' if n != 1 else ''}"

    def lift_selected(self) -> None:
        for item in self.selected():
            value = str(item["value"])
            ops.lift_ban(self._client, parent=self, value=value, on_done=partial(self._lifted, value))

    def _lifted(self, value: str, _result: Any) -> None:
        self.refresh(note=f"Lifted the ban on {value}.")
