"""The setup wizard's pages, one ``QWizardPage`` per step (STYLE: required fields with
``registerField("name*")``; a page that is not complete says why under its fields and keeps Next
disabled)."""
from __future__ import annotations

import html
import os
import pwd
import re
import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import ldap3
from ldap3.core.exceptions import LDAPException
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
    QWizardPage,
)

from core.catalog import MAIL_LISTENERS
from core.certificates import check_pair, describe
from core.errors import MailError
from core.names import normalize_domain, normalize_mailbox
from core.parsing import EVERY_ADDRESS, bind_address, parse_ldap_urls
from core.passwords import RULE as PASSWORD_RULE
from gui.dialogs.form import buddy_label, password_problem
from gui.wizard import checks
from gui.wizard.apply import SetupPlan, SetupRunner

REASON_STYLE = "color: #a4262c;"
PORT_ROWS = tuple(  # (setting, label, default, what it is for): the mail listeners of the catalog
    (spec.port_setting, spec.label, spec.default_port, spec.purpose) for spec in MAIL_LISTENERS)
AUTH_CHOICES = (
    ("passwordfile", "&Encrypted password file",
     "Choose this for a small office or a home: the service keeps its own mailbox passwords, nothing else "
     "to set up."),
    ("local", "&Local Windows-style accounts (this computer's users, PAM)",
     "Choose this when the people already have accounts on this computer and should log on with them."),
    ("directory", "Active &Directory or LDAP",
     "Choose this when your organisation keeps its users in Active Directory or an LDAP directory."),
)


class SetupQuestions(Protocol):
    """What the pages ask the wizard that holds them (``SetupWizard``); handed to each page that
    needs it, so the pages never import the wizard."""

    @property
    def rerun(self) -> bool: ...
    @property
    def runner(self) -> SetupRunner | None: ...
    @property
    def initial_bind_address(self) -> str: ...
    @property
    def initial_ports(self) -> dict[str, int]: ...
    def system_service_unavailable(self) -> str: ...
    def will_have_privileges(self) -> bool: ...
    def owned_ports(self) -> set[int]: ...
    def auth_method(self) -> str: ...
    def plan(self) -> SetupPlan: ...
    def finish_requested(self) -> bool: ...


def reason_label() -> QLabel:
    label = QLabel()
    label.setObjectName("reason")
    label.setWordWrap(True)
    label.setStyleSheet(REASON_STYLE)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return label


class ReasonPage(QWizardPage):
    """A page whose completeness is a reason: '' when Next may go on, else the sentence shown."""

    def __init__(self, title: str, subtitle: str = "") -> None:
        super().__init__()
        self.setTitle(title)
        if subtitle:
            self.setSubTitle(subtitle)
        self.reason = reason_label()

    def problem(self) -> str:
        return ""

    def isComplete(self) -> bool:   # noqa: N802 - Qt override
        text = self.problem()
        self.reason.setText(text)
        self.reason.setVisible(bool(text))
        return not text and super().isComplete()

    def recheck(self, *_args: Any) -> None:
        self.completeChanged.emit()

    def cleanupPage(self) -> None:  # noqa: N802 - Qt override
        """Back keeps what was typed: QWizardPage's default puts the registered fields back to
        their first values, and a page's next initializePage must not overwrite them either."""


# -- Welcome ------------------------------------------------------------------------------------
class WelcomePage(ReasonPage):
    def __init__(self) -> None:
        super().__init__("Welcome to the POP3 Service setup")
        text = QLabel(
            "<p>This wizard sets up a mail server on this computer in a few steps:</p>"
            "<ol><li>where the mail service runs,</li><li>how people log on,</li><li>where mail is kept,</li>"
            "<li>the address and ports it listens on,</li><li>its host name and TLS certificate,</li>"
            "<li>your first e-mail domain and mailbox.</li></ol>"
            "<p>Nothing changes until you click <b>Finish</b> on the last page. You can run the wizard again "
            "later from the console's <b>File</b> menu to change the address, ports, host name, certificate or "
            "mail folder.</p>")
        text.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(text)
        layout.addStretch(1)


