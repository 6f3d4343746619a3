"""Issue 13 §5: the banner's "Start the service" with a port taken says which listener did not
start and why (a real service process, a real socket holding the port), not only "(Stopped)"."""
from __future__ import annotations

import socket

import pytest
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QLabel

from gui import ipc_client, service_process
from gui.views.main_window import MainWindow
from gui.views.status_view import listener_failures
from tests.support import LISTENERS, free_port


# -- a console whose Start runs a real service with the arguments a test gives ------------------------
def _console_that_starts(qtbot, qsettings, monkeypatch, data_dir, extra: list[str]):
    """A console on ``data_dir`` (no service there yet) whose Start runs ``main.py service`` with ``extra``."""
    real_start = service_process.start_background
    monkeypatch.setattr(service_process, "start_background", lambda d, _extra=(): real_start(d, tuple(extra)))
    monkeypatch.setattr(ipc_client, "RETRY_MS", 100)
    client = ipc_client.IpcClient(data_dir)
    window = MainWindow(client, settings=qsettings)
    qtbot.addWidget(window)
    window.show()
    client.start()
    return client, window


def _ports_args(ports: dict[str, int]) -> list[str]:
    args = ["--bind", "127.0.0.1"]
    for name, port in ports.items():
        args += [f"--{name}-port", str(port)]
    return args


def _free_ports_args(**given: int) -> list[str]:
    """Every listener on a free port, but those ``given`` a port (``pop3=PORT``)."""
    return _ports_args({name: given.get(name) or free_port() for name in LISTENERS})


