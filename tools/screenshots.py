"""Render the console's screenshots from a real running service into docs/screenshots/ (no display needed).

    python tools/screenshots.py [--out DIR] [--only NAME,NAME,...] [--activity-minutes N]

It starts ``python main.py service`` in a temporary directory on loopback ports, fills it the way an
office would (tools/sample_office.py: domains and mailboxes over the admin channel, mail over SMTP,
some of it fetched over POP3, a message stuck in the outgoing queue, bans from failed POP3 logons, an
admin token), starts a second service for the remote-administration pictures (and as the partner
company's server that Contoso's mail is relayed to), keeps ordinary traffic going for a few minutes
(--activity-minutes, default 3: the status page's charts show the minutes the service has recorded,
and a minute is recorded once it has ended; 0 skips this and the charts show no bars), then opens the real
console (MainWindow on the real IpcClient) and the real setup wizard, whose checks run against this
machine, and photographs them. Fusion style, a fixed window size and a temporary HOME; the services
and the temporary directory are removed afterwards, also when something fails.
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from PySide6.QtCore import QEventLoop, QItemSelectionModel, QSettings, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication, QDialog, QMessageBox, QWidget, QWizard  # noqa: E402

from gui.ipc_client import IpcClient  # noqa: E402
from gui.views.main_window import MainWindow  # noqa: E402
from gui.wizard.setup_wizard import Page, SetupWizard  # noqa: E402
from tools import directory_server  # noqa: E402
from tools.directory_server import DirectoryServer  # noqa: E402
from tools.directory_server import missing_reason as directory_missing_reason  # noqa: E402
from tools.real_service import RealService, free_port, wait_until  # noqa: E402
from tools.sample_office import (  # noqa: E402
    CONTOSO,
    Office,
    busy_minutes,
    fill_contoso,
    fill_fabrikam,
    route_to_partner,
)

WINDOW_SIZE = (1000, 620)
WIZARD_SIZE = (720, 560)
SETTLE_TIMEOUT_S = 30.0
ACTIVITY_MINUTES = 3          # minutes of traffic before the status pictures (--activity-minutes)
PARTNER = "fabrikam.net"      # the domain on the second service that Contoso's users send mail to


# -- waiting without blocking the console (its client answers on the Qt event loop) ----------------
def settle(ms: int = 150) -> None:
    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = SETTLE_TIMEOUT_S) -> Any:
    """Run the event loop until ``predicate`` holds; RuntimeError naming ``what`` after ``timeout``."""
    return wait_until(predicate, what, timeout, 0.03, pause=lambda seconds: settle(round(seconds * 1000)),
                      error=RuntimeError)


# -- the camera --------------------------------------------------------------------------------------
@dataclass
class Camera:
    """Saves the pictures asked for (all, or --only) into ``out``; remembers what it wrote."""

    out: Path
    wanted: frozenset[str]
    written: list[Path] = field(default_factory=list)

    def wants(self, *names: str) -> bool:
        return any(name in self.wanted for name in names)

    def taken(self, name: str) -> bool:
        return any(path.stem == name for path in self.written)

    def take(self, widget: QWidget, name: str) -> None:
        if name not in self.wanted:
            return
        settle(80)
        path = self.out / f"{name}.png"
        if not widget.grab().save(str(path)):
            raise RuntimeError(f"could not write {path}")
        self.written.append(path)
        print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}", flush=True)


@dataclass
class Stage:
    """What the scenes work with: the console on the Contoso service, and what the filling made."""

    camera: Camera
    tmp: Path
    contoso: RealService
    office: Office
    window: MainWindow
    fabrikam: RealService | None = None
    fabrikam_office: Office | None = None
    busy_until: int = 0       # the last minute of traffic (epoch seconds // 60) the charts must show; 0: none


# -- the scenes: each takes a few pictures; a scene runs when one of its pictures is wanted ----------
def overview(stage: Stage) -> None:
    window, camera = stage.window, stage.camera
    window.select_server()
    window.server_tabs.setCurrentWidget(window.domain_pane)
    settle(300)
    camera.take(window, "main-window-server")
    window.server_tabs.setCurrentWidget(window.status_view)
    settle(600)
    if stage.busy_until:
        wait_for(lambda: charts_show(window, stage.busy_until), "the charts to show the last busy minute")
    camera.take(window, "main-window-status")
    show_activity(window)
    camera.take(window, "main-window-charts")
    window.status_view.scroll_area.verticalScrollBar().setValue(0)
    window.server_tabs.setCurrentWidget(window.domain_pane)
    window.select_domain("contoso.com")
    wait_for(lambda: window.mailbox_model.fully_loaded and window.mailbox_model.row_of("alice@contoso.com") >= 0,
             "the mailboxes of contoso.com")
    select_mailbox(window, "alice@contoso.com")
    camera.take(window, "main-window-domain")


def charts_show(window: MainWindow, minute: int) -> bool:
    """True when the status page's charts have drawn ``minute`` (epoch seconds // 60): a bar of POP3
    sessions in it (every busy minute has some)."""
    bars = window.status_view.charts.charts["pop3_sessions"].bars.opts.get("x")
    return bars is not None and len(bars) > 0 and max(bars) > minute * 60


def show_activity(window: MainWindow) -> None:
    """Scroll the status page so that the Activity box is at the top (the counters below it)."""
    status = window.status_view
    box, bar = status.charts_box, status.scroll_area.verticalScrollBar()
    bar.setValue(min(bar.maximum(), box.y() - 4))
    settle(100)
    top = box.mapTo(status.scroll_area.viewport(), box.rect().topLeft()).y()
    if top < 0 or top + box.height() > status.scroll_area.viewport().height():
        print("main-window-charts: the Activity box is taller than the page's view", file=sys.stderr)


def select_mailbox(window: MainWindow, address: str) -> None:
    index = window.mailbox_model.index(window.mailbox_model.row_of(address), 0)
    window.mailbox_pane.view.selectionModel().select(
        index, QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows)


def new_mailbox(stage: Stage) -> None:
    window, camera = stage.window, stage.camera
    window.select_domain("contoso.com")
    wait_for(lambda: window.mailbox_model.fully_loaded, "the mailboxes of contoso.com")
    window.tree.setFocus()
    window.do_new_mailbox()
    dialog = window.dialog
    dialog.name_edit.setText("carol")
    dialog.password.setText("Autumn-Leaves-17")
    dialog.confirm.setText("Autumn-Leaves-71")
    camera.take(dialog, "new-mailbox-invalid")
    dialog.confirm.setText("Autumn-Leaves-17")
    camera.take(dialog, "new-mailbox")
    dialog.ok_button.click()
    created = wait_for(lambda: window.dialog is not dialog and window.dialog, "the mailbox-created message")
    settle(200)
    camera.take(created, "mailbox-created")
    created.accept()


def tab_named(tabs: Any, text: str, fallback: int) -> int:
    """The index of the tab whose title (without its mnemonic) contains ``text``."""
    for i in range(tabs.count()):
        if text.lower() in tabs.tabText(i).replace("&", "").lower():
            return i
    return fallback


def properties(stage: Stage) -> None:
    window, camera = stage.window, stage.camera
    window.select_server()
    window.tree.setFocus()
    window.do_properties()
    props = wait_for(lambda: isinstance(window.dialog, QDialog) and window.dialog.isVisible() and window.dialog,
                     "the server's properties")
    settle(400)
    camera.take(props, "server-properties")
    props.tabs.setCurrentIndex(tab_named(props.tabs, "SMTP", 2))
    camera.take(props, "server-properties-smtp")
    props.tabs.setCurrentIndex(tab_named(props.tabs, "Security", props.tabs.count() - 1))
    camera.take(props, "server-properties-security")
    props.reject()
    settle(100)


def queue_bans_tokens(stage: Stage) -> None:
    window, camera = stage.window, stage.camera
    window.select_server()
    window.server_tabs.setCurrentWidget(window.queue_view)
    wait_for(lambda: window.queue_view.table.rowCount() > 0, "the queued message in the Queue page")
    window.queue_view.table.selectRow(0)
    camera.take(window, "main-window-queue")
    window.server_tabs.setCurrentWidget(window.bans_view)
    wait_for(lambda: window.bans_view.table.rowCount() >= 2, "the bans in the Bans page")
    camera.take(window, "main-window-bans")
    window.server_tabs.setCurrentWidget(window.tokens_view)
    wait_for(lambda: window.tokens_view.table.rowCount() >= 1, "the admin token in the Remote Admin page")
    camera.take(window, "main-window-remote-admin")
    window.tokens_view.new_token()
    dialog = window.tokens_view.dialog
    dialog.name_edit.setText("reception desk")
    dialog.ok_button.click()
    wait_for(lambda: "p3t_" in " ".join(w.text() for w in dialog.findChildren(QWidget) if hasattr(w, "text")
                                        and isinstance(w.text(), str)), "the new token")
    camera.take(dialog, "new-token")
    dialog.accept()
    window.server_tabs.setCurrentWidget(window.domain_pane)


def relay_test(stage: Stage) -> None:
    window, camera = stage.window, stage.camera
    window.select_server()
    window.do_relay_test()
    dialog = window.dialog
    wait_for(lambda: dialog.table.rowCount() > 0 or not dialog.verdict.text().startswith("Testing"),
             "the open-relay test")
    settle(200)
    camera.take(dialog, "relay-test")
    dialog.close()


def remote(stage: Stage) -> None:
    window, camera = stage.window, stage.camera
    office = stage.fabrikam_office
    assert office is not None
    window.do_connect()
    dialog = window.dialog
    dialog.remote.setChecked(True)
    dialog.computer.setCurrentText("localhost")
    dialog.port.setValue(office.admin_port)
    dialog.token.setText(office.token)
    camera.take(dialog, "connect-computer")
    dialog.accept()
    box = wait_for(lambda: isinstance(window.dialog, QMessageBox) and window.dialog.isVisible() and window.dialog,
                   "the question about the other server's certificate")
    settle(150)
    camera.take(box, "certificate-first-use")
    box.done(QMessageBox.StandardButton.Yes)
    wait_for(lambda: window.client.is_connected and window.tree_model.server.children
             and window.tree_model.server.children[0].key in ("fabrikam.com", "fabrikam.net"),
             "the console to show mail.fabrikam.com")
    window.select_server()
    settle(600)
    camera.take(window, "main-window-remote")


def wizard(stage: Stage) -> None:
    """Every page of the real setup wizard, its checks run against this machine; Finish really starts a
    service, and fails because another program took the POP3 port after the Ports page checked it."""
    camera = stage.camera
    wiz = SetupWizard(stage.tmp / "wizard" / "pop3-service", bind_host="127.0.0.1")
    wiz.resize(*WIZARD_SIZE)
    wiz.show()
    try:
        settle(200)
        camera.take(wiz, "wizard-1-welcome")
        wiz.next()
        camera.take(wiz, "wizard-2-service")
        wiz.next()
        wiz.page_of(Page.AUTH).buttons["directory"].setChecked(True)
        camera.take(wiz, "wizard-3-authentication")
        wiz.next()
        test_directory(stage, wiz.page_of(Page.DIRECTORY))
        wiz.back()
        wiz.page_of(Page.AUTH).buttons["passwordfile"].setChecked(True)
        wiz.next()
        camera.take(wiz, "wizard-5-storage")
        wiz.next()
        ports = wiz.page_of(Page.PORTS)
        chosen = ports.ports()
        busy = stage.contoso.ports   # the Contoso service holds these: "in use by another program"
        ports.spins["port"].setValue(busy["pop3"])
        ports.spins["smtp_port"].setValue(busy["smtp"])
        camera.take(wiz, "wizard-6-ports-invalid")
        for key, value in chosen.items():
            ports.spins[key].setValue(value)
        camera.take(wiz, "wizard-6-ports")
        wiz.next()
        wiz.page_of(Page.SECURITY).hostname.setText("mail.contoso.com")
        camera.take(wiz, "wizard-7-security")
        wiz.next()
        first = wiz.page_of(Page.FIRST_MAILBOX)
        first.domain.setText("contoso.com")
        first.mailbox.setText("alice")
        first.password.setText("Spring-Meadow-42")
        first.confirm.setText("Spring-Meadow-24")
        camera.take(wiz, "wizard-8-first-mailbox-invalid")
        first.confirm.setText("Spring-Meadow-42")
        camera.take(wiz, "wizard-8-first-mailbox")
        wiz.next()
        camera.take(wiz, "wizard-9-summary")
        if camera.wants("wizard-9-summary-applying", "wizard-9-summary-failed"):
            finish_and_fail(camera, wiz, chosen["port"])
    finally:
        if wiz.runner is not None and wiz.runner.running:
            wait_for(lambda: not wiz.runner.running, "the wizard to take back what it made", timeout=60)
        wiz.close()


def test_directory(stage: Stage, directory: Any) -> None:
    """The Directory page filled in and tested against a real slapd (tools/directory_server.py) whose CA this
    machine trusts (SSL_CERT_FILE); without slapd, against a port where no directory answers."""
    camera = stage.camera
    server: DirectoryServer | None = None
    if directory_missing_reason():
        print(f"no directory server for the Directory page: {directory_missing_reason()}", file=sys.stderr)
        url, base, bind, password = (f"ldap://127.0.0.1:{free_port(10389)}", "dc=contoso,dc=com",
                                     "cn=pop3svc,ou=Services,dc=contoso,dc=com", "Bind-Account-Secret-9")
    else:
        server = DirectoryServer(stage.tmp / "directory").start()
        url, base, bind, password = server.url, directory_server.SUFFIX, directory_server.SERVICE_DN, \
            directory_server.SERVICE_PW
    saved = os.environ.get("SSL_CERT_FILE")
    try:
        directory.server.setText(url)
        directory.base_dn.setText(base)
        directory.bind_dn.setText(bind)
        directory.password.setText(password)
        camera.take(directory.wizard(), "wizard-4-directory-untested")
        if server is not None:
            os.environ["SSL_CERT_FILE"] = str(server.ca)
        directory.test_connection()
        wait_for(lambda: not directory.testing, "the directory test", timeout=20)
        camera.take(directory.wizard(), "wizard-4-directory")
    finally:
        if saved is None:
            os.environ.pop("SSL_CERT_FILE", None)
        else:
            os.environ["SSL_CERT_FILE"] = saved
        if server is not None:
            server.stop()


def finish_and_fail(camera: Camera, wiz: SetupWizard, pop3_port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", pop3_port))
        squatter.listen()
        wiz.button(QWizard.WizardButton.FinishButton).click()
        runner = wait_for(lambda: wiz.runner, "the wizard to start applying")

        def progressed(_step: str) -> None:
            if len(runner.done) >= 2 and not camera.taken("wizard-9-summary-applying"):
                camera.take(wiz, "wizard-9-summary-applying")

        runner.progress.connect(progressed)
        wait_for(lambda: wiz.failure, "the wizard to report the busy port", timeout=90)
        camera.take(wiz, "wizard-9-summary-failed")


SCENES: tuple[tuple[Callable[[Stage], None], tuple[str, ...]], ...] = (
    (overview, ("main-window-server", "main-window-status", "main-window-charts", "main-window-domain")),
    (new_mailbox, ("new-mailbox-invalid", "new-mailbox", "mailbox-created")),
    (properties, ("server-properties", "server-properties-smtp", "server-properties-security")),
    (queue_bans_tokens, ("main-window-queue", "main-window-bans", "main-window-remote-admin", "new-token")),
    (relay_test, ("relay-test",)),
    (remote, ("connect-computer", "certificate-first-use", "main-window-remote")),
    (wizard, ("wizard-1-welcome", "wizard-2-service", "wizard-3-authentication", "wizard-4-directory-untested",
              "wizard-4-directory", "wizard-5-storage", "wizard-6-ports-invalid", "wizard-6-ports",
              "wizard-7-security", "wizard-8-first-mailbox-invalid", "wizard-8-first-mailbox", "wizard-9-summary",
              "wizard-9-summary-applying", "wizard-9-summary-failed")),
)
PICTURES: tuple[str, ...] = tuple(name for _scene, names in SCENES for name in names)
REMOTE_PICTURES = dict(SCENES)[remote]
ACTIVITY_PICTURES = ("main-window-status", "main-window-charts")


# -- the run -------------------------------------------------------------------------------------------
@contextmanager
def temporary_home(tmp: Path) -> Iterator[None]:
    """HOME, the XDG folders and no desktop session bus: the console sees a fresh user, not ours."""
    names = ("HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_RUNTIME_DIR",
             "DBUS_SESSION_BUS_ADDRESS")
    saved = {name: os.environ.get(name) for name in names}
    home = tmp / "home"
    for name, sub in (("HOME", ""), ("XDG_CONFIG_HOME", ".config"), ("XDG_DATA_HOME", ".local/share"),
                      ("XDG_CACHE_HOME", ".cache"), ("XDG_RUNTIME_DIR", "run")):
        (home / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
        os.environ[name] = str(home / sub)
    os.environ.pop("DBUS_SESSION_BUS_ADDRESS", None)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _terminated(_signum: int, _frame: Any) -> None:
    raise SystemExit(1)   # unwinds through the finally blocks: services stopped, temp dir removed


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots", help="where the PNGs go")
    parser.add_argument("--only", default="", help="comma-separated picture names (without .png); default: all")
    parser.add_argument("--activity-minutes", type=int, default=ACTIVITY_MINUTES, metavar="N",
                        help="minutes of traffic before the status pictures, waited for until the service has "
                             "recorded them (its charts show ended minutes only); 0: none "
                             f"(default {ACTIVITY_MINUTES})")
    args = parser.parse_args(argv)
    if not 0 <= args.activity_minutes <= 60:
        parser.error("--activity-minutes: 0 to 60 (the charts show the last hour)")
    only = [name.strip().removesuffix(".png") for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(only) - set(PICTURES))
    if unknown:
        parser.error(f"unknown picture(s): {', '.join(unknown)}; the pictures are: {', '.join(PICTURES)}")
    args.wanted = frozenset(only or PICTURES)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    camera = Camera(out, args.wanted)
    signal.signal(signal.SIGTERM, _terminated)
    started = time.monotonic()
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pop3-screenshots-")))
        print(f"working in {tmp}", flush=True)
        stack.enter_context(temporary_home(tmp))
        contoso = RealService(tmp / "contoso" / "pop3-service")
        stack.callback(contoso.stop)
        contoso.start()
        office = fill_contoso(contoso)
        fabrikam = fabrikam_office = None
        busy = args.activity_minutes if camera.wants(*ACTIVITY_PICTURES) else 0
        if camera.wants(*REMOTE_PICTURES) or busy:
            fabrikam = RealService(tmp / "fabrikam" / "pop3-service")
            stack.callback(fabrikam.stop)
            fabrikam.start()
            fabrikam_office = fill_fabrikam(fabrikam)
        busy_until = 0
        if busy and fabrikam is not None:
            route_to_partner(contoso, fabrikam, PARTNER)
            print(f"keeping traffic going for {busy} minute(s) for the charts", flush=True)
            busy_until = busy_minutes(contoso, busy, PARTNER)
        app = QApplication.instance() or QApplication([sys.argv[0]])
        app.setStyle("Fusion")
        settings = QSettings(str(tmp / "console.ini"), QSettings.Format.IniFormat)
        client = IpcClient(contoso.data_dir)
        stack.callback(client.stop)
        window = MainWindow(client, settings=settings)
        stack.callback(window.close)
        window.resize(*WINDOW_SIZE)
        window.show()
        client.start()
        wait_for(lambda: client.is_connected and window.domain_model.fully_loaded
                 and window.domain_model.rowCount() == len(CONTOSO), "the console to list the Contoso domains")
        stage = Stage(camera, tmp, contoso, office, window, fabrikam, fabrikam_office, busy_until)
        for scene, names in SCENES:
            if camera.wants(*names):
                scene(stage)
    missing = sorted(camera.wanted - {path.stem for path in camera.written})
    print(f"{len(camera.written)} picture(s) in {out} in {time.monotonic() - started:.0f} s", flush=True)
    if missing:
        print(f"not taken: {', '.join(missing)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
