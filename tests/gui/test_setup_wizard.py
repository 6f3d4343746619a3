"""The setup wizard walked as a person would: every page, the branches (service mode, auth method),
invalid input on every page (Next stays disabled and the page says why), and Finish against the
real service, which real clients (poplib, smtplib) then use. A failed Finish names its step and
leaves nothing behind, so Finish works on the second try; the wizard re-runs on a live server."""
from __future__ import annotations

import datetime as dt
import os
import poplib
import signal
import smtplib
import socket
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QWizard

from core.ipc.client import AdminClient
from gui import service_process
from gui.wizard import checks
from gui.wizard.setup_wizard import Page, SetupWizard
from tests.support import ROOT, free_port
from tests.support import unverified_tls as unverified

PASSWORD = "Wizard-pass-1"
WAIT_MS = 90_000


def next_button(wizard: QWizard):
    return wizard.button(QWizard.WizardButton.NextButton)


def go_next(qtbot, wizard: QWizard) -> None:
    assert next_button(wizard).isEnabled(), wizard.currentPage().reason.text()
    qtbot.mouseClick(next_button(wizard), Qt.MouseButton.LeftButton)


def blocked(wizard: QWizard, why: str) -> None:
    """Next is disabled and the page shows a reason containing ``why``."""
    page = wizard.currentPage()
    assert not page.isComplete()
    assert not next_button(wizard).isEnabled() or wizard.currentId() == Page.SUMMARY
    assert why in page.reason.text(), page.reason.text()
    assert page.reason.isVisibleTo(page)


def make_wizard(qtbot, data_dir: Path, **kwargs) -> SetupWizard:
    wizard = SetupWizard(data_dir, bind_host="127.0.0.1", service_args=("--bind", "127.0.0.1"), **kwargs)
    qtbot.addWidget(wizard)
    wizard.show()
    return wizard


@pytest.fixture(autouse=True)
def earlier_tests_settled(qtbot):
    """Let callbacks that earlier tests left queued (a fake client answering a window that is gone)
    run now, outside this test: these tests spin the event loop for seconds while the service starts."""
    with qtbot.capture_exceptions():
        qtbot.wait(20)


@pytest.fixture
def started_services():
    """Service processes a test's wizard started: stopped at the end, whatever happened."""
    dirs: list[Path] = []
    yield dirs
    for data_dir in dirs:
        pid = service_process.read_pid(data_dir)
        if pid:
            os.kill(pid, signal.SIGTERM)
            for _ in range(200):
                if not service_process.is_alive(pid):
                    break
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass
                import time
                time.sleep(0.05)   # teardown only: bounded wait for the process to go


def walk_to_summary(qtbot, wizard: SetupWizard, *, mailroot: Path, ports: dict[str, int], domain: str,
                    mailbox: str, auth: str = "passwordfile", system: bool = False) -> None:
    assert wizard.currentId() == Page.WELCOME
    go_next(qtbot, wizard)
    assert wizard.currentId() == Page.SERVICE
    page = wizard.currentPage()
    (page.system if system else page.background).setChecked(True)
    go_next(qtbot, wizard)
    assert wizard.currentId() == Page.AUTH
    wizard.currentPage().buttons[auth].setChecked(True)
    go_next(qtbot, wizard)
    assert wizard.currentId() == Page.STORAGE
    page = wizard.currentPage()
    page.root.clear()
    qtbot.keyClicks(page.root, str(mailroot))
    assert "free of" in page.space.text()
    go_next(qtbot, wizard)
    assert wizard.currentId() == Page.PORTS
    page = wizard.currentPage()
    for key, port in ports.items():
        page.spins[key].setValue(port)
    go_next(qtbot, wizard)
    assert wizard.currentId() == Page.SECURITY
    page = wizard.currentPage()
    page.hostname.clear()
    qtbot.keyClicks(page.hostname, "localhost")
    go_next(qtbot, wizard)
    assert wizard.currentId() == Page.FIRST_MAILBOX
    page = wizard.currentPage()
    qtbot.keyClicks(page.domain, domain)
    qtbot.keyClicks(page.mailbox, mailbox)
    qtbot.keyClicks(page.password, PASSWORD)
    qtbot.keyClicks(page.confirm, PASSWORD)
    go_next(qtbot, wizard)
    assert wizard.currentId() == Page.SUMMARY


