"""The setup wizard on real paths (issue 13 §4, §5): Finish starts the service once, on the chosen
address and ports (never the defaults on every address), and keeps that process; the public mail
host name is its own field and is what greetings, Received: lines, the certificate, the client
settings and the console's server node say; Back keeps what was typed; after a failed Finish the
port checks run again."""
from __future__ import annotations

import os
import poplib
import re
import smtplib
import socket
from pathlib import Path

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QWizard

from core.ipc.client import AdminClient
from gui import service_process
from gui.wizard.setup_wizard import Page, SetupWizard
from tests.gui.test_setup_wizard import (  # noqa: F401
    PASSWORD,
    earlier_tests_settled,
    finish,
    free_ports,
    go_next,
    started_services,
    stored_ports_service,
)
from tests.support import listening_sockets, unverified_tls, wait_for

HOST = "mail.wizard-paths.test"
DEFAULT_PORTS = {110, 995, 25, 587, 465, 1110, 1995, 2525, 1587, 1465}


def make_wizard(qtbot, data_dir: Path) -> SetupWizard:
    """As the console makes it on first use: no command-line extras for the service."""
    wizard = SetupWizard(data_dir)
    qtbot.addWidget(wizard)
    wizard.show()
    return wizard


def walk(qtbot, wizard: SetupWizard, *, mailroot: Path | None, address: str, ports: dict[str, int], domain: str,
         mailbox: str = "alice") -> None:
    for _ in range(3):                       # welcome, where it runs (background), password file
        go_next(qtbot, wizard)
    page = wizard.currentPage()
    if mailroot is not None:
        page.root.setText(str(mailroot))
    go_next(qtbot, wizard)
    assert wizard.currentId() == Page.PORTS
    page = wizard.currentPage()
    assert page.address.text() == ""                       # every address, unless the user says otherwise
    qtbot.keyClicks(page.address, address)
    for key, port in ports.items():
        page.spins[key].setValue(port)
    go_next(qtbot, wizard)
    assert wizard.currentId() == Page.SECURITY
    page = wizard.currentPage()
    page.hostname.setText(HOST)
    go_next(qtbot, wizard)
    page = wizard.currentPage()
    for edit, text in ((page.domain, domain), (page.mailbox, mailbox), (page.password, PASSWORD),
                       (page.confirm, PASSWORD)):
        edit.setText(text)
    go_next(qtbot, wizard)
    assert wizard.currentId() == Page.SUMMARY


class SocketWatch:
    """Samples the service process's listening sockets every few milliseconds while Finish runs
    (from the moment the wizard starts it: the service writes its pid file only after binding)."""

    def __init__(self, wizard: SetupWizard, data_dir: Path) -> None:
        self.wizard = wizard
        self.data_dir = data_dir
        self.pids: set[int] = set()
        self.sockets: set[tuple[str, int]] = set()
        self.timer = QTimer()
        self.timer.setInterval(5)
        self.timer.timeout.connect(self.sample)
        self.timer.start()

    def sample(self) -> None:
        started = self.wizard.runner.started_pid if self.wizard.runner is not None else None
        for candidate in (service_process.read_pid(self.data_dir), started):
            if candidate and service_process.is_alive(candidate):
                self.pids.add(candidate)
                try:
                    self.sockets |= listening_sockets(candidate)
                except OSError:   # it ended meanwhile
                    pass

    def stop(self) -> None:
        self.sample()
        self.timer.stop()


def logged_binds(data_dir: Path) -> set[tuple[str, int]]:
    """Every (address, port) a mail listener ran on, from the service log."""
    text = (data_dir / "logs" / "service.log").read_text(errors="replace")
    return {(host, int(port)) for host, port in re.findall(r"listener \w+ running on ([\d.:a-f]+):(\d+)", text)}