# -- Where the service runs --------------------------------------------------------------------------
class ServiceModePage(ReasonPage):
    def __init__(self, data_dir: Path, questions: SetupQuestions) -> None:
        super().__init__("Where the service runs", "The mail service is a program that runs all the time, "
                         "also while this console is closed.")
        self.questions = questions
        self.background = QRadioButton("For &me, in the background (no administrator rights needed)")
        self.system = QRadioButton("As a &system service that starts when the computer starts")
        self.background.setChecked(True)
        self.group = QButtonGroup(self)
        self.group.addButton(self.background)
        self.group.addButton(self.system)
        self.background_note = QLabel(f"The service runs as you ({_user_name()}), keeps its data in "
                                      f"{html.escape(str(data_dir))}, and the console starts it again when "
                                      "needed. It stops when you log off or restart the computer.")
        self.system_note = QLabel()
        for note in (self.background_note, self.system_note):
            note.setWordWrap(True)
            note.setIndent(22)
        layout = QVBoxLayout(self)
        layout.addWidget(self.background)
        layout.addWidget(self.background_note)
        layout.addSpacing(8)
        layout.addWidget(self.system)
        layout.addWidget(self.system_note)
        layout.addStretch(1)
        layout.addWidget(self.reason)
        self.registerField("system_service", self.system)
        self.group.buttonToggled.connect(self.recheck)

    def initializePage(self) -> None:  # noqa: N802
        why = self.questions.system_service_unavailable()
        self.system.setEnabled(not why)
        self.system_note.setText(
            "Installs a systemd unit: the service runs as its own unprivileged user 'pop3svc', may use the "
            "standard mail ports, and starts at boot. Members of the 'pop3admin' group may administer it."
            + (f"<br><b>Not available here:</b> {html.escape(why)}" if why else ""))

    def problem(self) -> str:
        if self.system.isChecked():
            return self.questions.system_service_unavailable()
        return ""


def _user_name() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


# -- Authentication method -------------------------------------------------------------------------
class AuthPage(ReasonPage):
    def __init__(self) -> None:
        super().__init__("Authentication method", "How people prove who they are when their mail client "
                         "logs on. It cannot be changed once domains exist.")
        layout = QVBoxLayout(self)
        self.group = QButtonGroup(self)
        self.buttons: dict[str, QRadioButton] = {}
        for key, label, sentence in AUTH_CHOICES:
            button = QRadioButton(label)
            self.group.addButton(button)
            self.buttons[key] = button
            note = QLabel(sentence)
            note.setWordWrap(True)
            note.setIndent(22)
            layout.addWidget(button)
            layout.addWidget(note)
            layout.addSpacing(6)
        self.buttons["passwordfile"].setChecked(True)
        layout.addStretch(1)
        layout.addWidget(self.reason)
        self.group.buttonToggled.connect(self.recheck)

    def method(self) -> str:
        return next(k for k, b in self.buttons.items() if b.isChecked())

    def problem(self) -> str:
        if self.method() == "local" and not Path("/etc/pam.d").is_dir():
            return "This computer has no PAM configuration (/etc/pam.d), so local accounts cannot be used."
        return ""


class _Signals(QObject):
    finished = Signal(bool, str)


def ldap_test(url: str, base_dn: str, bind_dn: str, password: str) -> tuple[bool, str]:
    """Connect, StartTLS on ldap://, bind as the account, read the base entry. Blocking: run it in a thread."""
    first = url.split()[0] if url.split() else ""
    try:
        tls = ldap3.Tls(validate=ssl.CERT_REQUIRED)
        server = ldap3.Server(first, connect_timeout=5, get_info=ldap3.NONE, tls=tls)
        conn = ldap3.Connection(server, user=bind_dn or None, password=password or None, receive_timeout=5,
                                raise_exceptions=True)
        conn.open()
        if first.lower().startswith("ldap://"):
            conn.start_tls()
        conn.bind()
        conn.search(base_dn, "(objectClass=*)", search_scope=ldap3.BASE, attributes=[])
        found = bool(conn.entries)
        conn.unbind()
    except LDAPException as exc:
        return False, f"The directory at {first} answered: {exc}"
    except OSError as exc:
        return False, f"Cannot reach {first}: {exc}"
    if not found:
        return False, f"Bound as {bind_dn or 'anonymous'}, but the base DN {base_dn} was not found."
    return True, f"Connected to {first} over TLS, bound as {bind_dn or 'anonymous'}, and found {base_dn}."


