"""Properties of a domain (read-only facts) and of a mailbox (facts and its quota).

The mailbox sheet behaves as Server Properties does: Apply commits, Cancel discards only what was
not applied, and a quota another administrator changed after the sheet showed it is not silently
overwritten: the service refuses the change, the sheet shows the quota now, and Apply again replaces
it deliberately. A ``mailbox.changed`` event updates the quota when it was not touched here.
"""
from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from core.catalog import SETTINGS
from core.errors import MailError
from gui import icons, ops
from gui.dialogs import error_box
from gui.dialogs.form import Meanwhile, Reason, keep_text_whole
from gui.dialogs.server_properties import size_text
from gui.models.paged_table import kilobytes


def _header(kind: str, title: str, locked: bool) -> QWidget:
    w = QWidget()
    form = QFormLayout(w)
    pic = QLabel()
    pic.setPixmap(icons.item_icon(kind, locked=locked).pixmap(32, 32))
    form.addRow(pic, QLabel(f"<b>{title}</b>"))
    return w


class DomainPropertiesDialog(QDialog):
    """What the console knows about one domain."""

    def __init__(self, parent: QWidget | None, domain: dict[str, Any]) -> None:
        super().__init__(parent)
        name = str(domain.get("display_name") or domain.get("name"))
        self.setWindowTitle(f"{name} Properties")
        page = _header("domain", name, bool(domain.get("locked")))
        form = page.layout()
        assert isinstance(form, QFormLayout)
        if domain.get("display_name") and domain.get("display_name") != domain.get("name"):
            form.addRow("Name in DNS (IDNA):", QLabel(str(domain.get("name"))))
        form.addRow("Mailboxes:", QLabel(f"{domain.get('mailbox_count', 0):,}"))
        form.addRow("Messages:", QLabel(f"{domain.get('message_count', 0):,}"))
        form.addRow("Domain size:", QLabel(f"{kilobytes(domain.get('total_bytes', 0))} KB"))
        form.addRow("State:", QLabel("Locked: no mailbox can log on; mail is still delivered."
                                     if domain.get("locked") else "Unlocked"))
        tabs = QTabWidget()
        tabs.addTab(page, "General")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(tabs)
        layout.addWidget(buttons)
        keep_text_whole(self, 380, 10)


class MailboxPropertiesDialog(QDialog):
    """One mailbox: its counters and state, and its quota (OK / Cancel / Apply)."""

    def __init__(self, parent: QWidget | None, mailbox: dict[str, Any], *, client: Any) -> None:
        super().__init__(parent)
        self._client = client
        self.mailbox = dict(mailbox)
        self._sending: list[int | None] = []   # quotas sent and not answered yet (their events are ours)
        address = str(mailbox.get("address"))
        self.setWindowTitle(f"{address} Properties")
        page = _header("mailbox", address, bool(mailbox.get("locked") or mailbox.get("domain_locked")))
        form = page.layout()
        assert isinstance(form, QFormLayout)
        form.addRow("Messages:", QLabel(f"{mailbox.get('message_count', 0):,}"))
        form.addRow("Mailbox size:", QLabel(f"{kilobytes(mailbox.get('total_bytes', 0))} KB"))
        state = "Locked" if mailbox.get("locked") else "Unlocked"
        if mailbox.get("domain_locked"):
            state += f" (the domain {mailbox.get('domain')} is locked)"
        form.addRow("State:", QLabel(state))
        form.addRow("Associated user:", QLabel("Yes" if mailbox.get("has_user") else "No"))
        self.quota = QLineEdit(size_text(mailbox.get("quota_bytes")))
        self.quota.setPlaceholderText("none")
        self.quota.setAccessibleName("Quota")
        self.quota_reason = Reason()
        self.quota_meanwhile = Meanwhile()   # another administrator changed the quota meanwhile
        form.addRow("&Quota:", self.quota)
        form.addRow("", self.quota_reason)
        form.addRow("", self.quota_meanwhile)
        tabs = QTabWidget()
        tabs.addTab(page, "General")
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
                                        | QDialogButtonBox.StandardButton.Apply)
        self.ok_button = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.apply_button = self.buttons.button(QDialogButtonBox.StandardButton.Apply)
        self.ok_button.clicked.connect(lambda: self.apply(close=True))
        self.apply_button.clicked.connect(lambda: self.apply(close=False))
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(tabs)
        layout.addWidget(self.buttons)
        self.quota.textChanged.connect(self._validate)
        keep_text_whole(self, 400, 10)
        self._validate()

    def _quota_value(self) -> int | None:
        return SETTINGS["default_quota"].check(self.quota.text())

    def _validate(self) -> bool:
        try:
            value = self._quota_value()
        except MailError as exc:
            self.quota_reason.show_reason(exc.message)
            self.ok_button.setEnabled(False)
            self.apply_button.setEnabled(False)
            return False
        self.quota_reason.show_reason("")
        self.ok_button.setEnabled(True)
        self.apply_button.setEnabled(value != self.mailbox.get("quota_bytes"))
        return True

    def apply(self, *, close: bool) -> None:
        """Apply (and with ``close``, OK): send the quota if it differs from the one shown, with
        that one as the expected value."""
        if not self._validate():
            return
        value = self._quota_value()
        if value == self.mailbox.get("quota_bytes"):
            if close:
                self.accept()
            return
        address = str(self.mailbox["address"])

        def done(result: Any) -> None:
            self._sending.remove(value)
            self.mailbox["quota_bytes"] = value
            self.quota_meanwhile.setVisible(False)
            self._validate()
            if close:
                self.accept()

        def failed(error: MailError) -> None:
            self._sending.remove(value)
            if error.code != "conflict":
                error_box.show_error(self, error, doing=f"set the quota of {address}")
                return
            self._client.request("mailbox.get", {"address": address}, lambda info: changed_meanwhile(info, error),
                                 lambda _e: error_box.show_error(self, error, doing=f"set the quota of {address}"))

        def changed_meanwhile(info: dict[str, Any], error: MailError) -> None:
            # Their quota becomes the one this sheet expects: Apply again replaces it deliberately.
            self.mailbox["quota_bytes"] = info.get("quota_bytes")
            self._show_meanwhile(info.get("quota_bytes"), again=True)
            self._validate()

        self._sending.append(value)
        ops.set_quota(self._client, parent=self, address=address, quota=value, on_done=done, on_fail=failed,
                      expected=(self.mailbox.get("quota_bytes"),))

    def apply_event(self, name: str, data: dict[str, Any]) -> None:
        """A ``mailbox.changed`` event for this mailbox: an untouched quota follows it; a touched one
        keeps what was typed and says what the quota is now (Apply is refused until then)."""
        if name != "mailbox.changed" or not isinstance(data, dict) or data.get("address") != self.mailbox["address"]:
            return
        if "quota_bytes" not in data or data["quota_bytes"] in (self.mailbox.get("quota_bytes"), *self._sending):
            return
        try:
            touched = self._quota_value() != self.mailbox.get("quota_bytes")
        except MailError:
            touched = True
        if touched:
            self._show_meanwhile(data["quota_bytes"], again=False)
            return
        self.mailbox["quota_bytes"] = data["quota_bytes"]
        self.quota.setText(size_text(data["quota_bytes"]))
        self.quota_meanwhile.setVisible(False)

    def _show_meanwhile(self, quota: Any, *, again: bool) -> None:
        now = size_text(quota) or "none"
        self.quota_meanwhile.show_reason(f"Another administrator changed the quota while this sheet was open; "
                                         f"it is now {now}." + (" Apply again to replace it with the value above."
                                                                if again else ""))
