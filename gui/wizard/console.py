"""Where the console meets the wizard: File → Set Up the Server (re-run on a running service), the
welcome after the first setup (the new domain open, the mailbox's client settings shown), and the
banner's Start the service (the user's own background process)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QTimer

from gui import service_process
from gui.dialogs import error_box
from gui.views.status_view import listener_failures

if TYPE_CHECKING:
    from gui.views.main_window import MainWindow


def open_setup_wizard(window: MainWindow) -> None:
    """Re-run the wizard for ports, certificate and storage on the connected service."""
    from gui.ipc_client import IpcClient
    from gui.wizard.setup_wizard import SetupWizard

    client = window.client
    if not client.is_connected:
        error_box.show_error(window, "The wizard changes a running service; start the service first "
                             "(the bar at the top offers it).", doing="run the setup wizard")
        return
    if not isinstance(client, IpcClient) and not hasattr(client, "data_dir"):
        return

    def got_settings(values: dict[str, Any]) -> None:
        def got_status(status: dict[str, Any]) -> None:
            wizard = SetupWizard(Path(str(getattr(client, "data_dir", ""))), parent=window, client=client,
                                 current=values, listeners=list(status.get("listeners") or []),
                                 bind_host=_bind_host(status))
            wizard.setModal(True)
            window.dialog = wizard
            wizard.finished.connect(lambda _r: _refresh_after(window))
            wizard.open()
        client.request("service.status", {}, got_status,
                       lambda e: error_box.show_error(window, e, doing="read the service's state"))

    client.request("settings.get", {}, got_settings,
                   lambda e: error_box.show_error(window, e, doing="read the server properties"))


def _refresh_after(window: MainWindow) -> None:
    """After a re-run: the lists, and the server's name (window title, the tree's server node)."""
    window.do_refresh()
    if window.client.is_connected:
        window.client.request("server.info", {}, window._apply_server_info, lambda _e: None)


def _bind_host(status: dict[str, Any]) -> str:
    for item in status.get("listeners") or []:
        if item.get("address"):
            return str(item["address"])
    return "0.0.0.0"


def show_first_mailbox(window: MainWindow, domain: str, mailbox: dict[str, Any]) -> None:
    """After the first setup: select the new domain and show the client settings of its mailbox."""
    client = window.client
    model = window.tree_model

    def select() -> None:
        if window.select_domain(domain):
            try:
                model.domains_loaded.disconnect(select)
            except (RuntimeError, TypeError):
                pass
    model.domains_loaded.connect(select)
    select()

    def with_info(info: dict[str, Any]) -> None:
        window._apply_server_info(info)
        client.request("settings.get", {}, lambda values: (window._apply_settings(values),
                                                           window._mailbox_created(mailbox)), lambda _e: None)
    client.request("server.info", {}, with_info, lambda _e: None)


def _report_listener_failures(window: MainWindow, status: dict[str, Any]) -> None:
    """After Start: say which listeners could not start, and why (a port in use, no right to bind it)."""
    failures = listener_failures(status)
    if failures:
        error_box.show_error(window, "The service started, but these listeners are not running:\n"
                             + "\n".join(failures) + "\n\nChoose other ports in Server Properties, or free "
                             "these ones, then start the listeners again.", doing="start the POP3 Service")


def start_background_service(window: MainWindow) -> None:
    """The banner's 'Start the service': this user's own service process, detached, logging to the
    data directory; the console connects as soon as the admin socket answers."""
    data_dir = Path(str(getattr(window.client, "data_dir", "")))
    running = service_process.read_pid(data_dir)
    if running:
        window.statusBar().showMessage(f"The service is already running (process {running}); connecting…", 5000)
        window.client.retry_now()
        return
    started = service_process.start_background(data_dir)
    if not started.ok:
        error_box.show_error(window, f"The service process could not be started: {started.error}",
                             doing="start the POP3 Service")
        return
    window.statusBar().showMessage(f"Starting the POP3 Service (process {started.pid}, log {started.log_path})…",
                                   8000)
    polls = [0]
    timer = QTimer(window)
    timer.setInterval(200)

    def poll() -> None:
        polls[0] += 1
        if window.client.is_connected or polls[0] > 150:
            timer.stop()
            timer.deleteLater()
            if window.client.is_connected:
                window.client.request("service.status", {}, lambda status: _report_listener_failures(window, status),
                                      lambda _e: None)
            return
        if not service_process.is_alive(started.pid):
            timer.stop()
            timer.deleteLater()
            error_box.show_error(window, "The service stopped right after starting:\n"
                                 + service_process.tail(started.log_path), doing="start the POP3 Service")
            return
        window.client.retry_now()
    timer.timeout.connect(poll)
    timer.start()
