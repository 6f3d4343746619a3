"""The console's link to the service: the connection, what the server says about itself, the change
events applied to the models, and service control.

The window shows what this holds and follows its signals; nothing here builds a widget.
"""
from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QWidget

from core.catalog import MAIL_LISTENERS
from core.errors import MailError
from gui import ops
from gui.dialogs import error_box
from gui.models.domain_table import DomainTableModel
from gui.models.mailbox_table import MailboxTableModel
from gui.models.tree_model import ScopeTreeModel
from gui.views.status_view import listener_failures


def service_state(status: dict[str, Any]) -> str:
    """The service's state as the console shows it: "partial" when it runs but a listener is stopped
    (a port taken at start, or stopped by hand), so Start is offered for what is not running."""
    state = str(status.get("state", "unknown"))
    listeners = [item for item in status.get("listeners") or [] if isinstance(item, dict)]
    if state == "running" and any(item.get("state") == "stopped" for item in listeners):
        return "partial"
    return state


class ConsoleController(QObject):
    """Owns the client and the models; turns the service's answers and events into state and signals."""

    connection_changed = Signal(bool)     # after the controller's own part: the window updates banner and labels
    lists_outdated = Signal()             # connect, reconnect, F5: the window reloads the lists it shows
    server_info_changed = Signal(dict)
    status_changed = Signal(dict)
    logging_level_changed = Signal(object)
    facts_changed = Signal()              # settings or service state moved: the actions follow
    message = Signal(str, int)            # one line for the status bar (the read-error funnel ends here)
    event_arrived = Signal(str, dict)     # before the models apply it
    event_applied = Signal(str, dict)     # after the models applied it

    def __init__(self, client: Any, *, parent: QWidget) -> None:
        super().__init__(parent)
        self.client = client
        self._parent = parent               # error boxes of the requests sent from here belong to it
        self.server_info: dict[str, Any] = {}
        self.server_settings: dict[str, Any] = {}
        self.service_state = "unknown"
        self.tree_model = ScopeTreeModel(client, self)
        self.domain_model = DomainTableModel(client, self)
        self.mailbox_model = MailboxTableModel(client, self)
        client.connected.connect(self._on_connected)
        client.disconnected.connect(self._on_disconnected)
        client.event_received.connect(self._on_event)

    # -- connection --------------------------------------------------------------------------------
    def start(self) -> None:
        """Follow a client that is connected already (its ``connected`` signal has gone by)."""
        if self.client.is_connected:
            self._on_connected()

    def retry_now(self) -> None:
        """Reconnect now instead of at the next retry."""
        self.client.retry_now()

    @property
    def connecting(self) -> bool:
        """The client is making its first attempt on a server just chosen (no banner for the old one)."""
        return bool(getattr(self.client, "connecting", False))

    @property
    def is_remote(self) -> bool:
        return bool(getattr(self.client, "is_remote", False))

    def disconnect_text(self) -> str:
        """What the banner says while the service is not reachable (the client's reasons are plain
        sentences: gui.ipc_client.socket_error_text)."""
        last_error = str(getattr(self.client, "last_error", "") or "")
        reason = f" ({html.escape(last_error)})" if last_error else ""
        where = html.escape(str(self.client.location))
        if self.is_remote:
            return (f"<b>The POP3 Service on {where} is not reachable</b>{reason}.<br>"
                    "The lists below may be out of date. The console reconnects by itself when it is back.")
        return (f"<b>The POP3 Service is not reachable</b> at {where}{reason}.<br>"
                "The lists below may be out of date. The console reconnects by itself when the service is back.")

    def _on_connected(self) -> None:
        self.connection_changed.emit(True)
        self.client.request("server.info", {}, self.apply_server_info, self.report_read_failure)
        self.client.request("settings.get", {}, self.apply_settings, self.report_read_failure)
        self.client.request("service.status", {}, self.apply_status, self.report_read_failure)
        self.lists_outdated.emit()

    def _on_disconnected(self) -> None:
        if self.connecting:
            # Another server: what the console showed of the old one is not this one's.
            remote = getattr(self.client, "remote", None)
            self.tree_model.forget_server(str(remote[0]) if remote else "")
            self.domain_model.clear()
            self.mailbox_model.clear()
            self.server_info = {}
            self.server_settings = {}
        self.tree_model.clear()
        self.tree_model.set_service_state("unknown")
        self.service_state = "unknown"
        self.connection_changed.emit(False)

    def refresh(self) -> None:
        """F5: the service's state and the lists again, or a reconnect when there is no service."""
        if self.client.is_connected:
            self.client.request("service.status", {}, self.apply_status, self.report_read_failure)
            self.lists_outdated.emit()
        else:
            self.client.retry_now()

    def reload_server_info(self, then: Callable[[], None] | None = None) -> None:
        """Ask for the server's name and certificate again (after the wizard), then ``then``."""
        def got(info: dict[str, Any]) -> None:
            self.apply_server_info(info)
            if then is not None:
                then()
        self.client.request("server.info", {}, got, lambda _e: None)

    def reload_settings(self, then: Callable[[], None] | None = None) -> None:
        """Ask for the server properties again, then ``then``."""
        def got(values: dict[str, Any]) -> None:
            self.apply_settings(values)
            if then is not None:
                then()
        self.client.request("settings.get", {}, got, lambda _e: None)

    # -- what the service said ---------------------------------------------------------------------
    def apply_server_info(self, info: dict[str, Any]) -> None:
        """The answer to ``server.info``: host name, certificate, listeners."""
        self.server_info = dict(info)
        self.tree_model.set_server_info(info)
        self.server_info_changed.emit(self.server_info)

    def apply_settings(self, values: dict[str, Any]) -> None:
        """The answer to ``settings.get``."""
        self.server_settings = dict(values)
        self.logging_level_changed.emit(values.get("logging", 2))
        self.facts_changed.emit()

    def apply_status(self, status: dict[str, Any]) -> None:
        """The answer to ``service.status`` (or a ``service.state`` event)."""
        self.service_state = service_state(status)
        self.tree_model.set_service_state(self.service_state)
        if isinstance(status.get("listeners"), list):
            self.server_info["listeners"] = status["listeners"]
        self.status_changed.emit(status)
        failures = listener_failures(status)
        if failures:
            self.message.emit("Not running: " + "; ".join(failures), 15000)
        self.facts_changed.emit()

    def report_read_failure(self, error: Any) -> None:
        """A read that failed: one line in the status bar (a lost service is the banner's to say)."""
        if getattr(error, "code", "") == "unavailable":
            return
        self.message.emit(f"Could not read from the service: {getattr(error, 'message', error)}", 8000)

    def listener_ports(self) -> dict[str, int]:
        """Port per listener: the service's report when we have it, else the settings."""
        ports: dict[str, int] = {}
        for item in self.server_info.get("listeners") or []:
            if isinstance(item, dict) and item.get("name"):
                ports[str(item["name"])] = int(item.get("port") or 0) if item.get("state") != "disabled" else 0
        s = self.server_settings
        for spec in MAIL_LISTENERS:
            name, key = spec.name, spec.port_setting
            if name not in ports and key in s:
                ports[name] = int(s[key] or 0)
        return ports

    def open_sessions(self) -> dict[str, int]:
        """Sessions open now per listener (the last status report), only those with any."""
        counts: dict[str, int] = {}
        for item in self.server_info.get("listeners") or []:
            if not isinstance(item, dict):
                continue
            try:
                n = int(item.get("sessions") or 0)
            except (TypeError, ValueError):
                continue
            if n > 0:
                counts[str(item.get("name", "?"))] = n
        return counts

    def read_sessions(self, then: Callable[[dict[str, int]], None]) -> None:
        """Ask the service for its status, then ``then(open_sessions())``; the last report when the read fails."""
        def got(status: dict[str, Any]) -> None:
            self.apply_status(status)
            then(self.open_sessions())
        self.client.request("service.status", {}, got, lambda _e: then(self.open_sessions()))

    # -- events ------------------------------------------------------------------------------------
    def _on_event(self, name: str, data: Any) -> None:
        if not isinstance(data, dict):
            return
        self.event_arrived.emit(name, data)
        self.tree_model.apply_event(name, data)
        self.domain_model.apply_event(name, data)
        self.mailbox_model.apply_event(name, data)
        if name == "settings.changed":
            self.server_settings[str(data.get("name"))] = data.get("value")
            if data.get("name") == "logging":
                self.logging_level_changed.emit(data.get("value"))
        elif name == "service.state":
            self.apply_status(data)
        self.event_applied.emit(name, data)

    # -- service control ---------------------------------------------------------------------------
    def control(self, action: str, then: Callable[[], None] | None = None) -> None:
        """Start, stop, pause or resume the service's listeners (then ``then``, if it worked). A start
        that leaves listeners down says which and why in a message box, not only "(Stopped)"."""
        def done(status: dict[str, Any]) -> None:
            self.apply_status(status)
            if action in ("start", "resume") and listener_failures(status):
                self._report_start_failures(status, error=None)
            elif then is not None:
                then()

        def failed(error: MailError) -> None:
            doing = f"{action} the POP3 Service"
            if action not in ("start", "resume") or not self.client.is_connected:
                error_box.show_error(self._parent, error, doing=doing)
                return

            def got_status(status: dict[str, Any]) -> None:
                self.apply_status(status)
                self._report_start_failures(status, error=error)

            # The service refused because listeners did not start: read which, and say it with the reasons.
            self.client.request("service.status", {}, got_status,
                                lambda _e: error_box.show_error(self._parent, error, doing=doing))

        ops.control_service(self.client, parent=self._parent, action=action, on_done=done, on_fail=failed)

    def _report_start_failures(self, status: dict[str, Any], *, error: MailError | None) -> None:
        failures = listener_failures(status)
        if not failures:
            if error is not None:
                error_box.show_error(self._parent, error, doing="start the POP3 Service")
            return
        text = ("These listeners could not start:\n" + "\n".join(failures)
                + "\n\nChoose other ports in Server Properties, or free these ones, then start the service again.")
        error_box.show_error(self._parent, text, doing="start the POP3 Service")

    def restart_service(self) -> None:
        """Stop, then start the service's listeners (saying which did not start, and why)."""
        self.control("stop", then=lambda: self.control("start"))

    def restart_listeners(self, names: list[str]) -> None:
        """Stop and start these listeners (a port or certificate changed in Server Properties)."""
        for name in names:
            doing = f"restart the {name} listener"

            def start(_result: Any, name: str = name, doing: str = doing) -> None:
                ops._send(self.client, "service.control", {"action": "start", "listener": name},
                          parent=self._parent, doing=doing)

            ops._send(self.client, "service.control", {"action": "stop", "listener": name}, parent=self._parent,
                      doing=doing, on_done=start)