def free_ports() -> dict[str, int]:
    ports: dict[str, int] = {}
    while len(set(ports.values())) < 5:
        ports = {k: free_port() for k in ("port", "pop3s_port", "smtp_port", "submission_port", "smtps_port")}
    return ports


def finish(qtbot, wizard: SetupWizard) -> None:
    qtbot.mouseClick(wizard.button(QWizard.WizardButton.FinishButton), Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: wizard.runner is not None and not wizard.runner.running, timeout=WAIT_MS)


def mail_flows(ports: dict[str, int], address: str) -> None:
    """A real client sends through submission (STARTTLS + AUTH) and fetches over POP3 (STLS)."""
    with smtplib.SMTP("127.0.0.1", ports["submission_port"], timeout=15) as smtp:
        smtp.starttls(context=unverified())
        smtp.login(address, PASSWORD)
        smtp.sendmail(address, [address], b"Subject: hello from the wizard\r\n\r\nIt works.\r\n")
    pop = poplib.POP3("127.0.0.1", ports["port"], timeout=15)
    pop.stls(unverified())
    pop.user(address)
    pop.pass_(PASSWORD)
    assert pop.stat()[0] == 1
    assert b"It works." in b"\n".join(pop.retr(1)[1])
    pop.quit()
    pops = poplib.POP3_SSL("127.0.0.1", ports["pop3s_port"], timeout=15, context=unverified())
    pops.user(address)
    pops.pass_(PASSWORD)
    assert pops.stat()[0] == 1
    pops.quit()


