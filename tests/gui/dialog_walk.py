"""Every dialog, property sheet and the setup wizard, opened the way the console opens them, for the tests
that walk them all (mnemonics, layout fit). One list, so a new dialog is walked by every such test."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QWidget

from gui.dialogs.change_password import ChangePasswordDialog
from gui.dialogs.confirm_delete import ConfirmDeleteDialog
from gui.dialogs.connect_computer import ConnectComputerDialog
from gui.dialogs.item_properties import DomainPropertiesDialog, MailboxPropertiesDialog
from gui.dialogs.mailbox_created import MailboxCreatedDialog
from gui.dialogs.new_domain import NewDomainDialog
from gui.dialogs.new_mailbox import NewMailboxDialog
from gui.dialogs.new_token import NewTokenDialog
from gui.dialogs.options import MAILBOX_CREATED, OptionsDialog, dont_show_check_box
from gui.dialogs.queued_message import QueuedMessageDialog
from gui.dialogs.relay_test import RelayTestDialog
from gui.dialogs.server_properties import ServerPropertiesDialog
from gui.models.nodes import NodeKind, Target
from gui.remote_servers import TokenVault
from gui.wizard.setup_wizard import SetupWizard

MAILBOX = {"name": "alice", "domain": "example.com", "address": "alice@example.com", "locked": False,
           "domain_locked": False, "message_count": 3, "total_bytes": 4096, "quota_bytes": 0, "has_user": True}
DOMAIN = {"name": "example.com", "mailbox_count": 2, "total_bytes": 8192, "message_count": 5, "locked": False}
LISTENERS = [{"name": n, "state": "running", "port": p} for n, p in
             (("pop3", 110), ("pop3s", 995), ("smtp", 25), ("submission", 587), ("smtps", 465))]


class _NoKeyring:
    def get_password(self, *_a: object) -> None:
        return None

    def set_password(self, *_a: object) -> None:
        return None

    def delete_password(self, *_a: object) -> None:
        return None


def _nothing(*_args: object, **_kw: object) -> None:
    return None


def dialogs(fake, tmp_path: Path) -> dict[str, Callable[[], QWidget]]:
    """How to open each of the console's dialogs and the setup wizard (first run and re-run)."""
    target = Target(NodeKind.MAILBOX, "alice@example.com", MAILBOX)
    settings = {name: fake.service.settings[name] for name in fake.service.settings}
    ini = QSettings(str(tmp_path / "console.ini"), QSettings.Format.IniFormat)
    return {
        "new domain": lambda: NewDomainDialog(None, submit=_nothing),
        "new mailbox (password file)": lambda: NewMailboxDialog(None, domain="example.com", submit=_nothing),
        "new mailbox (local accounts)": lambda: NewMailboxDialog(None, domain="example.com", auth="local",
                                                                 submit=_nothing),
        "change password": lambda: ChangePasswordDialog(None, address="alice@example.com", submit=_nothing),
        "confirm delete": lambda: ConfirmDeleteDialog(None, [target], auth="local"),
        "domain properties": lambda: DomainPropertiesDialog(None, DOMAIN),
        "mailbox properties": lambda: MailboxPropertiesDialog(None, MAILBOX, client=fake),
        "mailbox created": lambda: MailboxCreatedDialog(None, [("Incoming mail server (POP3)", "mail.example.com")],
                                                        address="alice@example.com",
                                                        dont_show=dont_show_check_box(ini, MAILBOX_CREATED)),
        "mail client settings": lambda: MailboxCreatedDialog(
            None, [("Incoming mail server (POP3)", "mail.example.com")], address="alice@example.com", created=False),
        "options": lambda: OptionsDialog(None, ini, computers=[("mail.example.com:9110", "mail.example.com")],
                                         remove_computer=lambda _key: None),
        "new token": lambda: NewTokenDialog(None, submit=_nothing, port=9110),
        "queued message": lambda: QueuedMessageDialog(None, {"id": 7, "sender": "a@b.example",
                                                             "recipients": ["c@d.example"]}),
        "relay test": lambda: RelayTestDialog(None),
        "connect to another computer": lambda: ConnectComputerDialog(
            None, data_dir=str(tmp_path), remembered=["mail.example.com:9110"], vault=TokenVault(_NoKeyring())),
        "server properties": lambda: ServerPropertiesDialog(None, client=fake, settings=settings, domain_count=2,
                                                            hostname="mail.example.com", listeners=LISTENERS),
        "setup wizard": lambda: SetupWizard(tmp_path / "data"),
        "setup wizard (re-run)": lambda: SetupWizard(tmp_path / "data", client=fake, current=settings,
                                                     listeners=LISTENERS),
    }


NAMES = ["new domain", "new mailbox (password file)", "new mailbox (local accounts)", "change password",
         "confirm delete", "domain properties", "mailbox properties", "mailbox created", "mail client settings",
         "options", "new token",
         "queued message", "relay test", "connect to another computer", "server properties", "setup wizard",
         "setup wizard (re-run)"]
