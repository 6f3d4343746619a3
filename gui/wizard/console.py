"""Where the console meets the wizard: File → Set Up the Server (re-run on a running service), the
welcome after the first setup (the new domain open, the mailbox's client settings shown), and the
banner's Start the service (the user's own background process)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from PySide6.QtCore import QTimer

from gui import service_process
from gui.controller import ConsoleController
from gui.dialogs import error_box
from gui.ipc_client import IpcClient
from gui.views.host import ConsoleHost
from gui.views.status_view import listener_failures
from gui.wizard.setup_wizard import SetupWizard


class Console(ConsoleHost, Protocol):
    """What the wizard uses of the console window: its host methods, its controller and two public steps."""

    @property
    def controller(self) -> ConsoleController:
        """The console's link to the service."""
        ...

    def select_domain_when_loaded(self, name: str) -> None:
        """Select the domain ``name`` as soon as the tree lists it."""
        ...

    def show_mailbox_created(self, info: dict[str, Any]) -> None:
        """The client settings of a new mailbox."""
        ...


def open_setup_wizard(console: Console) -> None:
    """Re-run the wizard for ports, certificate and storage on the connected service."""
    controller = console.controller
    client = controller.client
    parent = console.dialog_parent()
    if not client.is_connected:
        error_box.show_error(parent, "The wizard changes a running service; start the service first "
                             "(the bar at the top offers it).", doing="run the setup wizard")
        return
    if not isinstance(client, IpcClient) and not hasattr(client, "data_dir"):
        return

    def got_settings(values: dict[str, Any]) -> None:
        def got_status(status: dict[str, Any]) -> None:
            wizard = SetupWizard(Path(str(getattr(client, "data_dir", ""))), parent=parent, client=client,
                                 current=values, listeners=list(status.get("listeners") or []),
                                 bind_host=_bind_host(status))
            wizard.setModal(True)
            wizard.finished.connect(lambda _r: _refresh_after(controller))
            console.show_dialog(wizard)
        client.request("service.status", {}, got_status,
                       lambda e: error_box.show_error(parent, e, doing="read the service's state"))

    client.request("settings.get", {}, got_settings,
                   lambda e: error_box.show_error(parent, e, doing="read the server properties"))


def _refresh_after(controller: ConsoleController) -> None:
    """After a re-run: the lists, and the server's name (window title, the tree's server node)."""
    controller.refresh()
    if controller.client.is_connected:
        controller.reload_server_info()


def _bind_host(status: dict[str, Any]) -> str:
    for item in status.get("listeners") or []:
        if item.get("address"):
            return str(item["address"])
    return "0.0.0.0"


def show_first_mailbox(console: Console, domain: str, mailbox: dict[str, Any]) -> None:
    """After the first setup: select the new domain and show the client settings of its mailbox."""
    controller = console.controller
    console.select_domain_when_loaded(domain)
    controller.reload_server_info(lambda: controller.reload_settings(lambda: console.show_mailbox_created(mailbox)))


def _report_listener_failures(console: Console, status: dict[str, Any]) -> None:
    """After Start: say which listeners could not start, and why (a port in use, no right to bind it)."""
    failures = listener_failures(status)
    if failures:
        error_box.show_error(console.dialog_parent(), "The service started, but these listeners are not running:\n"
                             + "\n".join(failures) + "\n\nChoose other ports in Server Properties, or free "
                             "these ones, then start the listeners again.", doing="start the POP3 Service")


def start_background_service(console: Console) -> None:
    """The banner's 'Start the service': this user's own service process, detached, logging to the
    data directory; the console connects as soon as the admin socket answers."""
    client = console.controller.client
    parent = console.dialog_parent()
    data_dir = Path(str(getattr(client, "data_dir", "")))
    running = service_process.read_pid(data_dir)
    if running:
        console.show_message(f"The service is already running (process {running}); connecting…", 5000)
        client.retry_now()
        return
    started = service_process.start_background(data_dir)
    if not started.ok:
        error_box.show_error(parent, f"The service process could not be started: {started.error}",
                             doing="start the POP3 Service")
        return
    console.show_message(f"Starting the POP3 Service (process {started.pid}, log {started.log_path})…", 8000)
    polls = [0]
    timer = QTimer(parent)
    timer.setInterval(200)

    def poll() -> None:
        polls[0] += 1
        if client.is_connected or polls[0] > 150:
            timer.stop()
            timer.deleteLater()
            if client.is_connected:
                client.request("service.status", {}, lambda status: _report_listener_failures(console, status),
                               lambda _e: None)
            return
        if not service_process.is_alive(started.pid):
            timer.stop()
            timer.deleteLater()
            error_box.show_error(parent, "The service stopped right after starting:\n"
                                 + service_process.failure_reason(started.log_path), doing="start the POP3 Service")
            return
        client.retry_now()
    timer.timeout.connect(poll)
    timer.start()