# -- Finish against the real service -----------------------------------------------------------------
def test_first_start_in_the_background_ends_with_a_working_mail_server(qtbot, tmp_path, started_services):
    data_dir = tmp_path / "data"
    started_services.append(data_dir)
    wizard = make_wizard(qtbot, data_dir)
    ports = free_ports()
    walk_to_summary(qtbot, wizard, mailroot=tmp_path / "mail", ports=ports, domain="wizard.example",
                    mailbox="alice")
    summary = wizard.currentPage().text.text()
    assert "alice@wizard.example" in summary and str(ports["port"]) in summary
    finish(qtbot, wizard)
    assert wizard.failure == ""
    assert wizard.result() == QWizard.DialogCode.Accepted
    assert wizard.result_info["address"] == "alice@wizard.example"
    pid = service_process.read_pid(data_dir)
    assert pid and (data_dir / "logs" / "service.out").exists()
    with AdminClient(data_dir) as admin:
        values = admin.call("settings.get")
        assert values["mailroot"] == str(tmp_path / "mail")
        assert {k: values[k] for k in ports} == ports
        assert admin.call("server.info")["tls"]["names"][0] == "localhost"
    mail_flows(ports, "alice@wizard.example")
    assert list((tmp_path / "mail" / "wizard.example" / "alice").rglob("*/*"))   # mail is in the chosen root

    # The console opens on the new domain and shows the client settings of the first mailbox.
    from PySide6.QtCore import QSettings

    from gui.app import open_console
    from gui.dialogs.mailbox_created import MailboxCreatedDialog
    window = open_console(wizard.client_after_setup, QSettings(str(tmp_path / "c.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(window)
    window.show_first_mailbox("wizard.example", wizard.result_info)
    qtbot.waitUntil(lambda: isinstance(window.dialog, MailboxCreatedDialog), timeout=10_000)
    assert window.current_node().key == "wizard.example"
    text = window.dialog.text()
    assert "alice@wizard.example" in text and str(ports["port"]) in text and str(ports["submission_port"]) in text
    window.dialog.accept()


def test_system_service_mode_installs_then_configures(qtbot, tmp_path, started_services, monkeypatch):
    """The system branch runs 'service install' (here a stand-in that starts the service the way
    systemd would, since this machine has no systemd) and then configures it the same way."""
    data_dir = tmp_path / "sysdata"
    started_services.append(data_dir)
    monkeypatch.setattr(SetupWizard, "system_service_unavailable", lambda self: "")
    installer = tmp_path / "fake_install.py"
    installer.write_text(
        "import subprocess, sys\n"
        f"open({str(tmp_path / 'install.args')!r}, 'w').write(repr(sys.argv[1:]))\n"
        f"d = {str(data_dir)!r}\n"
        "import os; os.makedirs(d + '/logs', exist_ok=True)\n"
        f"subprocess.Popen([sys.executable, {str(ROOT / 'main.py')!r}, 'service', '--data-dir', d, '--bind', "
        "'127.0.0.1'], stdout=open(d + '/logs/service.out', 'ab'), stderr=subprocess.STDOUT, "
        "start_new_session=True)\n"
        "print('installed')\n")
    wizard = make_wizard(qtbot, data_dir, install_command=[sys.executable, str(installer)])
    ports = free_ports()
    walk_to_summary(qtbot, wizard, mailroot=data_dir / "mailroot", ports=ports, domain="sys.example",
                    mailbox="bob", system=True)
    assert "system service" in wizard.currentPage().text.text()
    finish(qtbot, wizard)
    assert wizard.failure == ""
    mail_flows(ports, "bob@sys.example")
    # The unit has no one-run overrides: the chosen address and ports are stored before its first start.
    import ast
    args = ast.literal_eval((tmp_path / "install.args").read_text())
    settings = [args[i + 1] for i, a in enumerate(args) if a == "--setting"]
    assert f"port={ports['port']}" in settings and f"smtp_port={ports['smtp_port']}" in settings
    assert any(s.startswith("bind_address=") for s in settings) and any(s.startswith("hostname=") for s in settings)


def test_a_failed_finish_names_the_step_undoes_it_and_works_the_second_time(qtbot, tmp_path, started_services):
    data_dir = tmp_path / "data"
    started_services.append(data_dir)
    wizard = make_wizard(qtbot, data_dir)
    ports = free_ports()
    walk_to_summary(qtbot, wizard, mailroot=tmp_path / "mail", ports=ports, domain="retry.example",
                    mailbox="carol")
    squatter = socket.socket()               # another program takes the POP3 port after the check
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind(("127.0.0.1", ports["port"]))
    squatter.listen(1)
    try:
        finish(qtbot, wizard)
        assert wizard.failure.startswith("Step 'check the listeners' failed: these listeners are not running: pop3")
        assert "Step 'check the listeners' failed" in wizard.currentPage().progress.text()
        assert wizard.isVisible() and wizard.currentId() == Page.SUMMARY
        qtbot.waitUntil(lambda: not data_dir.exists(), timeout=20_000)   # nothing half set up is left
    finally:
        squatter.close()
    finish(qtbot, wizard)
    assert wizard.failure == ""
    assert wizard.result() == QWizard.DialogCode.Accepted
    mail_flows(ports, "carol@retry.example")


# -- invalid input on every page -------------------------------------------------------------------
def test_every_page_keeps_next_disabled_with_the_reason(qtbot, tmp_path, monkeypatch):
    wizard = make_wizard(qtbot, tmp_path / "data")
    go_next(qtbot, wizard)

    # Where the service runs: the system service is offered only where it can be installed.
    monkeypatch.setattr(SetupWizard, "system_service_unavailable", lambda self: "systemd is not running here")
    page = wizard.currentPage()
    page.initializePage()
    assert not page.system.isEnabled() and "systemd is not running here" in page.system_note.text()
    page.system.setChecked(True)
    blocked(wizard, "systemd is not running here")
    page.background.setChecked(True)
    go_next(qtbot, wizard)
    go_next(qtbot, wizard)                      # auth: the password file is the default

    # Mail storage
    page = wizard.currentPage()
    assert wizard.currentId() == Page.STORAGE
    for text, why in (("", "Give the folder"), ("relative/mail", "full path"),
                      (str(Path(__file__)), "is a file, not a folder")):
        page.root.setText(text)
        blocked(wizard, why)
    if os.geteuid() != 0:
        page.root.setText("/proc/mail")
        blocked(wizard, "You may not write")
    page.root.setText(str(tmp_path / "mail"))
    go_next(qtbot, wizard)

    # Ports: in use, twice the same, privileged without the rights (alternatives offered)
    page = wizard.currentPage()
    for key, port in free_ports().items():
        page.spins[key].setValue(port)
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        page.spins["port"].setValue(taken.getsockname()[1])
        blocked(wizard, "in use by another program")
    finally:
        taken.close()
    page.spins["port"].setValue(page.spins["smtp_port"].value())
    blocked(wizard, "given for two listeners")
    page.spins["port"].setValue(free_port())
    assert page.isComplete()
    monkeypatch.setattr(checks, "can_bind_privileged", lambda: False)
    page.spins["smtp_port"].setValue(25)
    blocked(wizard, "SMTP port 25: needs administrator rights")
    assert page.use_alt["smtp_port"].isVisible() and page.use_alt["smtp_port"].text() == "Use 2525"
    assert page.use_all.isVisible()
    page.spins["smtp_port"].setValue(free_port())
    go_next(qtbot, wizard)

    # Security: a host name, PEM files that exist, match and are current
    page = wizard.currentPage()
    page.hostname.setText("not a host!")
    blocked(wizard, "host name")
    page.hostname.setText("mail.example.com")
    page.choose.setChecked(True)
    blocked(wizard, "Choose the certificate file")
    cert, key, other_key = write_pems(tmp_path)
    page.cert_path.setText(str(tmp_path / "missing.pem"))
    page.key_path.setText(str(key))
    blocked(wizard, "Cannot read")
    page.cert_path.setText(str(key))
    blocked(wizard, "not a PEM certificate")
    page.cert_path.setText(str(cert))
    page.key_path.setText(str(other_key))
    blocked(wizard, "does not belong to this certificate")
    expired_cert, expired_key = write_pems(tmp_path, days=-1, name="old")[:2]
    page.cert_path.setText(str(expired_cert))
    page.key_path.setText(str(expired_key))
    blocked(wizard, "expired")
    page.cert_path.setText(str(cert))
    page.key_path.setText(str(key))
    assert page.isComplete()
    assert "CN=mail.wizard.test" in page.details.text() and "Expires:" in page.details.text()
    go_next(qtbot, wizard)

    # First domain and mailbox
    page = wizard.currentPage()
    blocked(wizard, "Give the e-mail domain")
    qtbot.keyClicks(page.domain, "nodots")
    blocked(wizard, "not fully qualified")
    page.domain.setText("example.com")
    blocked(wizard, "first mailbox")
    page.mailbox.setText("bad/name")
    blocked(wizard, "/")
    page.mailbox.setText("alice")
    blocked(wizard, "password")
    page.password.setText("short")
    page.confirm.setText("short")
    blocked(wizard, "at least 8")
    page.password.setText("Long-enough-1")
    page.confirm.setText("Long-enough-2")
    blocked(wizard, "differ")
    page.confirm.setText("Long-enough-1")
    go_next(qtbot, wizard)
    assert wizard.currentId() == Page.SUMMARY
    assert "from the chosen PEM files" in wizard.currentPage().text.text()
    plan = wizard.plan()
    assert plan.tls[0] == "import" and "BEGIN CERTIFICATE" in plan.tls[1]


def write_pems(tmp_path: Path, *, days: int = 90, name: str = "good") -> tuple[Path, Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key, other = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mail.wizard.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=400))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("mail.wizard.test")]), critical=False)
            .sign(key, hashes.SHA256()))
    paths = tmp_path / f"{name}.crt", tmp_path / f"{name}.key", tmp_path / f"{name}-other.key"
    paths[0].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    for path, k in ((paths[1], key), (paths[2], other)):
        path.write_bytes(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()))
    return paths