class DirectoryPage(ReasonPage):
    """Server, base DN, bind account; Test the connection (in a worker thread) before Next."""

    def __init__(self) -> None:
        super().__init__("Directory server", "The service looks people up in the directory with this account, "
                         "then checks each person's password by logging on as them.")
        self.tester: Callable[[str, str, str, str], tuple[bool, str]] = ldap_test
        self.server = QLineEdit()
        self.server.setPlaceholderText("ldaps://dc1.example.com  (or ldap://… with StartTLS)")
        self.base_dn = QLineEdit()
        self.base_dn.setPlaceholderText("dc=example,dc=com")
        self.bind_dn = QLineEdit()
        self.bind_dn.setPlaceholderText("cn=pop3svc,ou=Services,dc=example,dc=com  or  pop3svc@example.com")
        self.password = QLineEdit()
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.test_button = QPushButton("&Test the connection")
        self.result = QLabel()
        self.result.setWordWrap(True)
        form = QFormLayout()
        form.addRow("&Server:", self.server)
        form.addRow("Base &DN:", self.base_dn)   # Alt+B is the wizard's Back
        form.addRow("Bind &account:", self.bind_dn)
        form.addRow("Bind pass&word:", self.password)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        row = QHBoxLayout()
        row.addWidget(self.test_button)
        row.addWidget(self.result, 1)
        layout.addLayout(row)
        layout.addStretch(1)
        layout.addWidget(self.reason)
        self.registerField("ldap_urls*", self.server)
        self.registerField("ldap_base_dn*", self.base_dn)
        self.registerField("ldap_bind_dn*", self.bind_dn)
        self.registerField("ldap_bind_password*", self.password)
        self.tested: tuple[str, ...] | None = None
        self.testing = False
        self._signals = _Signals()
        self._signals.finished.connect(self._tested)
        self.test_button.clicked.connect(self.test_connection)
        for edit in (self.server, self.base_dn, self.bind_dn, self.password):
            edit.textChanged.connect(self.recheck)

    def values(self) -> tuple[str, ...]:
        return (self.server.text().strip(), self.base_dn.text().strip(), self.bind_dn.text().strip(),
                self.password.text())

    def form_problem(self) -> str:
        url, base, bind, password = self.values()
        if not url:
            return "Give the directory server, such as ldaps://dc1.example.com."
        try:
            parse_ldap_urls(url)   # the service's own rule for the setting
        except MailError as exc:
            return exc.message
        if not base or "=" not in base:
            return "Give the base DN where people are searched, such as dc=example,dc=com."
        if not bind:
            return "Give the account the service uses to search the directory."
        if not password:
            return "Give the password of the bind account."
        return ""

    def problem(self) -> str:
        text = self.form_problem()
        self.test_button.setEnabled(not text and not self.testing)
        if text:
            return text
        if self.testing:
            return "Testing the connection…"
        if self.tested != self.values():
            return "Test the connection before going on."
        return ""

    def test_connection(self) -> None:
        if self.form_problem() or self.testing:
            return
        self.testing = True
        self.result.setText("Connecting…")
        values = self.values()
        signals, tester = self._signals, self.tester

        def work() -> None:
            try:
                ok, text = tester(*values)
            except Exception as exc:  # noqa: BLE001 - shown to the user, never raised in a thread
                ok, text = False, str(exc)
            signals.finished.emit(ok, text)

        self._pending_values = values
        threading.Thread(target=work, name="ldap-test", daemon=True).start()
        self.recheck()

    def _tested(self, ok: bool, text: str) -> None:
        self.testing = False
        self.tested = self._pending_values if ok else None
        self.result.setText(("✔ " if ok else "✘ ") + text)
        self.result.setStyleSheet("" if ok else REASON_STYLE)
        self.recheck()