def _hold(port: int) -> socket.socket:
    """A socket listening on ``port`` (0: any), as another program would."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", port))
    sock.listen(1)
    return sock


@pytest.fixture
def taken_port():
    """A port another program listens on."""
    sock = _hold(0)
    yield sock.getsockname()[1]
    sock.close()


def test_start_with_a_port_taken_says_which_listener_and_why(qtbot, tmp_path, qsettings, errors, monkeypatch,
                                                            taken_port):
    data_dir = tmp_path / "data"
    client, window = _console_that_starts(qtbot, qsettings, monkeypatch, data_dir, _free_ports_args(pop3=taken_port))
    try:
        window.start_service_process()
        qtbot.waitUntil(lambda: any("listeners are not running" in e for e in errors), timeout=30_000)
        message = next(e for e in errors if "listeners are not running" in e)
        assert f"pop3 (port {taken_port})" in message and "in use" in message, message
        # The Service Status table says it in the State column, in red, with the reason.
        window.status_view.refresh()
        table = window.status_view.listeners

        def pop3_row():
            for r in range(table.rowCount()):
                # The row shows the catalog's label ("POP3"); the listener's name is its tooltip.
                if table.item(r, 0) is not None and table.item(r, 0).toolTip() == "pop3":
                    return r
            return None
        qtbot.waitUntil(lambda: pop3_row() is not None)
        state = table.item(pop3_row(), 2)
        assert state.text().startswith("stopped: cannot listen on 127.0.0.1:") and "in use" in state.text()
        assert state.foreground().color() == QColor("#a4262c")
    finally:
        client.stop()
        pid = service_process.read_pid(data_dir)
        if pid:
            service_process.terminate(pid)


def test_listener_failures_name_only_listeners_that_failed():
    status = {"listeners": [
        {"name": "pop3", "state": "stopped", "port": 110, "error": "cannot listen on 0.0.0.0:110: Permission denied"},
        {"name": "smtp", "state": "running", "port": 25, "error": None},
        {"name": "smtps", "state": "stopped", "port": 465, "error": None},   # stopped by the administrator
    ]}
    assert listener_failures(status) == ["pop3 (port 110): cannot listen on 0.0.0.0:110: Permission denied"]


def test_server_properties_show_the_port_this_run_uses(qtbot, service, qsettings, errors, monkeypatch):
    """Against a real service run with port overrides: the POP3 port field says which port is in use."""
    from tests.gui.conftest import open_window
    monkeypatch.setattr(ipc_client, "RETRY_MS", 100)
    client = ipc_client.IpcClient(service.data_dir)
    window = open_window(qtbot, client, qsettings)
    try:
        qtbot.waitUntil(lambda: bool(window.controller.server_info.get("listeners")))
        dialogs = []
        monkeypatch.setattr(window, "open_dialog", lambda dialog, _key: dialogs.append(dialog))
        window.tree.setCurrentIndex(window.tree_model.index_of(window.tree_model.server))
        window.named_actions["properties"].trigger()
        qtbot.waitUntil(lambda: bool(dialogs))
        note = dialogs[0].findChild(QLabel, "in_use_port")
        assert note is not None and f"uses port {service.ports['pop3']}" in note.text()
    finally:
        client.stop()


# -- Issue 15: every way to press Start says which listener failed and why --------------------------
@pytest.mark.parametrize("how", ["toolbar", "action menu", "restart"])
def test_start_on_a_running_service_names_the_listener_that_did_not_start(qtbot, service, qsettings, errors,
                                                                         monkeypatch, how):
    """A real service whose POP3 port another program took while its listener was stopped."""
    from tests.gui.conftest import open_window
    from tests.gui.test_main_window import trigger
    monkeypatch.setattr(ipc_client, "RETRY_MS", 100)
    port = service.ports["pop3"]
    service.call("service.control", action="stop", listener="pop3")
    holder = _hold(port)
    client = ipc_client.IpcClient(service.data_dir)
    window = open_window(qtbot, client, qsettings)
    try:
        qtbot.waitUntil(lambda: window.controller.service_state == "partial")
        if how == "toolbar":
            window.named_actions["start"].trigger()
        elif how == "action menu":
            window.select_server()
            window.action_menu.aboutToShow.emit()
            trigger(window.action_menu, "Start")
        else:
            window.controller.restart_service()
        qtbot.waitUntil(lambda: any("could not start" in e for e in errors))
        message = next(e for e in errors if "could not start" in e)
        assert message.startswith("Could not start the POP3 Service.")
        assert f"pop3 (port {port}): cannot listen on 127.0.0.1:{port}" in message and "in use" in message, message
        assert "smtp" not in message                 # only the one that failed
        assert len(errors) == 1, errors
    finally:
        holder.close()
        client.stop()


def _start_from_banner(qtbot, tmp_path, qsettings, monkeypatch, extra: list[str], data_dir=None):
    data_dir = data_dir or tmp_path / "data"
    client, window = _console_that_starts(qtbot, qsettings, monkeypatch, data_dir, extra)
    qtbot.waitUntil(window.banner.isVisible)
    window.banner.start_button.click()
    return client, data_dir


def test_a_service_that_cannot_open_its_database_says_why(qtbot, tmp_path, qsettings, errors, monkeypatch):
    args = _free_ports_args() + ["--db-url", f"postgresql+psycopg://pop3@127.0.0.1:{free_port()}/mail"]
    client, data_dir = _start_from_banner(qtbot, tmp_path, qsettings, monkeypatch, args)
    try:
        qtbot.waitUntil(lambda: bool(errors), timeout=30_000)
        assert "stopped right after starting" in errors[0] and "cannot open the database" in errors[0], errors
        # The service's own words, not its log's timestamps, levels or SQLAlchemy's link.
        assert "CRITICAL" not in errors[0] and "sqlalche.me" not in errors[0], errors
    finally:
        client.stop()


def test_the_failure_reason_is_the_last_error_entry_without_its_log_prefix(tmp_path):
    log = tmp_path / "service.out"
    log.write_text("2026-11-30 04:45:24,001 INFO pop3svc: starting\n"
                   "2026-11-30 04:45:24,115 CRITICAL pop3svc: cannot open the database: Connection refused\n"
                   "\tIs the server running on that host?\n"
                   "(Background on this error at: https://sqlalche.me/e/21/e3q8)\n")
    assert service_process.failure_reason(log) == ("cannot open the database: Connection refused\n"
                                                   "Is the server running on that host?")
    log.write_text("Traceback (most recent call last):\nImportError: no module named x\n")
    assert "ImportError" in service_process.failure_reason(log)
    assert service_process.failure_reason(tmp_path / "missing") == ""


def test_a_data_directory_that_cannot_be_made_says_why(qtbot, tmp_path, qsettings, errors, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    client, _ = _start_from_banner(qtbot, tmp_path, qsettings, monkeypatch, _free_ports_args(),
                                   data_dir=blocker / "data")
    try:
        qtbot.waitUntil(lambda: bool(errors))
        assert "could not be started" in errors[0] and "Not a directory" in errors[0], errors
    finally:
        client.stop()


def test_a_service_with_every_port_taken_names_every_listener(qtbot, tmp_path, qsettings, errors, monkeypatch):
    ports = {name: free_port() for name in LISTENERS}
    holders = [_hold(p) for p in ports.values()]
    client, data_dir = _start_from_banner(qtbot, tmp_path, qsettings, monkeypatch, _ports_args(ports))
    try:
        qtbot.waitUntil(lambda: bool(errors), timeout=30_000)
        for name, port in ports.items():
            assert f"{name} (port {port}): cannot listen on 127.0.0.1:{port}" in errors[0], errors
    finally:
        for h in holders:
            h.close()
        client.stop()
        pid = service_process.read_pid(data_dir)
        if pid:
            service_process.terminate(pid)