# -- the authentication branches -----------------------------------------------------------------------
@pytest.mark.parametrize("method", ["passwordfile", "local", "directory"])
def test_each_auth_method_takes_its_own_path(qtbot, tmp_path, method):
    wizard = make_wizard(qtbot, tmp_path / "data")
    go_next(qtbot, wizard)
    go_next(qtbot, wizard)
    wizard.currentPage().buttons[method].setChecked(True)
    assert "Choose this" in wizard.currentPage().findChildren(type(wizard.currentPage().reason))[1].text()
    go_next(qtbot, wizard)
    if method == "directory":
        assert wizard.currentId() == Page.DIRECTORY
        page = wizard.currentPage()
        calls = []

        def tester(*values):
            calls.append(values)
            return (values[1] == "dc=example,dc=com", "Bound, base found" if values[1] == "dc=example,dc=com"
                    else "base DN not found")
        page.tester = tester
        blocked(wizard, "directory server")
        page.server.setText("http://dc1.example.com")
        blocked(wizard, "not an LDAP server URL")
        page.server.setText("ldaps://dc1.example.com")
        blocked(wizard, "base DN")
        page.base_dn.setText("dc=wrong,dc=com")
        page.bind_dn.setText("cn=svc,dc=example,dc=com")
        blocked(wizard, "password of the bind account")
        page.password.setText("bind-secret")
        blocked(wizard, "Test the connection")
        qtbot.mouseClick(page.test_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: not page.testing, timeout=5000)
        assert "base DN not found" in page.result.text()
        blocked(wizard, "Test the connection")
        page.base_dn.setText("dc=example,dc=com")
        qtbot.mouseClick(page.test_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: page.isComplete(), timeout=5000)
        assert "✔" in page.result.text() and len(calls) == 2
        page.password.setText("changed")                 # a change means testing again
        blocked(wizard, "Test the connection")
        page.password.setText("bind-secret")
        qtbot.mouseClick(page.test_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: page.isComplete(), timeout=5000)
        go_next(qtbot, wizard)
    assert wizard.currentId() == Page.STORAGE
    go_next(qtbot, wizard)
    page = wizard.currentPage()
    for key, port in free_ports().items():
        page.spins[key].setValue(port)
    go_next(qtbot, wizard)
    go_next(qtbot, wizard)
    page = wizard.currentPage()
    page.domain.setText("example.com")
    page.mailbox.setText("alice")
    if method == "passwordfile":
        assert page.password.isEnabled()
        blocked(wizard, "password")
        page.password.setText(PASSWORD)
        page.confirm.setText(PASSWORD)
    else:
        assert not page.password.isEnabled() and "existing account" in page.password_note.text()
    go_next(qtbot, wizard)
    plan = wizard.plan()
    assert plan.auth == method
    if method == "directory":
        assert plan.ldap == {"ldap_urls": "ldaps://dc1.example.com", "ldap_base_dn": "dc=example,dc=com",
                             "ldap_bind_dn": "cn=svc,dc=example,dc=com", "ldap_bind_password": "bind-secret"}
    assert ("Authentication", {"passwordfile": "encrypted password file", "local": "local accounts (PAM)",
                               "directory": "directory (LDAP / Active Directory)"}[method]) in plan.summary_rows()