# -- Mail storage --------------------------------------------------------------------------------
class StoragePage(ReasonPage):
    def __init__(self, default_root: Path, questions: SetupQuestions) -> None:
        super().__init__("Mail storage", "Every mailbox is a folder under the root mail directory (Maildir); "
                         "other mail tools can read it too.")
        self.questions = questions
        self.root = QLineEdit(str(default_root))
        browse = QPushButton("Bro&wse…")   # Alt+R is the Root mail directory
        browse.clicked.connect(self._browse)
        self.space = QLabel()
        self.space.setWordWrap(True)   # a long path breaks after its slashes (see problem())
        self.note = QLabel()
        self.note.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(self.root, 1)
        row.addWidget(browse)
        form = QFormLayout()
        form.addRow(buddy_label("&Root mail directory:", self.root), row)
        form.addRow("", self.space)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.note)
        layout.addStretch(1)
        layout.addWidget(self.reason)
        # Not "mailroot*": Qt counts a mandatory field as filled only once it differs from its initial
        # value, and this one starts with a good default. problem() says when it is empty.
        self.registerField("mailroot", self.root)
        self.root.textChanged.connect(self.recheck)

    def initializePage(self) -> None:  # noqa: N802
        if self.questions.rerun:
            self.note.setText("The service never moves mail: to use another folder while domains exist, move "
                              "their folders there first (the service checks before it switches).")

    def _browse(self) -> None:
        chosen = QFileDialog.getExistingDirectory(self, "Root mail directory", self.root.text())
        if chosen:
            self.root.setText(chosen)

    def problem(self) -> str:
        # A zero-width space after each slash lets a long path wrap there instead of running off the page.
        self.space.setText(checks.free_space_text(Path(self.root.text().strip() or "/").expanduser())
                           .replace("/", "/\u200b"))
        return checks.check_mail_root(self.root.text())


