"""Server Properties: a tabbed sheet over the service's own settings (``settings.describe``).

General holds the original's six properties; the other tabs hold what the POP3, SMTP, throttle,
directory and remote-administration work adds, placed by name. The service describes every
setting it knows (label, default, help, kind, secret flag, restart need), so settings a newer
service has are editable here without code; the console checks locally what it knows (the catalog,
core/catalog.py) and the service checks the rest when they are applied. Secret settings show as
"(set)" and are sent only when typed.
OK / Cancel / Apply, as property sheets behave: Apply commits what was changed (one ``settings.set``
per changed value), OK applies what is not applied yet and closes, Cancel discards only what was
not applied. The sheet starts from ``settings.snapshot`` (values with their versions) and sends each
change with the version it showed: if another administrator changed that setting since, the
service refuses it and changes nothing; the sheet then says which setting changed, to what, and
keeps the administrator's value, so Apply again replaces theirs deliberately. A ``settings.changed``
event updates the fields nobody touched here (``apply_event``).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QSize, Signal
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from core.catalog import SECRET_SHOWN, SETTINGS, Kind, SettingSpec, is_secret, port_in_use_note
from core.errors import Invalid, MailError
from core.parsing import yes_no
from gui import ops
from gui.dialogs import error_box
from gui.dialogs.form import Meanwhile, Reason, keep_text_whole

AUTH_LABELS = {"passwordfile": "Encrypted Password File", "local": "Local Linux Accounts (PAM)",
               "directory": "Active Directory / LDAP"}
LOGGING_LABELS = ["None", "Minimum", "Medium", "Maximum"]
FOLDER_SETTINGS = {"mailroot"}
FILE_SETTINGS = {"tls_cert", "tls_key"}

TABS: list[tuple[str, list[str], str]] = [
    ("General", ["auth", "port", "bind_address", "logging", "mailroot", "sparequired", "createuser"],
     "The properties of the POP3 Service on this server."),
    ("POP3", ["pop3s_port", "idle_timeout", "hostname"],
     "POP3 on its standard port offers STLS; the TLS port starts encrypted. Port 0 turns a listener off."),
    ("SMTP", ["smtp_port", "submission_port", "smtps_port", "max_message_size"],
     "Port 25 receives mail for the local domains; users send through submission (587) or SMTPS (465) "
     "with authentication. Relay is allowed only for authenticated users."),
    # Outgoing mail has a tab of its own: on one tab with the listeners, SMTP needed both scroll bars.
    ("Delivery", ["smarthost", "smarthost_user", "smarthost_password", "smtp_routes", "dns_servers"],
     "How mail for other servers leaves: directly (MX lookup) or through a smart host; how long the queue "
     "retries before it returns a message to its sender."),
    ("Security", ["tls_cert", "tls_key", "keystore", "admin_group", "admin_tcp_port", "admin_tcp_bind"],
     "The TLS certificate serves STLS, STARTTLS, the implicit-TLS ports and remote administration. "
     "Failed logons are slowed down and, past a limit, banned for a while."),
    ("Limits", ["max_connections", "max_connections_per_ip", "default_quota", "send_rate_limit"],
     "Limits protect the server from overload; a quota of 0 means none."),
    ("Authentication", [], "Local accounts (PAM) and the directory (LDAP / Active Directory)."),
]
# Settings the registry gains are placed by their names' beginnings (first match wins).
PREFIX_TABS: list[tuple[tuple[str, ...], str]] = [
    (("throttle_", "ban_", "admin_tcp", "tls_", "require_tls_", "trusted_networks"), "Security"),
    (("smarthost", "queue", "dsn", "dns_", "smtp_routes"), "Delivery"),
    (("smtp", "relay", "submission", "smtps", "sender_", "quota_full", "max_recipients"), "SMTP"),
    (("pop3", "idle_"), "POP3"),
    (("send_rate", "max_"), "Limits"),
    (("pam_", "ldap_", "directory_"), "Authentication"),
    (("postmaster", "from_must", "reject_local"), "SMTP"),   # the SMTP rules for senders
]
SMTP_PREFIXES = PREFIX_TABS[1][0] + PREFIX_TABS[0][0]


def tab_of(name: str) -> str:
    for title, names, _intro in TABS:
        if name in names:
            return title
    for prefixes, title in PREFIX_TABS:
        if name.startswith(prefixes):
            return title
    return "Other"


def _whole_number(value: Any) -> int:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        raise Invalid(f"'{value}' is not a whole number.") from None


def _as_text(value: Any) -> Any:
    text = "" if value is None else str(value)
    if "\n" in text or "\x00" in text:
        raise Invalid("The value may not contain NUL or line breaks.")
    return text.strip()


def spec_from_description(item: dict[str, Any]) -> SettingSpec:
    """A setting the service described: the console's own spec when it has one (with its exact
    check), else one whose check only knows the type; the service checks the rest on Apply."""
    name = str(item["name"])
    if name in SETTINGS:
        return SETTINGS[name]
    default = item.get("default")
    try:
        kind = Kind(str(item.get("type")))
    except ValueError:   # a service that does not say: the kind the default suggests
        kind = Kind.YES_NO if isinstance(default, bool) else Kind.NUMBER if isinstance(default, int) else Kind.TEXT
    if name == "port" or name.endswith("_port"):
        kind = Kind.PORT
    check = yes_no if kind == Kind.YES_NO else _whole_number if kind in (Kind.NUMBER, Kind.PORT) else _as_text
    return SettingSpec(name, default, check, str(item.get("label") or name), restart=item.get("restart") or None,
                       writable=bool(item.get("writable", True)), help=str(item.get("help") or ""), kind=kind,
                       secret=bool(item.get("secret")) or kind == Kind.SECRET)


def size_text(value: Any) -> str:
    """Bytes as the shortest exact "25 MB" / "512 KB" text; '' for none."""
    if value in (None, "", 0):
        return ""
    number = int(value)
    for unit, factor in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if number % factor == 0:
            return f"{number // factor} {unit}"
    return str(number)


class SettingField(QWidget):
    """One setting's editor with its reason label; ``raw()`` is what goes through ``spec.check``."""

    changed = Signal()

    def __init__(self, spec: SettingSpec, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.spec = spec
        self.reason = Reason()
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        self.editor: QComboBox | QCheckBox | QSpinBox | QLineEdit
        self.stored_secret: Any = ""   # a secret as the service sent it (sealed); kept when the field stays empty
        name = spec.name
        if name == "auth":
            combo = QComboBox()
            for key, text in AUTH_LABELS.items():
                combo.addItem(text, key)
            combo.currentIndexChanged.connect(self.changed)
            self.editor = combo
        elif name == "logging":
            combo = QComboBox()
            for i, text in enumerate(LOGGING_LABELS):
                combo.addItem(f"{text}", i)
            combo.currentIndexChanged.connect(self.changed)
            self.editor = combo
        elif spec.kind == Kind.YES_NO:
            box = QCheckBox(spec.label)
            box.toggled.connect(self.changed)
            self.editor = box
        elif spec.secret:
            edit = QLineEdit()
            edit.setEchoMode(QLineEdit.EchoMode.Password)
            edit.textChanged.connect(self.changed)
            self.editor = edit
        elif spec.kind == Kind.PORT:
            spin = QSpinBox()
            spin.setRange(0, 65535)
            spin.setSpecialValueText("Off")
            spin.valueChanged.connect(self.changed)
            self.editor = spin
        else:
            edit = QLineEdit()
            edit.textChanged.connect(self.changed)
            if spec.kind == Kind.SIZE:
                edit.setPlaceholderText("none" if spec.default is None else "e.g. 25 MB")
            self.editor = edit
        self.editor.setAccessibleName(spec.label)
        if spec.help:
            self.editor.setToolTip(spec.help)
        row.addWidget(self.editor, 1)
        if name in FOLDER_SETTINGS or name in FILE_SETTINGS:
            # No Alt+letter: a tab may hold two paths (certificate and key); the label's letter reaches the field.
            browse = QPushButton("Browse…")
            browse.setAccessibleName(f"Browse for the {spec.label}")
            browse.clicked.connect(self._browse)
            row.addWidget(browse)
        if not spec.writable:
            self.editor.setEnabled(False)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.setSpacing(2)
        outer.addLayout(row)
        outer.addWidget(self.reason)
        # Another administrator changed this setting after the sheet showed it (see apply_event).
        self.meanwhile = Meanwhile()
        self.meanwhile.setObjectName(f"meanwhile_{name}")
        outer.addWidget(self.meanwhile)
        self.changed.connect(self.validate)

    def show_meanwhile(self, text: str) -> None:
        self.meanwhile.show_reason(text)

    def set_value(self, value: Any) -> None:
        if self.spec.secret:
            # The stored value is sealed by the service; an empty field keeps it.
            self.stored_secret = value
            if isinstance(self.editor, QLineEdit):   # always, for a secret
                self.editor.setPlaceholderText("(set; type to replace)" if value else "(none)")
                self.editor.clear()
            self.validate()
            return
        e = self.editor
        e.blockSignals(True)
        try:
            if isinstance(e, QComboBox):
                i = e.findData(value)
                e.setCurrentIndex(max(i, 0))
            elif isinstance(e, QCheckBox):
                e.setChecked(bool(value))
            elif isinstance(e, QSpinBox):
                e.setValue(int(value or 0))
            elif isinstance(e, QLineEdit):
                e.setText(size_text(value) if self.spec.kind == Kind.SIZE else ("" if value is None else str(value)))
        finally:
            e.blockSignals(False)
        self.validate()

    def raw(self) -> Any:
        e = self.editor
        if isinstance(e, QComboBox):
            return e.currentData()
        if isinstance(e, QCheckBox):
            return e.isChecked()
        if isinstance(e, QSpinBox):
            return e.value()
        return e.text()

    def value(self) -> Any:
        """The checked value; raises MailError (Invalid) with a reason when it is not acceptable."""
        if self.spec.secret:
            typed = self.raw()
            return typed if typed else self.stored_secret   # the service seals it
        return self.spec.check(self.raw())

    def validate(self) -> bool:
        try:
            self.value()
        except MailError as exc:
            self.reason.show_reason(exc.message)
            return False
        self.reason.show_reason("")
        return True

    def _browse(self) -> None:
        current = str(self.raw() or "")
        if self.spec.name in FOLDER_SETTINGS:
            path = QFileDialog.getExistingDirectory(self, self.spec.label, current)
        else:
            path, _ = QFileDialog.getOpenFileName(self, self.spec.label, current,
                                                  "PEM files (*.pem *.crt *.key);;All files (*)")
        if path and isinstance(self.editor, QLineEdit):   # a path setting is edited as text
            self.editor.setText(path)


class ServerPropertiesDialog(QDialog):
    """The server's property sheet; ``client`` sends the changes (see ``gui.ops.set_setting``)."""

    applied = Signal(list)     # the listeners whose restart the applied changes need

    def __init__(self, parent: QWidget | None, *, client: Any, settings: dict[str, Any], domain_count: int,
                 hostname: str = "", restart_listeners: Callable[[list[str]], None] | None = None,
                 described: list[dict[str, Any]] | None = None,
                 listeners: list[dict[str, Any]] | None = None, versions: dict[str, int] | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"{hostname or 'Server'} Properties")
        self._client = client
        self._restart_listeners = restart_listeners
        self.current = dict(settings)         # as the server has them, as far as this sheet knows
        # The version of each value in ``current`` (settings.snapshot): sent with a change, so the
        # service refuses it if someone changed the setting since. Empty: a service without
        # versions, where the last writer wins.
        self.versions: dict[str, int] = dict(versions or {})
        self.fields: dict[str, SettingField] = {}
        # What the service knows (settings.describe); without it, what this console knows.
        if described:
            self.specs = {str(d["name"]): spec_from_description(d) for d in described if d.get("name")}
        else:
            self.specs = dict(SETTINGS)
        self.tabs = QTabWidget()
        pages: dict[str, QFormLayout] = {}
        for title, _names, intro in TABS + [("Other", [], "Further settings of the service.")]:
            page = QWidget()
            form = QFormLayout(page)
            label = QLabel(intro)
            label.setWordWrap(True)
            form.addRow(label)
            pages[title] = form
            scroll = QScrollArea()
            scroll.setWidgetResizable(True)
            scroll.setFrameShape(QFrame.Shape.NoFrame)
            scroll.setWidget(page)
            self.tabs.addTab(scroll, title)
        ordered = [n for _t, names, _i in TABS for n in names if n in self.specs]
        ordered += [n for n in self.specs if n not in ordered]
        for name in ordered:
            spec = self.specs[name]
            field = SettingField(spec)
            field.set_value(settings.get(name, spec.default))
            field.changed.connect(self._update_buttons)
            self.fields[name] = field
            if spec.kind == Kind.YES_NO:     # a check box carries its own label: it spans both columns
                pages[tab_of(name)].addRow(field)
            else:
                pages[tab_of(name)].addRow(f"{spec.label}:", field)
            if spec.restart:
                field.editor.setToolTip((spec.help + "\n" if spec.help else "") +
                                        f"Changing this restarts the {spec.restart} listener.")
            note = port_in_use_note(name, settings.get(name, spec.default), listeners)
            if note:
                in_use = QLabel(note[0].upper() + note[1:] + ".")
                in_use.setWordWrap(True)
                in_use.setStyleSheet("color: #8a5300;")
                in_use.setObjectName(f"in_use_{name}")
                pages[tab_of(name)].addRow("", in_use)
        for name, value in settings.items():   # settings the service has and did not describe
            if name not in self.specs:
                shown = QLineEdit(SECRET_SHOWN if is_secret(name) and value else str(value))
                shown.setReadOnly(True)
                pages["Other"].addRow(f"{name}:", shown)
        for index in reversed(range(self.tabs.count())):   # no empty tabs
            title = self.tabs.tabText(index)
            if title != "General" and pages[title].rowCount() <= 1:
                self.tabs.removeTab(index)

        auth = self.fields.get("auth")
        if auth is not None and domain_count > 0:
            auth.editor.setEnabled(False)
            reason = (f"The authentication method can be changed only while no e-mail domain exists "
                      f"(there {'is' if domain_count == 1 else 'are'} {domain_count:,}).")
            auth.editor.setToolTip(reason)
            auth.reason.setStyleSheet("color: #555;")
            auth.reason.show_reason(reason)
        mailroot = self.fields.get("mailroot")
        if mailroot is not None:
            self.mailroot_note = QLabel("The service moves to the new folder at once. It never moves mail itself: "
                                        "the folder must already hold a copy of the existing mail (or no "
                                        "mailbox may hold mail), and belong to the service's user or root, "
                                        "writable by nobody else.")
            self.mailroot_note.setVisible(False)
            self.mailroot_note.setWordWrap(True)
            pages["General"].addRow("", self.mailroot_note)
            mailroot.changed.connect(lambda: self.mailroot_note.setVisible(
                mailroot.raw() != self.current.get("mailroot")))

        self.notice = QLabel()
        self.notice.setWordWrap(True)
        self.notice.setVisible(False)
        self.restart_button = QPushButton("&Restart listeners now")
        self.restart_button.setVisible(False)
        self.restart_button.clicked.connect(self._restart_now)
        notice_row = QHBoxLayout()
        notice_row.addWidget(self.notice, 1)
        notice_row.addWidget(self.restart_button)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
                                        | QDialogButtonBox.StandardButton.Apply)
        self.ok_button = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.apply_button = self.buttons.button(QDialogButtonBox.StandardButton.Apply)
        self.cancel_button = self.buttons.button(QDialogButtonBox.StandardButton.Cancel)
        self.ok_button.clicked.connect(lambda: self.apply(close=True))
        self.apply_button.clicked.connect(lambda: self.apply(close=False))
        self.cancel_button.clicked.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs)
        layout.addLayout(notice_row)
        layout.addWidget(self.buttons)
        self._pending_restart: list[str] = []
        self._in_flight: set[str] = set()     # settings sent and not answered yet
        self._held: dict[str, dict[str, Any]] = {}   # their change events, applied after the answer
        self._busy = False
        keep_text_whole(self, 560, 500)
        self._fitted = False
        self._update_buttons()

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        if not self._fitted:
            self._fitted = True
            self.grow_to_largest_tab()

    def grow_to_largest_tab(self) -> None:
        """Open big enough for the largest tab and the whole tab bar, so that no tab needs a scroll bar at
        any text scale (the scroll areas stay for a screen too small to hold the sheet)."""
        layout = self.layout()
        if layout is not None:
            layout.activate()
        shown = self.tabs.currentWidget()
        if not isinstance(shown, QScrollArea):
            return
        extra_w = self.width() - shown.viewport().width()
        extra_h = self.height() - shown.viewport().height()
        width = max(self.tabs.tabBar().sizeHint().width() + (self.width() - self.tabs.width()) + 8,
                    max(self._page(i).sizeHint().width() for i in range(self.tabs.count())) + extra_w)
        page_width = width - extra_w
        height = max(self._page_height(self._page(i), page_width) for i in range(self.tabs.count())) + extra_h
        target = QSize(max(width, self.width()), max(height, self.height()))
        screen = self.screen()
        if screen is not None:
            target = target.boundedTo(screen.availableGeometry().size())
        self.resize(target)

    def _page(self, index: int) -> QWidget:
        scroll = self.tabs.widget(index)
        page = scroll.widget() if isinstance(scroll, QScrollArea) else scroll
        assert page is not None     # every tab is a page in a scroll area
        return page

    @staticmethod
    def _page_height(page: QWidget, width: int) -> int:
        layout = page.layout()
        if layout is not None and layout.hasHeightForWidth():
            return layout.totalHeightForWidth(width)
        return page.sizeHint().height()

    # -- state ---------------------------------------------------------------------------------
    def changes(self) -> dict[str, Any]:
        """Valid values that differ from what the server has now."""
        out: dict[str, Any] = {}
        for name, field in self.fields.items():
            if not field.spec.writable or not field.editor.isEnabled():
                continue
            try:
                value = field.value()
            except MailError:
                continue
            if value != self.current.get(name, field.spec.default):
                out[name] = value
        return out

    def _all_valid(self) -> bool:
        return all(f.validate() for f in self.fields.values() if f.spec.writable and f.editor.isEnabled())

    def _update_buttons(self) -> None:
        valid = self._all_valid()
        self.ok_button.setEnabled(valid and not self._busy)
        self.apply_button.setEnabled(valid and not self._busy and bool(self.changes()))

    # -- OK / Apply / Cancel ------------------------------------------------------------------------
    def apply(self, *, close: bool) -> None:
        """Apply (and with ``close``, OK): send what differs from the server's values; OK closes once
        all of it is committed, and stays open when something was refused."""
        if not self._all_valid() or self._busy:
            return
        changes = self.changes()
        if not changes:
            if close:
                self.accept()
            return
        self._busy = True
        self._update_buttons()
        failures: list[str] = []
        moved: dict[str, str] = {}     # setting -> the service's words: someone changed it since
        restart: list[str] = []
        left = [len(changes)]

        def finish() -> None:
            left[0] -= 1
            if left[0]:
                return
            if moved:   # read what they changed, then say so; the fields keep this sheet's values
                self._client.request("settings.snapshot", {}, lambda snap: settled(snap, moved),
                                     lambda _e: settled(None, moved))
            else:
                settled(None, {})

        def settled(snapshot: dict[str, Any] | None, moved: dict[str, str]) -> None:
            self._busy = False
            if snapshot:
                self._merge(snapshot, conflicted=moved)
            if restart:
                self._pending_restart = sorted(set(self._pending_restart) | set(restart))
                self.applied.emit(list(self._pending_restart))
            self._show_notice(moved)
            self._update_buttons()
            if failures:
                error_box.show_error(self, "\n".join(failures), doing="change the server properties")
            elif close and not moved:
                self.accept()

        for name, value in changes.items():
            self._in_flight.add(name)
            self.fields[name].show_meanwhile("")

            def done(result: Any, name: str = name, value: Any = value) -> None:
                answer = result if isinstance(result, dict) else {}
                self.current[name] = answer.get("value", value)
                if isinstance(answer.get("version"), int):
                    self.versions[name] = answer["version"]
                need = answer.get("restart")
                if need:
                    restart.append(need if isinstance(need, str) else (self.specs[name].restart or name))
                self._answered(name)
                finish()

            def failed(error: MailError, name: str = name) -> None:
                if error.code == "conflict" and name in self.versions:
                    moved[name] = error.message    # perhaps changed since; settings.snapshot tells
                else:
                    failures.append(f"{self.specs[name].label}: {error.message}")
                self._answered(name)
                finish()

            params: dict[str, Any] = {}
            if name in self.versions:
                params["expected_version"] = self.versions[name]
            ops.set_setting(self._client, parent=self, name=name, value=value, on_done=done, on_fail=failed,
                            **params)

    def reject(self) -> None:
        """Cancel: close; what was applied stays applied, what was not is discarded."""
        super().reject()

    # -- other administrators' changes ---------------------------------------------------------------
    def apply_event(self, name: str, data: dict[str, Any]) -> None:
        """A ``settings.changed`` event: a field nobody touched here shows the new value; a touched
        one keeps this sheet's value and says what the setting is now (Apply will be refused until
        the administrator has seen it, then replaces it deliberately)."""
        if name != "settings.changed" or not isinstance(data, dict):
            return
        setting = str(data.get("name"))
        version = data.get("version")
        if setting in self._in_flight:   # our own change, or one that crossed it: after the answer
            self._held[setting] = data
            return
        if isinstance(version, int) and version <= self.versions.get(setting, -1):
            return   # what this sheet already has (the event of its own Apply)
        field = self.fields.get(setting)
        if field is not None and self._touched(setting):
            field.show_meanwhile(f"Changed by another administrator while this sheet was open; it is now "
                                 f"{self._shown(setting, data.get('value'))}.")
            return
        self.current[setting] = data.get("value")
        if isinstance(version, int):
            self.versions[setting] = version
        if field is not None:
            field.set_value(data.get("value"))
            field.show_meanwhile("")
        self._update_buttons()

    def _answered(self, name: str) -> None:
        self._in_flight.discard(name)
        held = self._held.pop(name, None)
        if held is not None:
            self.apply_event("settings.changed", held)

    def _merge(self, snapshot: dict[str, Any], *, conflicted: dict[str, str]) -> None:
        """A fresh ``settings.snapshot`` after a refusal: the refused settings take the server's
        value and version (so Apply again replaces them) and say, in the service's words, who
        changed them and to what; untouched fields show the server's values."""
        values, versions = snapshot.get("values") or {}, snapshot.get("versions") or {}
        first = next((self.fields[n] for n in self.fields if n in conflicted), None)
        if first is not None:   # show the first one: its tab may not be the one open
            pages = [i for i in range(self.tabs.count())
                     if (page := self.tabs.widget(i)) is not None and page.isAncestorOf(first)]
            self.tabs.setCurrentIndex(pages[0] if pages else self.tabs.currentIndex())
        for name in conflicted:
            if name in values:
                self.current[name] = values[name]
            if isinstance(versions.get(name), int):
                self.versions[name] = versions[name]
            field = self.fields.get(name)
            if field is not None:
                field.show_meanwhile(conflicted[name])
        for name, version in versions.items():
            if name not in conflicted and isinstance(version, int) and version > self.versions.get(name, -1):
                self.apply_event("settings.changed", {"name": name, "value": values.get(name), "version": version})

    def _touched(self, name: str) -> bool:
        field = self.fields[name]
        try:
            return bool(field.value() != self.current.get(name, field.spec.default))
        except MailError:
            return True

    def _shown(self, name: str, value: Any) -> str:
        spec = self.specs.get(name)
        if value in (None, ""):
            return "(none)"
        if spec is not None and spec.kind == Kind.YES_NO:
            return "on" if value else "off"
        if name == "auth":
            return AUTH_LABELS.get(str(value), str(value))
        if name == "logging" and isinstance(value, int) and 0 <= value < len(LOGGING_LABELS):
            return LOGGING_LABELS[value]
        if spec is not None and spec.kind == Kind.SIZE:
            return size_text(value)
        return str(value)

    def _show_notice(self, moved: dict[str, str]) -> None:
        parts: list[str] = []
        if moved:
            names = ", ".join(self.specs[n].label for n in sorted(moved))
            parts.append(f"Not applied: another administrator changed {names} after this sheet read "
                         f"{'them' if len(moved) > 1 else 'it'}. Check the value shown below the field; Apply "
                         "again to replace it with yours, or Cancel to keep theirs.")
        if self._pending_restart:
            parts.append("Saved. The new values take effect when these listeners restart: "
                         f"{', '.join(self._pending_restart)}.")
        self.notice.setText(" ".join(parts))
        self.notice.setVisible(bool(parts))
        self.restart_button.setVisible(bool(self._pending_restart) and self._restart_listeners is not None)

    def _restart_now(self) -> None:
        if self._restart_listeners is not None and self._pending_restart:
            self._restart_listeners(list(self._pending_restart))
            self.notice.setText("Restarting: " + ", ".join(self._pending_restart) + ".")
            self.restart_button.setVisible(False)
            self._pending_restart = []