def test_the_ldap_test_reports_an_unreachable_server():
    from gui.wizard.pages import ldap_test
    ok, text = ldap_test(f"ldap://127.0.0.1:{free_port()}", "dc=example,dc=com", "cn=x,dc=example,dc=com", "pw")
    assert not ok and "127.0.0.1" in text


def test_without_rights_the_unprivileged_ports_are_proposed(qtbot, tmp_path, monkeypatch):
    monkeypatch.setattr(checks, "can_bind_privileged", lambda: False)
    wizard = make_wizard(qtbot, tmp_path / "data")
    assert wizard.initial_ports == {"port": 1110, "pop3s_port": 1995, "smtp_port": 2525, "submission_port": 1587,
                                    "smtps_port": 1465}


# -- first start detection ----------------------------------------------------------------------------------
def test_the_wizard_is_offered_only_on_first_use(tmp_path, service):
    from gui.app import needs_setup
    assert needs_setup(tmp_path / "fresh")
    (tmp_path / "existing").mkdir()
    assert not needs_setup(tmp_path / "existing")      # a data directory: the console with its banner
    assert not needs_setup(service.data_dir)


# -- re-run from the console on a live server ----------------------------------------------------------
@pytest.fixture
def stored_ports_service(tmp_path):
    """A service that listens on its stored port settings (no per-run overrides), as one set up by
    the wizard does: first started with overrides to store free ports, then again without."""
    from tests.support import ServiceProcess
    first = ServiceProcess(tmp_path / "data").start()
    for listener, key in (("pop3", "port"), ("pop3s", "pop3s_port"), ("smtp", "smtp_port"),
                          ("submission", "submission_port"), ("smtps", "smtps_port")):
        first.call("settings.set", name=key, value=first.ports[listener])
    first.stop()
    proc = ServiceProcess(tmp_path / "data")
    proc.ports = {}
    proc.start()
    yield proc
    proc.stop()


