"""The setup wizard: first start (no service, no data directory) and, later, a re-run from the
console's File menu for ports, certificate and mail storage.

Welcome → Where the service runs → Authentication method (→ Directory server) → Mail storage →
Ports → Security → First domain and mailbox → Summary. Finish applies the plan through the admin
channel (``gui.wizard.apply``) and closes the wizard only when everything worked.
"""
from __future__ import annotations

import enum
import html
import os
from pathlib import Path
from typing import Any

from PySide6.QtWidgets import QWidget, QWizard

from core.catalog import MAIL_LISTENERS
from core.errors import MailError
from core.hostname import machine_name
from core.parsing import bind_address
from gui import icons
from gui.dialogs.form import keep_text_whole
from gui.ipc_client import IpcClient
from gui.wizard import checks
from gui.wizard.apply import PORT_SETTINGS, SetupPlan, SetupRunner
from gui.wizard.pages import (
    AuthPage,
    DirectoryPage,
    FirstMailboxPage,
    PortsPage,
    ReasonPage,
    SecurityPage,
    ServiceModePage,
    StoragePage,
    SummaryPage,
    WelcomePage,
)


class Page(enum.IntEnum):
    WELCOME = 0
    SERVICE = 1
    AUTH = 2
    DIRECTORY = 3
    STORAGE = 4
    PORTS = 5
    SECURITY = 6
    FIRST_MAILBOX = 7
    SUMMARY = 8


FIRST_RUN_ORDER = (Page.WELCOME, Page.SERVICE, Page.AUTH, Page.DIRECTORY, Page.STORAGE, Page.PORTS, Page.SECURITY,
                   Page.FIRST_MAILBOX, Page.SUMMARY)
RERUN_ORDER = (Page.STORAGE, Page.PORTS, Page.SECURITY, Page.SUMMARY)