def test_finish_starts_the_service_once_on_the_chosen_address_and_ports(qtbot, tmp_path, started_services):
    data_dir = tmp_path / "data"
    started_services.append(data_dir)
    wizard = make_wizard(qtbot, data_dir)
    ports = free_ports()
    # The proposed mail root (a root elsewhere is switched to at once by a service whose store can;
    # see apply.SetupRunner._take_effect).
    walk(qtbot, wizard, mailroot=None, address="127.0.0.1", ports=ports, domain="paths.example")
    summary = wizard.currentPage().text.text()
    assert HOST in summary and "127.0.0.1" in summary
    watch = SocketWatch(wizard, data_dir)
    finish(qtbot, wizard)
    watch.stop()
    assert wizard.failure == "", wizard.failure
    assert wizard.result() == QWizard.DialogCode.Accepted

    chosen = {("127.0.0.1", port) for port in ports.values()}
    assert len(watch.pids) == 1, watch.pids                  # one process, never replaced
    assert watch.sockets == chosen, watch.sockets           # never 0.0.0.0, never a default port
    service_log = data_dir / "logs" / "service.log"
    wait_for(lambda: "POP3 Service ready" in service_log.read_text(errors="replace"), 20, what="the start-up log")
    assert logged_binds(data_dir) == chosen
    assert not {port for _a, port in watch.sockets} & DEFAULT_PORTS
    [pid] = watch.pids
    assert service_process.read_pid(data_dir) == pid
    log = service_log.read_text(errors="replace")
    assert log.count("POP3 Service ready") == 1 and "restarting the service process" not in log

    with AdminClient(data_dir) as admin:
        values = admin.call("settings.get")
        assert (values["bind_address"], values["hostname"]) == ("127.0.0.1", HOST)
        assert {k: values[k] for k in ports} == ports
        info = admin.call("server.info")
        assert info["hostname"] == HOST and info["tls"]["names"][0] == HOST
        assert Path(info["mailroot"]) == data_dir / "mailroot"

    # The host name is what the server says of itself: greeting, Received: line.
    address = "alice@paths.example"
    with smtplib.SMTP("127.0.0.1", ports["submission_port"], timeout=15) as smtp:
        assert HOST in smtp.ehlo()[1].decode()
        smtp.starttls(context=unverified_tls())
        smtp.login(address, PASSWORD)
        smtp.sendmail(address, [address], b"Subject: names\r\n\r\nbody\r\n")
    pop = poplib.POP3("127.0.0.1", ports["port"], timeout=15)
    assert HOST in pop.getwelcome().decode()
    pop.stls(unverified_tls())
    pop.user(address)
    pop.pass_(PASSWORD)
    message = b"\r\n".join(pop.retr(1)[1]).decode()
    assert f"by {HOST} (POP3 Service)" in message
    pop.quit()

    # The console: its server node and the first mailbox's client settings name the host.
    from PySide6.QtCore import QSettings

    from gui.app import open_console
    from gui.dialogs.mailbox_created import MailboxCreatedDialog
    window = open_console(wizard.client_after_setup, QSettings(str(tmp_path / "c.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(window)
    window.show_first_mailbox("paths.example", wizard.result_info)
    qtbot.waitUntil(lambda: isinstance(window.dialog, MailboxCreatedDialog), timeout=10_000)
    text = window.dialog.text()
    assert f"Incoming mail server (POP3): {HOST}" in text and f"Outgoing mail server (SMTP): {HOST}" in text
    window.dialog.accept()
    model = window.tree_model
    assert model.data(model.index_of(model.server), Qt.ItemDataRole.DisplayRole) == HOST

    # Started again the way the console's "Start the service" does (no flags): the same places.
    with AdminClient(data_dir) as admin:
        admin.call("service.shutdown", restart=False)
    wait_for(lambda: not service_process.is_alive(pid), 20, what="the service to stop")
    started = service_process.start_background(data_dir)
    assert started.ok, started.error

    def listening() -> bool:
        return service_process.is_alive(started.pid) and listening_sockets(started.pid) == chosen
    wait_for(listening, 30, interval=0.05, what="the restarted service to listen")


def test_back_keeps_what_was_typed(qtbot, tmp_path):
    wizard = make_wizard(qtbot, tmp_path / "data")
    ports = free_ports()
    for _ in range(3):
        go_next(qtbot, wizard)
    wizard.currentPage().root.setText(str(tmp_path / "kept-mail"))
    go_next(qtbot, wizard)
    page = wizard.currentPage()
    page.address.setText("127.0.0.1")
    for key, port in ports.items():
        page.spins[key].setValue(port)
    go_next(qtbot, wizard)
    wizard.currentPage().hostname.setText("kept.example.com")
    go_next(qtbot, wizard)
    first = wizard.currentPage()
    first.domain.setText("kept.example")
    first.mailbox.setText("bob")
    for _ in range(4):                        # back to the authentication page ...
        wizard.back()
    assert wizard.currentId() == Page.AUTH
    for _ in range(4):                        # ... and forward again: everything is still there
        go_next(qtbot, wizard)
    assert wizard.currentId() == Page.FIRST_MAILBOX
    assert (first.domain.text(), first.mailbox.text()) == ("kept.example", "bob")
    plan = wizard.plan()
    assert plan.mailroot == str(tmp_path / "kept-mail") and plan.ports == ports
    assert (plan.bind_address, plan.hostname, plan.tls) == ("127.0.0.1", "kept.example.com",
                                                           ("generate", "kept.example.com"))
    assert wizard.field("bind_address") == "127.0.0.1" and wizard.field("hostname") == "kept.example.com"


def test_a_bad_bind_address_keeps_next_disabled_with_the_reason(qtbot, tmp_path):
    wizard = make_wizard(qtbot, tmp_path / "data")
    for _ in range(4):
        go_next(qtbot, wizard)
    page = wizard.currentPage()
    for key, port in free_ports().items():
        page.spins[key].setValue(port)
    for text, why in (("mail.example.com", "is not an IP address"),
                      ("203.0.113.7", "is not an address of this computer")):   # TEST-NET-3, RFC 5737
        page.address.setText(text)
        assert not page.isComplete() and why in page.reason.text(), page.reason.text()
    page.address.setText("127.0.0.1")
    assert page.isComplete(), page.reason.text()


def test_after_a_failed_finish_the_port_checks_run_again(qtbot, tmp_path, started_services):
    data_dir = tmp_path / "data"
    started_services.append(data_dir)
    wizard = make_wizard(qtbot, data_dir)
    ports = free_ports()
    walk(qtbot, wizard, mailroot=tmp_path / "mail", address="127.0.0.1", ports=ports, domain="again.example")
    squatter = socket.socket()                 # another program takes the SMTP port after its check
    squatter.bind(("127.0.0.1", ports["smtp_port"]))
    squatter.listen(1)
    try:
        finish(qtbot, wizard)
        assert wizard.failure.startswith("Step 'check the listeners' failed"), wizard.failure
        qtbot.waitUntil(lambda: not data_dir.exists(), timeout=20_000)
        ports_page = wizard.page_of(Page.PORTS)
        assert "in use by another program" in ports_page.status["smtp_port"].text()
        progress = wizard.currentPage().progress.text()
        assert f"The port check now finds: SMTP port {ports['smtp_port']}: in use" in progress

        # Finish again with the port still taken: the checks refuse before anything starts.
        runner = wizard.runner
        qtbot.mouseClick(wizard.button(QWizard.WizardButton.FinishButton), Qt.MouseButton.LeftButton)
        assert wizard.runner is runner and not runner.running and not data_dir.exists()
        assert "The port check now finds" in wizard.currentPage().progress.text()
    finally:
        squatter.close()
    finish(qtbot, wizard)
    assert wizard.failure == "", wizard.failure
    assert wizard.result() == QWizard.DialogCode.Accepted
    assert os.path.exists(data_dir / "admin.sock")


def test_a_rerun_renames_the_server_at_once_without_a_restart(qtbot, stored_ports_service, qsettings, errors,
                                                              monkeypatch):
    """File → Set Up the Server with a new host name: the greeting, the window title and the
    tree's server node say it when Finish is done; neither the process nor a listener restarted."""
    from gui import ipc_client
    from gui.ipc_client import IpcClient
    from tests.gui.conftest import open_window
    service = stored_ports_service
    monkeypatch.setattr(ipc_client, "RETRY_MS", 100)
    window = open_window(qtbot, IpcClient(service.data_dir), qsettings)
    log = service.data_dir / "logs" / "service.log"
    # The admin channel answers before the listeners start: let the start-up finish its log first.
    wait_for(lambda: log.read_text(errors="replace").count("POP3 Service ready") == 2, 20,
             what="the service's start-up to be logged")
    before = log.read_text(errors="replace")
    window.setup_action.trigger()
    qtbot.waitUntil(lambda: isinstance(window.dialog, SetupWizard), timeout=5000)
    wizard = window.dialog
    go_next(qtbot, wizard)
    assert wizard.currentId() == Page.PORTS and wizard.currentPage().address.text() == ""   # the stored setting
    go_next(qtbot, wizard)
    wizard.currentPage().hostname.setText("Renamed.Example.com.")
    go_next(qtbot, wizard)
    finish(qtbot, wizard)
    assert wizard.failure == "", wizard.failure
    name = "renamed.example.com"
    model = window.tree_model
    qtbot.waitUntil(lambda: model.data(model.index_of(model.server), Qt.ItemDataRole.DisplayRole) == name,
                    timeout=10_000)
    assert name in window.windowTitle()
    assert service.call("server.info")["tls"]["names"][0] == name
    pop = poplib.POP3("127.0.0.1", service.call("settings.get", name="port")["port"], timeout=10)
    assert name in pop.getwelcome().decode()
    pop.quit()
    after = log.read_text(errors="replace")[len(before):]
    assert "POP3 Service ready" not in after and "running on" not in after, after
    window.client.stop()
