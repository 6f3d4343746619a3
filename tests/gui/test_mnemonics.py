"""No two controls shown together share an Alt+letter: every dialog, property-sheet tab and wizard page.

A control is a button or check box with a ``&``-letter, a label with a buddy, a tab's title. Two
controls are shown together unless they sit on different pages of the same stack (a tab widget's
pages, a wizard's pages); controls hidden in the state the dialog opens in do not count.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import (
    QAbstractButton,
    QGroupBox,
    QLabel,
    QStackedWidget,
    QTabWidget,
    QWidget,
    QWizard,
    QWizardPage,
)

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


def mnemonic(text: str) -> str:
    """The letter after a single ``&`` ("&&" is a literal ampersand), lower case; "" when none."""
    i = 0
    while i < len(text) - 1:
        if text[i] == "&":
            if text[i + 1] != "&":
                return text[i + 1].lower()
            i += 1
        i += 1
    return ""


@dataclass(frozen=True)
class Control:
    what: str                                # "button 'S&ave'" (for the failure message)
    letter: str
    pages: tuple[tuple[int, int], ...]       # (stack, page) for each stack it sits in


def _stack_of(page: QWidget) -> QWidget | None:
    """The stack ``page`` is one page of: a tab widget's or a plain stacked widget, or a wizard."""
    if isinstance(page, QWizardPage):
        return page.wizard()
    parent = page.parentWidget()
    return parent if isinstance(parent, QStackedWidget) else None


def _placed(widget: QWidget, window: QWidget) -> tuple[bool, tuple[tuple[int, int], ...]]:
    """Shown (in the state the window opens in, on whichever page) and the pages it sits on."""
    pages = []
    w: QWidget | None = widget
    while w is not None and w is not window:
        stack = _stack_of(w)
        if stack is not None:
            pages.append((id(stack), id(w)))     # a page of a stack: hidden while another is current
        elif w.isHidden():
            return False, ()
        w = w.parentWidget()
    return True, tuple(pages)


def wizard_buttons(wizard: QWizard) -> Iterator[Control]:
    """The wizard's own buttons on each page: Back but on the first, Next or Finish (Commit on a commit page)."""
    which = QWizard.WizardButton
    for page_id in wizard.pageIds():
        page = wizard.page(page_id)
        shown = [which.CancelButton]
        if page_id != wizard.startId():
            shown.append(which.BackButton)
        if page.isCommitPage():
            shown.append(which.CommitButton)
        elif page.isFinalPage() or page.nextId() == -1:
            shown.append(which.FinishButton)
        else:
            shown.append(which.NextButton)
        if wizard.testOption(QWizard.WizardOption.HaveHelpButton):
            shown.append(which.HelpButton)
        for button in shown:
            text = wizard.buttonText(button)
            if mnemonic(text):
                yield Control(f"wizard button '{text}'", mnemonic(text), ((id(wizard), id(page)),))


def controls(window: QWidget) -> Iterator[Control]:
    own_buttons: set[int] = set()
    if isinstance(window, QWizard):
        yield from wizard_buttons(window)
        own_buttons = {id(window.button(b)) for b in QWizard.WizardButton if b.value <= 10}
    for widget in window.findChildren(QWidget):
        texts: list[tuple[str, QWidget]] = []
        if id(widget) in own_buttons:
            continue
        if isinstance(widget, QAbstractButton):
            texts.append((f"button '{widget.text()}'", widget))
        elif isinstance(widget, QLabel) and widget.buddy() is not None:
            texts.append((f"label '{widget.text()}' (for {type(widget.buddy()).__name__})", widget))
        elif isinstance(widget, QGroupBox) and widget.isCheckable():
            texts.append((f"group '{widget.title()}'", widget))
        elif isinstance(widget, QTabWidget):
            texts += [(f"tab '{widget.tabText(i)}'", widget) for i in range(widget.count())]
        for what, where in texts:
            letter = mnemonic(what.split("'", 1)[1].rsplit("'", 1)[0])
            shown, pages = _placed(where, window)
            if letter and shown:
                yield Control(what, letter, pages)


def _together(a: Control, b: Control) -> bool:
    """Shown at the same time: on the same page of every stack both sit in."""
    mine = dict(a.pages)
    return all(mine.get(stack, page) == page for stack, page in b.pages)


def clashes(window: QWidget) -> list[str]:
    by_letter: dict[str, list[Control]] = defaultdict(list)
    for control in controls(window):
        by_letter[control.letter].append(control)
    found = []
    for letter, group in sorted(by_letter.items()):
        for i, a in enumerate(group):
            for b in group[i + 1:]:
                if _together(a, b):
                    found.append(f"Alt+{letter.upper()}: {a.what} and {b.what}")
    return found


# -- the walker's own checks ---------------------------------------------------------------------
def test_mnemonic_reads_the_letter_after_a_single_ampersand():
    assert mnemonic("&Port:") == "p" and mnemonic("Save && &Close") == "c" and mnemonic("R&&D") == ""


def test_the_walker_finds_a_clash_and_ignores_other_tabs(qtbot):
    from PySide6.QtWidgets import QCheckBox, QFormLayout, QLineEdit, QPushButton, QVBoxLayout
    window = QWidget()
    qtbot.addWidget(window)
    tabs = QTabWidget()
    one, two = QWidget(), QWidget()
    QFormLayout(one).addRow("&Name:", QLineEdit())
    QVBoxLayout(two).addWidget(QCheckBox("&Notify"))
    tabs.addTab(one, "&General")
    tabs.addTab(two, "&Options")
    layout = QVBoxLayout(window)
    layout.addWidget(tabs)
    hidden = QPushButton("&Hide me")
    hidden.setVisible(False)
    layout.addWidget(hidden)
    layout.addWidget(QPushButton("&Help"))
    assert clashes(window) == []   # the hidden '&Hide me' does not clash with '&Help'
    layout.addWidget(QPushButton("&Go"))
    assert clashes(window) == ["Alt+G: tab '&General' and button '&Go'"]


# -- every dialog, tab and wizard page -------------------------------------------------------------
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


def test_the_list_names_every_dialog(fake, tmp_path):
    assert sorted(dialogs(fake, tmp_path)) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES, ids=NAMES)
def test_no_two_controls_on_one_page_share_a_mnemonic(qtbot, fake, tmp_path, errors, name):
    window = dialogs(fake, tmp_path)[name]()
    qtbot.addWidget(window)
    window.show()      # the state it opens in: what its pages hide until a choice is made does not count
    if isinstance(window, QWizard):
        # Each page is shown with the wizard's buttons: walk them all, Next to the end and Back again.
        assert len(window.pageIds()) > 3
    assert clashes(window) == []