def test_rerun_from_the_console_changes_ports_and_certificate_and_keeps_the_mail(qtbot, stored_ports_service,
                                                                                 qsettings, errors, monkeypatch):
    from gui import ipc_client
    from gui.ipc_client import IpcClient
    from tests.gui.conftest import open_window
    service = stored_ports_service
    monkeypatch.setattr(ipc_client, "RETRY_MS", 100)
    service.add_mailbox("keep@rerun.example", PASSWORD)
    client = IpcClient(service.data_dir)
    window = open_window(qtbot, client, qsettings)
    before = service.call("server.info")["tls"]
    window.setup_action.trigger()
    qtbot.waitUntil(lambda: isinstance(window.dialog, SetupWizard), timeout=5000)
    wizard = window.dialog
    assert wizard.currentId() == Page.STORAGE                 # only ports, certificate, storage
    assert wizard.page_of(Page.STORAGE).root.text() == service.call("settings.get")["mailroot"]
    go_next(qtbot, wizard)
    page = wizard.currentPage()
    assert page.isComplete(), page.reason.text()               # its own ports count as usable
    assert "in use by this service" in page.status["port"].text()
    new_port = free_port()
    page.spins["port"].setValue(new_port)
    go_next(qtbot, wizard)
    page = wizard.currentPage()
    page.hostname.setText("renewed.example.com")
    go_next(qtbot, wizard)
    assert wizard.currentId() == Page.SUMMARY and "First mailbox" not in wizard.currentPage().text.text()
    finish(qtbot, wizard)
    assert wizard.failure == ""
    status = {item["name"]: item for item in service.call("service.status")["listeners"]}
    assert status["pop3"]["port"] == new_port and status["pop3"]["state"] == "running"
    after = service.call("server.info")["tls"]
    assert after["names"][0] == "renewed.example.com" and after["subject"] != before["subject"]
    assert [m["name"] for m in service.call("mailbox.list", domain="rerun.example")["items"]] == ["keep"]
    pop = poplib.POP3("127.0.0.1", new_port, timeout=10)
    pop.stls(unverified())
    pop.user("keep@rerun.example")
    pop.pass_(PASSWORD)
    pop.quit()
    client.stop()


def test_every_mnemonic_label_has_a_field_to_focus(qtbot, tmp_path):
    """An '&' in a form label works only with a buddy; without one Qt prints the '&' itself (the
    storage and first-mailbox pages did, beside a field in a row layout)."""
    from PySide6.QtWidgets import QLabel

    wizard = make_wizard(qtbot, tmp_path / "data")
    orphans = []
    for page_id in wizard.pageIds():
        for label in wizard.page(page_id).findChildren(QLabel):
            text = label.text().replace("&&", "")
            if "&" in text and not text.lstrip().startswith("<") and label.buddy() is None:
                orphans.append(f"{type(wizard.page(page_id)).__name__}: {label.text()!r}")
    assert orphans == []
