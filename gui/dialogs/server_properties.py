"""Server Properties: a tabbed sheet over the settings registry (core/settings.py SPECS).

General holds the original's six properties; the other tabs hold what the POP3 and SMTP work
adds. A setting the registry gains later appears on its tab (or "Other") without code here.
OK / Cancel / Apply: Apply sends one ``settings.set`` per changed value; Cancel also puts back
any value this dialog applied, so the server is left as it was found.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout,
                               QHBoxLayout, QLabel, QLineEdit, QPushButton, QSpinBox, QTabWidget, QVBoxLayout,
                               QWidget)

from core.errors import MailError
from core.settings import SPECS, SettingSpec
from gui import ops
from gui.dialogs import error_box
from gui.dialogs.form import Reason

AUTH_LABELS = {"passwordfile": "Encrypted Password File", "local": "Local Linux Accounts (PAM)",
               "directory": "Active Directory / LDAP"}
LOGGING_LABELS = ["None", "Minimum", "Medium", "Maximum"]
SIZE_SETTINGS = {"default_quota", "max_message_size"}
FOLDER_SETTINGS = {"mailroot"}
FILE_SETTINGS = {"tls_cert", "tls_key"}

TABS: list[tuple[str, list[str], str]] = [
    ("General", ["auth", "port", "logging", "mailroot", "sparequired", "createuser"],
     "The properties of the POP3 Service on this server."),
    ("POP3", ["pop3s_port", "idle_timeout", "hostname"],
     "POP3 on its standard port offers STLS; the TLS port starts encrypted. Port 0 turns a listener off."),
    ("SMTP", ["smtp_port", "submission_port", "smtps_port", "max_message_size"],
     "Port 25 receives mail for the local domains; users send through submission (587) or SMTPS (465) "
     "with authentication. Relay is allowed only for authenticated users."),
    ("Security", ["tls_cert", "tls_key", "keystore", "admin_group"],
     "The TLS certificate serves STLS, STARTTLS and the implicit-TLS ports."),
    ("Limits", ["max_connections", "max_connections_per_ip", "default_quota"],
     "Limits protect the server from overload; a quota of 0 means none."),
]
SMTP_PREFIXES = ("smtp", "relay", "smarthost", "queue", "submission", "smtps")


def tab_of(name: str) -> str:
    for title, names, _intro in TABS:
        if name in names:
            return title
    return "SMTP" if name.startswith(SMTP_PREFIXES) else "Other"


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
        self.editor: QWidget
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
        elif isinstance(spec.default, bool):
            box = QCheckBox(spec.label)
            box.toggled.connect(self.changed)
            self.editor = box
        elif name == "port" or name.endswith("_port"):
            spin = QSpinBox()
            spin.setRange(0, 65535)
            spin.setSpecialValueText("Off")
            spin.valueChanged.connect(self.changed)
            self.editor = spin
        else:
            edit = QLineEdit()
            edit.textChanged.connect(self.changed)
            if name in SIZE_SETTINGS:
                edit.setPlaceholderText("none" if spec.default is None else "e.g. 25 MB")
            self.editor = edit
        self.editor.setAccessibleName(spec.label)
        if spec.help:
            self.editor.setToolTip(spec.help)
        row.addWidget(self.editor, 1)
        if name in FOLDER_SETTINGS or name in FILE_SETTINGS:
            browse = QPushButton("&Browse…")
            browse.clicked.connect(self._browse)
            row.addWidget(browse)
        if not spec.writable:
            self.editor.setEnabled(False)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.setSpacing(2)
        outer.addLayout(row)
        outer.addWidget(self.reason)
        self.changed.connect(self.validate)

    def set_value(self, value: Any) -> None:
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
                e.setText(size_text(value) if self.spec.name in SIZE_SETTINGS else ("" if value is None else str(value)))
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
        return e.text()  # type: ignore[attr-defined]

    def value(self) -> Any:
        """The checked value; raises MailError (Invalid) with a reason when it is not acceptable."""
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
            path, _ = QFileDialog.getOpenFileName(self, self.spec.label, current, "PEM files (*.pem *.crt *.key);;All files (*)")
        if path:
            self.editor.setText(path)  # type: ignore[attr-defined]


class ServerPropertiesDialog(QDialog):
    """The server's property sheet; ``client`` sends the changes (see ``gui.ops.set_setting``)."""

    applied = Signal(list)     # the listeners whose restart the applied changes need

    def __init__(self, parent: QWidget | None, *, client: Any, settings: dict[str, Any], domain_count: int,
                 hostname: str = "", restart_listeners: Callable[[list[str]], None] | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"{hostname or 'Server'} Properties")
        self._client = client
        self._restart_listeners = restart_listeners
        self.original = dict(settings)        # as found when the dialog opened
        self.current = dict(settings)         # as the server has them now (after Apply)
        self.fields: dict[str, SettingField] = {}
        self.tabs = QTabWidget()
        pages: dict[str, QFormLayout] = {}
        for title, _names, intro in TABS + [("Other", [], "Further settings of the service.")]:
            page = QWidget()
            form = QFormLayout(page)
            label = QLabel(intro)
            label.setWordWrap(True)
            form.addRow(label)
            pages[title] = form
            self.tabs.addTab(page, title)
        ordered = [n for _t, names, _i in TABS for n in names if n in SPECS]
        ordered += [n for n in SPECS if n not in ordered]
        for name in ordered:
            spec = SPECS[name]
            field = SettingField(spec)
            field.set_value(settings.get(name, spec.default))
            field.changed.connect(self._update_buttons)
            self.fields[name] = field
            label = "" if isinstance(spec.default, bool) else f"{spec.label}:"
            pages[tab_of(name)].addRow(label, field)
            if spec.restart:
                field.editor.setToolTip((spec.help + "\n" if spec.help else "") +
                                        f"Changing this restarts the {spec.restart} listener.")
        for name, value in settings.items():   # settings the service has and this console does not know
            if name not in SPECS:
                shown = QLineEdit(str(value))
                shown.setReadOnly(True)
                pages["Other"].addRow(f"{name}:", shown)
        if pages["Other"].rowCount() <= 1:
            self.tabs.removeTab(self.tabs.count() - 1)

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
            self.mailroot_note = QLabel("Changing the root mail directory does not move existing mail.")
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
        self._sent: set[str] = set()          # settings this dialog has asked the server to change
        self._busy = False
        self.resize(520, 460)
        self._update_buttons()

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
        restart: list[str] = []
        left = [len(changes)]

        def finish() -> None:
            left[0] -= 1
            if left[0]:
                return
            self._busy = False
            self._update_buttons()
            if restart:
                self._pending_restart = sorted(set(self._pending_restart) | set(restart))
                names = ", ".join(self._pending_restart)
                self.notice.setText(f"Saved. The new values take effect when these listeners restart: {names}.")
                self.notice.setVisible(True)
                self.restart_button.setVisible(self._restart_listeners is not None)
                self.applied.emit(list(self._pending_restart))
            if failures:
                error_box.show_error(self, "\n".join(failures), doing="change the server properties")
            elif close:
                self.accept()

        for name, value in changes.items():
            self._sent.add(name)

            def done(result: Any, name: str = name, value: Any = value) -> None:
                self.current[name] = (result or {}).get("value", value) if isinstance(result, dict) else value
                need = result.get("restart") if isinstance(result, dict) else None
                if need:
                    restart.append(need if isinstance(need, str) else (SPECS[name].restart or name))
                finish()

            def failed(error: MailError, name: str = name) -> None:
                failures.append(f"{SPECS[name].label}: {error.message}")
                finish()

            ops.set_setting(self._client, parent=self, name=name, value=value, on_done=done, on_fail=failed)

    def reject(self) -> None:
        """Cancel: put back whatever this dialog applied, then close."""
        # Revert everything sent, even a change whose answer has not arrived yet.
        for name in sorted(self._sent):
            if name in self.original:
                ops.set_setting(self._client, parent=self.parentWidget(), name=name, value=self.original[name])
        self._sent.clear()
        super().reject()

    def _restart_now(self) -> None:
        if self._restart_listeners is not None and self._pending_restart:
            self._restart_listeners(list(self._pending_restart))
            self.notice.setText("Restarting: " + ", ".join(self._pending_restart) + ".")
            self.restart_button.setVisible(False)
            self._pending_restart = []