# -- Ports -----------------------------------------------------------------------------------------
class PortsPage(ReasonPage):
    def __init__(self, questions: SetupQuestions) -> None:
        super().__init__("Address and ports", "Where the service listens. Mail clients and other servers "
                         "expect the standard ports.")
        self.questions = questions
        self.address = QLineEdit()
        self.address.setPlaceholderText("every address of this computer")
        self.address.setAccessibleName("Listen on address")
        address_note = QLabel("Leave it empty to take connections on every network of this computer; give one "
                              "of its IP addresses (e.g. 192.168.1.5, or 127.0.0.1 for this computer only) to "
                              "listen there alone.")
        address_note.setWordWrap(True)
        address_form = QFormLayout()
        address_form.addRow(buddy_label("Listen on &address:", self.address), self.address)
        address_form.addRow("", address_note)
        grid = QGridLayout()
        grid.addWidget(QLabel("<b>Listener</b>"), 0, 0)
        grid.addWidget(QLabel("<b>Port</b>"), 0, 1)
        grid.addWidget(QLabel("<b>Check</b>"), 0, 2)
        self.spins: dict[str, QSpinBox] = {}
        self.status: dict[str, QLabel] = {}
        self.use_alt: dict[str, QPushButton] = {}
        for row, (key, label, default, purpose) in enumerate(PORT_ROWS, 1):
            spin = QSpinBox()
            spin.setRange(1, 65535)
            spin.setValue(default)
            spin.setAccessibleName(f"{label} port")
            spin.setToolTip(purpose)
            status = QLabel()
            status.setWordWrap(True)
            alt = QPushButton()
            alt.setVisible(False)
            alt.clicked.connect(lambda _c=False, k=key: self._use_alternative(k))
            name = QLabel(f"{label}<br><small>{purpose}</small>")
            grid.addWidget(name, row, 0)
            grid.addWidget(spin, row, 1)
            grid.addWidget(status, row, 2)
            grid.addWidget(alt, row, 3)
            grid.setColumnStretch(2, 1)
            self.spins[key], self.status[key], self.use_alt[key] = spin, status, alt
            self.registerField(key, spin)
            spin.valueChanged.connect(self.recheck)
        alternatives = ", ".join(str(checks.UNPRIVILEGED[default]) for _k, _l, default, _p in PORT_ROWS)
        self.use_all = QPushButton(f"&Use the non-privileged ports ({alternatives})")   # Alt+N: Next
        self.use_all.clicked.connect(self._use_all_alternatives)
        layout = QVBoxLayout(self)
        layout.addLayout(address_form)
        layout.addLayout(grid)
        layout.addWidget(self.use_all, 0, Qt.AlignmentFlag.AlignLeft)
        layout.addStretch(1)
        layout.addWidget(self.reason)
        self.registerField("bind_address", self.address)
        self.address.textChanged.connect(self.recheck)
        self.results: dict[str, checks.PortCheck] = {}
        self.suggested: dict[str, int] = {}
        self.address_problem = ""
        self.shown = False

    def initializePage(self) -> None:  # noqa: N802
        wiz = self.questions
        if not self.shown:
            self.shown = True
            self.address.setText(wiz.initial_bind_address)
        for key, spin in self.spins.items():
            # The suggestion follows the earlier pages (rights, system service) until the user
            # changes a port; then it is theirs, also after Back and Next.
            if key in wiz.initial_ports and spin.value() == self.suggested.get(key, spin.value()):
                spin.setValue(int(wiz.initial_ports[key]))
                self.suggested[key] = spin.value()
        self.recheck()

    def bind_address(self) -> str:
        return self.address.text().strip()

    def ports(self) -> dict[str, int]:
        return {key: spin.value() for key, spin in self.spins.items()}

    def _use_alternative(self, key: str) -> None:
        result = self.results.get(key)
        if result is not None and result.alternative:
            self.spins[key].setValue(result.alternative)

    def _use_all_alternatives(self) -> None:
        for key, _label, default, _p in PORT_ROWS:
            self.spins[key].setValue(checks.UNPRIVILEGED[default])

    def problem(self) -> str:
        wiz = self.questions
        privileged = wiz.will_have_privileges()
        ports = self.ports()
        try:
            host = bind_address(self.bind_address()) or EVERY_ADDRESS
            self.address_problem = ""
        except MailError as exc:
            self.address_problem = exc.message
            host = EVERY_ADDRESS
        problems = [self.address_problem] if self.address_problem else []
        for key, label, _d, _p in PORT_ROWS:
            port = ports[key]
            result = checks.check_port(port, host=host, privileged=privileged, owned=wiz.owned_ports())
            if list(ports.values()).count(port) > 1:
                result = checks.PortCheck(port, False, result.needs_privilege, "given for two listeners")
            self.results[key] = result
            self.status[key].setText(("✔ " if result.usable else "✘ ") + result.text)
            self.status[key].setStyleSheet("" if result.usable else REASON_STYLE)
            alt = self.use_alt[key]
            alt.setVisible(not result.usable and bool(result.alternative))
            alt.setText(f"Use {result.alternative}")
            if not result.usable:
                problems.append(f"{label} port {port}: {result.text}")
        self.use_all.setVisible(not privileged)
        return "; ".join(problems)


