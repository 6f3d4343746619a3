"""The server's "Remote Admin" tab: the tokens that admit consoles on other computers
(``admin.token_list``), with New Token (``admin.token_create``; the token is shown once) and Revoke
(``admin.token_revoke``). Tokens are stored only as hashes, so the list shows names and last use."""
from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from PySide6.QtWidgets import QWidget

from core.errors import MailError
from gui import ops
from gui.dialogs.new_token import NewTokenDialog
from gui.views.service_table import ServiceTable, when


class TokensView(ServiceTable):
    """Remote administration tokens."""

    op = "admin.token_list"
    headers = ["Name", "Created (UTC)", "Created by", "Last used (UTC)", "Last used from"]
    elastic_columns = (0, 2, 4)
    empty_text = "No token: no console on another computer can manage this server."

    def __init__(self, client: Any, server_info: Callable[[], dict[str, Any]] = dict,
                 parent: QWidget | None = None) -> None:
        self._server_info = server_info   # the window's last server.info (the admin port is in it)
        super().__init__(client, "Remote administration tokens",
                         "A console on another computer manages this server over TLS on the remote "
                         "administration port (Server Properties → Security), after it gives a token made here. "
                         "Revoke a token when that computer is lost or no longer yours; its console is "
                         "refused from its next request.", parent)
        self.new_button = self.add_button("&New Token…", self.new_token, needs_selection=False)
        self.revoke_button = self.add_button("Re&voke", self.revoke_selected)
        self.update_buttons()

    def cells(self, item: dict[str, Any]) -> list[str]:
        return [str(item.get("name", "")), when(item.get("created_at")), str(item.get("created_by") or ""),
                when(item.get("last_used_at")) or "never", str(item.get("last_used_from") or "")]

    def summary(self) -> str:
        n = len(self.items)
        return f"{n:,} token{'s' if n != 1 else ''}"

    def update_buttons(self) -> None:
        super().update_buttons()
        if hasattr(self, "new_button"):
            self.new_button.setEnabled(self._client.is_connected)

    def new_token(self) -> None:
        remote = self._server_info().get("admin_tcp") or {}
        port = int(remote.get("port") or 0) if remote.get("state") == "running" else 0

        def submit(name: str, done: Callable[[Any], None], fail: Callable[[MailError], None]) -> None:
            def created(result: Any) -> None:
                done(result)
                self.refresh(note=f"Created the token '{name}'.")

            ops.create_token(self._client, parent=self.dialog, name=name, on_done=created, on_fail=fail)

        self.dialog = NewTokenDialog(self, submit=submit, port=port)
        self.dialog.open()

    def revoke_selected(self) -> None:
        chosen = self.selected()
        if not chosen:
            return
        names = [str(item["name"]) for item in chosen]
        listed = ", ".join(f"'{n}'" for n in names)

        def revoke() -> None:
            for name in names:
                ops.revoke_token(self._client, parent=self, name=name,
                                 on_done=partial(self._revoked, name))

        self.confirm("Revoke tokens", f"Revoke {listed}? A console using {'it' if len(names) == 1 else 'them'} is "
                     "refused from its next request and needs a new token.", revoke)

    def _revoked(self, name: str, _result: Any) -> None:
        self.refresh(note=f"Revoked the token '{name}'.")
