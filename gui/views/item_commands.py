"""The dialogs behind the Action menu: new domain or mailbox, delete, lock, password, properties, about.

Each opens its dialog over the window and sends its request through ``gui.ops``; the models follow
the service's change events, never the answers.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QMessageBox

from core.catalog import LISTENERS
from gui import ops
from gui.controller import ConsoleController
from gui.dialogs import error_box
from gui.dialogs.change_password import ChangePasswordDialog
from gui.dialogs.confirm_delete import ConfirmDeleteDialog
from gui.dialogs.item_properties import DomainPropertiesDialog, MailboxPropertiesDialog
from gui.dialogs.mailbox_created import MailboxCreatedDialog, client_settings
from gui.dialogs.new_domain import NewDomainDialog
from gui.dialogs.new_mailbox import NewMailboxDialog
from gui.dialogs.options import MAILBOX_CREATED, dont_show_check_box, is_hidden
from gui.dialogs.relay_test import RelayTestDialog
from gui.dialogs.server_properties import ServerPropertiesDialog
from gui.models.nodes import NodeKind, Target
from gui.views.host import ConsoleHost


def sessions_question(verb: str, sessions: dict[str, int]) -> str:
    """"3 sessions are open (POP3: 2, SMTP: 1). …": what Stop or Restart asks when it would end sessions."""
    total = sum(sessions.values())
    where = ", ".join(f"{LISTENERS[name].label if name in LISTENERS else name}: {n}"
                      for name, n in sessions.items())
    are = "1 session is" if total == 1 else f"{total} sessions are"
    doing = {"stop": "Stopping", "restart": "Restarting"}.get(verb.lower(), verb.capitalize())
    return (f"{are} open ({where}). {doing} the service ends {'it' if total == 1 else 'them'}: "
            "the mail clients and servers connected now lose their connection.\n\n"
            f"{verb.capitalize()} the POP3 Service?")


class ItemCommands:
    """Opens the dialog of an action on its targets and sends what the user chose."""

    def __init__(self, host: ConsoleHost, controller: ConsoleController, settings: QSettings) -> None:
        self.host = host
        self.controller = controller
        self.client = controller.client
        self.settings = settings

    @property
    def _auth(self) -> str:
        return str(self.controller.server_settings.get("auth", "passwordfile"))

    def new_domain(self) -> None:
        """New Domain: the dialog, then the new domain selected in the tree."""
        parent = self.host.dialog_parent()
        dialog: NewDomainDialog

        def submit(name: str, ok: Any, fail: Any) -> None:
            def done(result: Any) -> None:
                ok(result)
                self.host.select_domain_when_added(str((result or {}).get("name", name)))
            ops.add_domain(self.client, parent=dialog, name=name, on_done=done, on_fail=fail)

        dialog = NewDomainDialog(parent, submit=submit)
        self.host.open_dialog(dialog, "new-domain")

    def new_mailbox(self, domain: str) -> None:
        """New Mailbox in ``domain``: the dialog, then the client settings of the new mailbox."""
        node = self.controller.tree_model.domain_node(domain)
        display = str(node.data.get("display_name") or domain) if node else domain
        dialog: NewMailboxDialog

        def submit(values: dict[str, Any], ok: Any, fail: Any) -> None:
            ops.add_mailbox(self.client, parent=dialog, address=values["address"], password=values["password"],
                            create_user=values["create_user"], on_done=ok, on_fail=fail)

        dialog = NewMailboxDialog(self.host.dialog_parent(), domain=domain, display_domain=display, auth=self._auth,
                                  create_user_default=bool(self.controller.server_settings.get("createuser", False)),
                                  submit=submit)
        dialog.accepted.connect(lambda: self.mailbox_created(getattr(dialog, "created_info", None)
                                                             or {"address": dialog.address}))
        self.host.open_dialog(dialog, "new-mailbox")

    def mailbox_created(self, info: dict[str, Any]) -> None:
        """What to type into the mail client of the new mailbox (unless the user turned it off)."""
        if is_hidden(self.settings, MAILBOX_CREATED):
            return
        address = str(info.get("address"))
        dialog = MailboxCreatedDialog(self.host.dialog_parent(), self._client_rows(info), address=address,
                                      dont_show=dont_show_check_box(self.settings, MAILBOX_CREATED))
        self.host.open_dialog(dialog, "new-mailbox")

    def client_settings(self, target: Target) -> None:
        """Mail Client Settings: the sheet of ``target`` (a mailbox) from what the service says now:
        its settings (authentication, SPA) and its listeners (ports, TLS)."""
        parent = self.host.dialog_parent()
        controller = self.controller
        info = dict(target.data, address=target.key)

        def failed(error: Any) -> None:
            error_box.show_error(parent, error, doing=f"read the mail client settings of {target.key}")

        def got_status(status: dict[str, Any]) -> None:
            controller.apply_status(status)
            dialog = MailboxCreatedDialog(self.host.dialog_parent(), self._client_rows(info), address=target.key,
                                          created=False)
            self.host.open_dialog(dialog, "mailbox")

        def got_settings(values: dict[str, Any]) -> None:
            controller.apply_settings(values)
            self.client.request("service.status", {}, got_status, failed)

        self.client.request("settings.get", {}, got_settings, failed)

    def _client_rows(self, info: dict[str, Any]) -> list[tuple[str, str]]:
        address = str(info.get("address"))
        name, _, domain = address.partition("@")
        return client_settings(dict({"name": name, "domain": domain}, **info),
                               hostname=str(self.controller.server_info.get("hostname") or "this server"),
                               auth=self._auth,
                               spa_required=bool(self.controller.server_settings.get("sparequired", True)),
                               ports=self.controller.listener_ports())

    def lock(self, targets: list[Target], verb: str) -> None:
        """Lock or unlock (``verb``) the domains or mailboxes among ``targets`` that are not so already."""
        parent = self.host.dialog_parent()
        kind = targets[0].kind
        client = self.client
        sender = {
            (NodeKind.DOMAIN, "lock"): lambda k, **kw: ops.lock_domain(client, parent=parent, name=k, **kw),
            (NodeKind.DOMAIN, "unlock"): lambda k, **kw: ops.unlock_domain(client, parent=parent, name=k, **kw),
            (NodeKind.MAILBOX, "lock"): lambda k, **kw: ops.lock_mailbox(client, parent=parent, address=k, **kw),
            (NodeKind.MAILBOX, "unlock"): lambda k, **kw: ops.unlock_mailbox(client, parent=parent, address=k,
                                                                             **kw),
        }[(kind, verb)]
        if verb == "lock":
            keys = [t.key for t in targets if not t.locked]
        else:
            keys = [t.key for t in targets if t.locked and not t.data.get("domain_locked")]
        ops.for_each(keys, sender, parent=parent, doing=f"{verb} {len(keys)} {kind.noun(len(keys))}")

    def delete(self, targets: list[Target]) -> None:
        """Delete, after the confirmation that says what goes with them."""
        parent = self.host.dialog_parent()
        client = self.client
        dialog = ConfirmDeleteDialog(parent, targets, auth=self._auth)

        def confirmed() -> None:
            with_users = not dialog.delete_user.isHidden() and dialog.delete_user.isChecked()
            keys = [t.key for t in targets]
            def send(key: str, **kw: Any) -> None:
                if targets[0].kind is NodeKind.DOMAIN:
                    ops.delete_domain(client, parent=parent, name=key, delete_users=with_users, **kw)
                else:
                    ops.delete_mailbox(client, parent=parent, address=key, delete_user=with_users, **kw)
            ops.for_each(keys, send, parent=parent, doing=f"delete {len(keys)} {targets[0].kind.noun(len(keys))}")

        dialog.accepted.connect(confirmed)
        self.host.open_dialog(dialog, "delete")

    def change_password(self, address: str) -> None:
        """A new password for the mailbox ``address``."""
        dialog: ChangePasswordDialog

        def submit(password: str, ok: Any, fail: Any) -> None:
            ops.change_password(self.client, parent=dialog, address=address, password=password,
                                on_done=ok, on_fail=fail)

        dialog = ChangePasswordDialog(self.host.dialog_parent(), address=address, submit=submit)
        self.host.open_dialog(dialog, "mailbox")

    def properties(self, target: Target) -> None:
        """The properties of the server, a domain or a mailbox."""
        parent = self.host.dialog_parent()
        if target.kind is NodeKind.SERVER:
            # Read the settings fresh, with their versions: the dialog starts from what the server
            # has now, and the service refuses a change someone made since (see the dialog).
            self.client.request("settings.snapshot", {}, self._open_server_properties,
                                lambda e: error_box.show_error(parent, e, doing="read the server properties"))
        elif target.kind is NodeKind.DOMAIN:
            self.host.open_dialog(DomainPropertiesDialog(parent, target.data), "domain")
        elif target.kind is NodeKind.MAILBOX:
            sheet = MailboxPropertiesDialog(parent, target.data, client=self.client)
            self.controller.event_applied.connect(sheet.apply_event)   # other administrators' changes
            self.host.open_dialog(sheet, "mailbox")

    def _open_server_properties(self, snapshot: dict[str, Any]) -> None:
        controller = self.controller
        values = dict(snapshot.get("values") or {})
        controller.server_settings = dict(values)

        def open_with(described: list[dict[str, Any]] | None) -> None:
            dialog = ServerPropertiesDialog(self.host.dialog_parent(), client=self.client, settings=values,
                                            domain_count=controller.tree_model.domain_total,
                                            hostname=str(controller.server_info.get("hostname") or ""),
                                            restart_listeners=controller.restart_listeners, described=described,
                                            listeners=controller.server_info.get("listeners"),
                                            versions=snapshot.get("versions"))
            controller.event_applied.connect(dialog.apply_event)   # other administrators' changes
            self.host.open_dialog(dialog, "server-properties")

        # The service's own descriptions: the settings its modules register are editable too.
        self.client.request("settings.describe", {}, lambda r: open_with((r or {}).get("items")),
                            lambda _e: open_with(None))

    def end_sessions_first(self, verb: str, go: Callable[[], None]) -> None:
        """Stop or Restart (``verb``): ask first when sessions are open, for they end with the listeners."""
        def decide(sessions: dict[str, int]) -> None:
            if not sessions:
                go()
                return
            box = QMessageBox(QMessageBox.Icon.Warning, f"{verb} the POP3 Service", sessions_question(verb, sessions),
                              QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                              self.host.dialog_parent())
            box.setDefaultButton(QMessageBox.StandardButton.No)

            def decided(result: int) -> None:
                if result == QMessageBox.StandardButton.Yes:
                    go()
            box.finished.connect(decided)
            self.host.show_dialog(box)

        self.controller.read_sessions(decide)

    def relay_test(self) -> None:
        """Test for Open Relay: the classic tricks against this server's SMTP port, results in a dialog."""
        if not self.client.is_connected:
            self.host.show_message("The console is not connected to the POP3 Service.", 5000)
            return
        dialog = RelayTestDialog(self.host.dialog_parent())
        self.host.open_dialog(dialog, "server")
        ops.relay_test(self.client, parent=dialog, on_done=dialog.show_results,
                       on_fail=lambda e: dialog.show_error(getattr(e, "message", str(e))))

    def about(self) -> None:
        """Help > About."""
        box = QMessageBox(QMessageBox.Icon.Information, "About POP3 Service",
                          "<b>POP3 Service</b><br>A point-and-click POP3 and SMTP mail server, after the Windows "
                          "Server 2003 POP3 Service and its snap-in.", QMessageBox.StandardButton.Ok,
                          self.host.dialog_parent())
        self.host.show_dialog(box)