# -- Security ------------------------------------------------------------------------------------
class SecurityPage(ReasonPage):
    def __init__(self, hostname: str) -> None:
        super().__init__("Host name and security", "The name mail clients and other servers know this server "
                         "by; the TLS certificate that encrypts connections; SPA keeps passwords off the wire.")
        self.hostname = QLineEdit(hostname)
        self.hostname.setPlaceholderText("mail.example.com")
        host_note = QLabel("Used in the greetings, in the Received: lines of every message, in the certificate "
                           "made below, and in the settings you give mail clients. Prefilled with this "
                           "computer's name; use the name people reach it by.")
        host_note.setWordWrap(True)
        host_form = QFormLayout()
        host_form.addRow(buddy_label("Public mail &host name:", self.hostname), self.hostname)
        host_form.addRow("", host_note)
        self.generate = QRadioButton("&Generate a self-signed certificate for this host name")
        self.choose = QRadioButton("Use &PEM files I have (from your certificate authority, e.g. Let's Encrypt):")
        self.generate.setChecked(True)
        group = QButtonGroup(self)
        group.addButton(self.generate)
        group.addButton(self.choose)
        self.cert_path = QLineEdit()
        self.cert_path.setPlaceholderText("/etc/letsencrypt/live/mail.example.com/fullchain.pem")
        self.key_path = QLineEdit()
        self.key_path.setPlaceholderText("/etc/letsencrypt/live/mail.example.com/privkey.pem")
        cert_browse, key_browse = QPushButton("Bro&wse…"), QPushButton("Brow&se…")
        cert_browse.clicked.connect(lambda: self._browse(self.cert_path, "Certificate (PEM)"))
        key_browse.clicked.connect(lambda: self._browse(self.key_path, "Private key (PEM)"))
        self.details = QLabel()
        self.details.setWordWrap(True)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.spa = QCheckBox("&Require Secure Password Authentication (SPA) for all client connections")
        self.spa.setChecked(True)
        spa_note = QLabel("With SPA, a password in clear is accepted only inside TLS; Outlook's 'Secure Password "
                          "Authentication' and other challenge-response logons work everywhere.")
        spa_note.setWordWrap(True)
        spa_note.setIndent(22)
        files = QGridLayout()
        cert_label, key_label = QLabel("&Certificate:"), QLabel("Private &key:")
        cert_label.setBuddy(self.cert_path)
        key_label.setBuddy(self.key_path)
        files.addWidget(cert_label, 0, 0)
        files.addWidget(self.cert_path, 0, 1)
        files.addWidget(cert_browse, 0, 2)
        files.addWidget(key_label, 1, 0)
        files.addWidget(self.key_path, 1, 1)
        files.addWidget(key_browse, 1, 2)
        files.setContentsMargins(22, 0, 0, 0)
        cert_box = QGroupBox("TLS certificate")
        box = QVBoxLayout(cert_box)
        box.addWidget(self.generate)
        box.addWidget(self.choose)
        box.addLayout(files)
        box.addWidget(self.details)
        layout = QVBoxLayout(self)
        layout.addLayout(host_form)
        layout.addWidget(cert_box)
        layout.addWidget(self.spa)
        layout.addWidget(spa_note)
        layout.addStretch(1)
        layout.addWidget(self.reason)
        self.registerField("hostname", self.hostname)
        self.registerField("sparequired", self.spa)
        self.pem: tuple[str, str] | None = None
        for w in (self.hostname, self.cert_path, self.key_path):
            w.textChanged.connect(self.recheck)
        group.buttonToggled.connect(self.recheck)

    def host_name(self) -> str:
        return self.hostname.text().strip().rstrip(".").lower()

    def _browse(self, edit: QLineEdit, title: str) -> None:
        chosen, _ = QFileDialog.getOpenFileName(self, title, edit.text() or "/etc", "PEM files (*.pem *.crt *.key);;"
                                                "All files (*)")
        if chosen:
            edit.setText(chosen)

    def problem(self) -> str:
        self.pem = None
        for w in (self.cert_path, self.key_path):
            w.setEnabled(self.choose.isChecked())
        if not _hostname_ok(self.hostname.text()):
            self.details.setText("")
            return "Give this server's host name (letters, digits, hyphens and dots, e.g. mail.example.com)."
        if self.generate.isChecked():
            self.details.setText(f"The certificate for {html.escape(self.host_name())} is made on Finish, valid "
                                 "for about two years. Mail clients ask once whether to trust it.")
            return ""
        cert, key = self.cert_path.text().strip(), self.key_path.text().strip()
        if not cert or not key:
            self.details.setText("")
            return "Choose the certificate file and its private key file."
        try:
            cert_pem, key_pem = Path(cert).expanduser().read_bytes(), Path(key).expanduser().read_bytes()
        except OSError as exc:
            self.details.setText("")
            return f"Cannot read {exc.filename}: {exc.strerror}."
        try:
            summary = check_pair(cert_pem, key_pem)
        except MailError as exc:
            self.details.setText("")
            return exc.message
        warn = "" if not summary.expires_soon() else "<br><b>It expires within 30 days: renew it soon.</b>"
        self.details.setText(html.escape(describe(summary)).replace("\n", "<br>") + warn)
        self.pem = (cert_pem.decode("utf-8", "replace"), key_pem.decode("utf-8", "replace"))
        return ""


def _hostname_ok(text: str) -> bool:
    text = text.strip().rstrip(".").lower()
    return bool(re.fullmatch(r"(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*", text)) and len(text) <= 253