class SetupWizard(QWizard):
    """Sets up (or re-configures) the POP3 Service; see the module docstring."""

    def __init__(self, data_dir: Path, *, parent: QWidget | None = None, client: IpcClient | None = None,
                 current: dict[str, Any] | None = None, listeners: list[dict[str, Any]] | None = None,
                 bind_host: str = "0.0.0.0", service_args: tuple[str, ...] = (),
                 install_command: list[str] | None = None) -> None:
        super().__init__(parent)
        self.data_dir = Path(data_dir)
        self.client = client
        self.rerun = client is not None
        self.current = dict(current or {})
        self.listeners = list(listeners or [])
        self.bind_host = bind_host
        self.service_args = tuple(service_args)
        self.install_command = install_command
        self.runner: SetupRunner | None = None
        self.result_info: dict[str, Any] = {}
        self.failure = ""
        self.failed_once = False
        self._applied = False
        self.setWindowTitle("POP3 Service Setup" if not self.rerun else "POP3 Service Setup - change the server")
        self.setWindowIcon(icons.icon("console"))
        self.setWizardStyle(QWizard.WizardStyle.ModernStyle)
        self.setOption(QWizard.WizardOption.NoBackButtonOnStartPage, True)
        self.setButtonText(QWizard.WizardButton.FinishButton, "&Finish")
        hostname = str(self.current.get("hostname") or machine_name())
        default_root = Path(str(self.current.get("mailroot") or self.data_dir / "mailroot"))
        self.service_page = ServiceModePage(self.data_dir, self)
        self.auth_page = AuthPage()
        self.directory_page = DirectoryPage()
        self.storage_page = StoragePage(default_root, self)
        self.ports_page = PortsPage(self)
        self.security_page = SecurityPage(hostname)
        self.first_mailbox_page = FirstMailboxPage(self)
        self.summary_page = SummaryPage(self)
        self.pages: dict[Page, ReasonPage] = {
            Page.WELCOME: WelcomePage(),
            Page.SERVICE: self.service_page,
            Page.AUTH: self.auth_page,
            Page.DIRECTORY: self.directory_page,
            Page.STORAGE: self.storage_page,
            Page.PORTS: self.ports_page,
            Page.SECURITY: self.security_page,
            Page.FIRST_MAILBOX: self.first_mailbox_page,
            Page.SUMMARY: self.summary_page,
        }
        for page_id, page in self.pages.items():
            self.setPage(int(page_id), page)
        self.setStartId(int(RERUN_ORDER[0] if self.rerun else Page.WELCOME))
        if self.rerun:
            self.current["_tls_hostname"] = hostname if self.current.get("tls_cert", "") == "" else None
        keep_text_whole(self, 680, 520)

    # -- navigation -------------------------------------------------------------------------------
    def nextId(self) -> int:   # noqa: N802 - Qt override
        order = RERUN_ORDER if self.rerun else FIRST_RUN_ORDER
        current = Page(self.currentId())
        if current not in order or current is Page.SUMMARY:
            return -1
        following = order[order.index(current) + 1]
        if following is Page.DIRECTORY and self.auth_method() != "directory":
            following = Page.STORAGE
        return int(following)

    def page_of(self, page: Page) -> ReasonPage:
        return self.pages[page]

    # -- what pages ask ---------------------------------------------------------------------------------
    def auth_method(self) -> str:
        return self.auth_page.method() if not self.rerun else str(self.current.get("auth", "passwordfile"))

    def system_mode(self) -> bool:
        return not self.rerun and self.service_page.system.isChecked()

    def system_service_unavailable(self) -> str:
        """'' when a system service can be installed from here, else why not."""
        if os.geteuid() != 0:
            return ("installing a system service needs administrator rights: start the console with "
                    "'sudo python3 main.py'.")
        if not checks.systemd_running():
            return "systemd is not running on this computer (a container?), so there is no service manager."
        return ""

    def will_have_privileges(self) -> bool:
        return self.system_mode() or checks.can_bind_privileged()

    def owned_ports(self) -> set[int]:
        return {int(item["port"]) for item in self.listeners
                if item.get("port") and item.get("state") in ("running", "paused")}

    @property
    def initial_bind_address(self) -> str:
        """What the address field starts with: the stored setting (re-run), else ``bind_host``
        unless that is every address."""
        if self.rerun:
            return str(self.current.get("bind_address") or "")
        return "" if self.bind_host in ("", "0.0.0.0", "::") else self.bind_host

    @property
    def initial_ports(self) -> dict[str, int]:
        if self.rerun:
            return {k: int(self.current[k]) for k in PORT_SETTINGS if k in self.current}
        if self.will_have_privileges():
            return {spec.port_setting: spec.default_port for spec in MAIL_LISTENERS}
        return {spec.port_setting: checks.UNPRIVILEGED[spec.default_port] for spec in MAIL_LISTENERS}

    def plan(self) -> SetupPlan:
        directory, security = self.directory_page, self.security_page
        first, ports = self.first_mailbox_page, self.ports_page
        auth = self.auth_method()
        hostname = security.host_name()
        if security.generate.isChecked():
            tls: tuple[str, ...] = ("generate", hostname)
        else:
            cert, key = security.pem or ("", "")
            tls = ("import", cert, key)
        url, base, bind, password = directory.values()
        return SetupPlan(
            data_dir=self.data_dir, mode="system" if self.system_mode() else "background", auth=auth,
            ldap={"ldap_urls": url, "ldap_base_dn": base, "ldap_bind_dn": bind, "ldap_bind_password": password}
            if auth == "directory" else {},
            mailroot=str(Path(self.storage_page.root.text().strip()).expanduser()),
            ports=ports.ports(), tls=tls, hostname=hostname, bind_address=_canonical_address(ports.bind_address()),
            spa=security.spa.isChecked(),
            domain=first.domain.text().strip().lower(), mailbox=first.mailbox.text().strip(),
            password=first.password.text() if auth == "passwordfile" else "", rerun=self.rerun)

    # -- Finish ---------------------------------------------------------------------------------------------
    def finish_requested(self) -> bool:
        """validatePage of the summary: True once applied; otherwise start applying and stay."""
        if self._applied:
            return True
        if self.runner is not None and self.runner.running:
            return False
        if self.failed_once and self._ports_trouble():
            return False      # after a failed Finish the port checks run again before anything starts
        self.failure = ""
        self.runner = SetupRunner(self.plan(), client=self.client if self.rerun else self._first_client(),
                                  service_args=self.service_args, install_command=self.install_command,
                                  current=self.current, parent=self)
        self.runner.progress.connect(self._show_progress)
        self.runner.finished.connect(self._applied_ok)
        self.runner.failed.connect(self._apply_failed)
        self._busy(True)
        self.runner.start()
        return False

    def _first_client(self) -> IpcClient | None:
        # A second Finish after a failure goes on with the same client (it knows its socket).
        return self.runner.client if self.runner is not None else None

    def _busy(self, busy: bool) -> None:
        for button in (QWizard.WizardButton.BackButton, QWizard.WizardButton.FinishButton,
                       QWizard.WizardButton.CancelButton):
            self.button(button).setEnabled(not busy)
        self.summary_page.recheck()

    def _show_progress(self, step: str) -> None:
        done = "".join(f"✔ {html.escape(s)}<br>" for s in self.runner.done) if self.runner else ""
        self.summary_page.progress.setText(f"{done}… {html.escape(step)}")

    def _applied_ok(self, info: dict[str, Any]) -> None:
        self.result_info = dict(info)
        self._applied = True
        self._busy(False)
        self.accept()

    def _apply_failed(self, step: str, reason: str) -> None:
        self.failure = f"Step '{step}' failed: {reason}"
        self.failed_once = True
        self._busy(False)
        self.summary_page.progress.setText(
            f"<span style='color:#a4262c'><b>✘ {html.escape(self.failure, quote=False)}</b></span><br>"
            + html.escape("What this attempt had created was taken back, so nothing is half set up. Correct the "
                          "choice with Back (or the cause named above), then press Finish again.")
            .replace("\n", "<br>"))
        self._ports_trouble(keep=True)

    def _ports_trouble(self, *, keep: bool = False) -> str:
        """Run the Ports page's checks again (a port may have been taken since that page); say
        what they find under the summary. ``keep``: add to the failure shown, else replace it."""
        trouble = self.ports_page.problem()
        if trouble:
            text = html.escape(f"The port check now finds: {trouble}. Go Back to the Address and ports page to "
                               "choose others, or stop the program that uses them.")
            progress = self.summary_page.progress
            progress.setText((progress.text() + "<br>" if keep else "")
                             + f"<span style='color:#a4262c'>{text}</span>")
        return trouble

    @property
    def client_after_setup(self) -> IpcClient | None:
        return self.runner.client if self.runner is not None else None


def _canonical_address(text: str) -> str:
    """The bind address as the service stores it ('' for every address)."""
    try:
        return bind_address(text)
    except MailError:
        return text.strip()