# -- First domain and mailbox -------------------------------------------------------------------------
class FirstMailboxPage(ReasonPage):
    def __init__(self, questions: SetupQuestions) -> None:
        super().__init__("First domain and mailbox", "The e-mail domain this server receives mail for, and a "
                         "first mailbox in it (yours, perhaps).")
        self.questions = questions
        self.domain = QLineEdit()
        self.domain.setPlaceholderText("example.com")
        self.mailbox = QLineEdit()
        self.mailbox.setPlaceholderText("alice")
        self.at_domain = QLabel("@")
        self.password = QLineEdit()
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.confirm = QLineEdit()
        self.confirm.setEchoMode(QLineEdit.EchoMode.Password)
        self.password_note = QLabel()
        self.password_note.setWordWrap(True)
        box_row = QHBoxLayout()
        box_row.addWidget(self.mailbox, 1)
        box_row.addWidget(self.at_domain)
        self.form = QFormLayout()
        self.form.addRow("&Domain name:", self.domain)
        self.form.addRow(buddy_label("&Mailbox name:", self.mailbox), box_row)
        self.form.addRow("&Password:", self.password)
        self.form.addRow("&Confirm password:", self.confirm)
        layout = QVBoxLayout(self)
        layout.addLayout(self.form)
        layout.addWidget(self.password_note)
        layout.addStretch(1)
        layout.addWidget(self.reason)
        self.registerField("domain*", self.domain)
        self.registerField("mailbox*", self.mailbox)
        self.registerField("password", self.password)
        for w in (self.domain, self.mailbox, self.password, self.confirm):
            w.textChanged.connect(self.recheck)

    def needs_password(self) -> bool:
        return self.questions.auth_method() == "passwordfile"

    def initializePage(self) -> None:  # noqa: N802
        needs = self.needs_password()
        for w in (self.password, self.confirm):
            w.setEnabled(needs)
        self.password_note.setText(
            PASSWORD_RULE if needs else "With this authentication method the person logs on with their existing "
            "account and password; the mailbox name must be that account's name.")

    def problem(self) -> str:
        self.at_domain.setText("@" + (self.domain.text().strip() or "domain"))
        domain = self.domain.text().strip()
        if not domain:
            return "Give the e-mail domain, such as example.com."
        try:
            normalize_domain(domain)
        except MailError as exc:
            return exc.message
        name = self.mailbox.text().strip()
        if not name:
            return "Give the name of the first mailbox, such as alice."
        try:
            normalize_mailbox(name)
        except MailError as exc:
            return exc.message
        if self.needs_password():
            password_reason, confirm_reason = password_problem(self.password.text(), self.confirm.text())
            return password_reason or confirm_reason
        return ""


# -- Summary -----------------------------------------------------------------------------------------
class SummaryPage(ReasonPage):
    def __init__(self, questions: SetupQuestions) -> None:
        super().__init__("Summary", "Check the choices; Finish applies them and starts the service.")
        self.questions = questions
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.text.setTextFormat(Qt.TextFormat.RichText)
        self.text.setAlignment(Qt.AlignmentFlag.AlignTop)
        self.progress = QLabel()
        self.progress.setWordWrap(True)
        self.progress.setTextFormat(Qt.TextFormat.RichText)
        layout = QVBoxLayout(self)
        layout.addWidget(self.text)
        layout.addWidget(self.progress)
        layout.addStretch(1)
        layout.addWidget(self.reason)
        self.setFinalPage(True)

    def initializePage(self) -> None:  # noqa: N802
        rows = self.questions.plan().summary_rows()
        self.text.setText("<table cellspacing='4'>" + "".join(
            f"<tr><td><b>{html.escape(k)}</b></td><td>{html.escape(v)}</td></tr>" for k, v in rows) + "</table>")
        self.progress.setText("")

    def problem(self) -> str:
        runner = self.questions.runner
        return "Applying the settings…" if runner is not None and runner.running else ""

    def validatePage(self) -> bool:  # noqa: N802
        return self.questions.finish_requested()


def field_widgets(page: QWidget) -> list[QWidget]:
    return page.findChildren(QLineEdit) + page.findChildren(QSpinBox)
