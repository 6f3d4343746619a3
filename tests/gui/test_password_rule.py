"""One password rule everywhere: the setup wizard's first mailbox, New Mailbox, Change Password and
winpop against a real service give the same verdict on the same passwords, in the same words
(core.passwords)."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from core import passwords
from core.errors import PasswordRefused
from gui.dialogs.change_password import ChangePasswordDialog
from gui.dialogs.new_mailbox import NewMailboxDialog
from gui.wizard.pages import FirstMailboxPage
from tests.gui.test_typed_seams import Answers
from tests.support import ServiceProcess

DOMAIN = "rule.example"

# (password, the reason it is refused, or None when it is accepted)
CASES = [
    pytest.param("Long-enough-1", None, id="fine"),
    pytest.param("12345678", None, id="exactly-8"),
    pytest.param("with spaces and ü", None, id="spaces-and-non-ascii"),
    pytest.param("x" * passwords.MAX_LENGTH, None, id="at-the-limit"),
    pytest.param("short", "The password is 5 characters long; use at least 8.", id="5-characters"),
    pytest.param("1234567", "The password is 7 characters long; use at least 8.", id="7-characters"),
    pytest.param("x" * 300, "The password is 300 characters long; the limit is 256.", id="too-long"),
    pytest.param("two\nlines-of-it", "The password may not contain a line break or a NUL character; mail clients "
                 "cannot send those.", id="line-break"),
]


def wizard_verdict(qtbot, password: str) -> str | None:
    page = FirstMailboxPage(Answers(method="passwordfile"))
    qtbot.addWidget(page)
    page.initializePage()
    page.domain.setText(DOMAIN)
    page.mailbox.setText("alice")
    page.password.setText(password)
    page.confirm.setText(password)
    return page.problem() or None


def new_mailbox_verdict(qtbot, password: str) -> str | None:
    dialog = NewMailboxDialog(None, domain=DOMAIN, submit=lambda *_a: None)
    qtbot.addWidget(dialog)
    dialog.name_edit.setText("alice")
    dialog.password.setText(password)
    dialog.confirm.setText(password)
    accepted = dialog.ok_button.isEnabled()
    assert accepted == (not dialog.password_reason.text())
    return None if accepted else dialog.password_reason.text()


def change_password_verdict(qtbot, password: str) -> str | None:
    dialog = ChangePasswordDialog(None, address=f"alice@{DOMAIN}", submit=lambda *_a: None)
    qtbot.addWidget(dialog)
    dialog.password.setText(password)
    dialog.confirm.setText(password)
    accepted = dialog.ok_button.isEnabled()
    assert accepted == (not dialog.password_reason.text())
    return None if accepted else dialog.password_reason.text()


@pytest.fixture(scope="module")
def real_service(tmp_path_factory) -> Iterator[ServiceProcess]:
    """One real service for the whole table (starting one per password would take minutes)."""
    proc = ServiceProcess(tmp_path_factory.mktemp("password-rule") / "data")
    proc.start()
    proc.call("domain.add", name=DOMAIN)
    proc.call("mailbox.add", address=f"existing@{DOMAIN}", password="Existing-pass-1")
    yield proc
    proc.stop()


def winpop_verdict(service: ServiceProcess, *args: str) -> str | None:
    """None if winpop did it; else the reason it printed (its last line, without 'winpop: ')."""
    result = service.winpop(*args)
    if result.returncode == 0:
        return None
    assert result.returncode == 1, result.stderr
    return result.stderr.strip().splitlines()[-1].removeprefix("winpop: ")


@pytest.mark.parametrize(("password", "reason"), CASES)
def test_every_place_gives_the_same_verdict_in_the_same_words(qtbot, real_service, password, reason):
    assert passwords.password_problem(password) == reason
    assert wizard_verdict(qtbot, password) == reason
    assert new_mailbox_verdict(qtbot, password) == reason
    assert change_password_verdict(qtbot, password) == reason
    # winpop's original forms, the password on the command line; the service decides and words it.
    name = f"u{abs(hash(password)) % 10**8}"
    assert winpop_verdict(real_service, "add", f"{name}@{DOMAIN}", "/createuser", password) == reason
    assert winpop_verdict(real_service, "changepwd", f"existing@{DOMAIN}", password) == reason
    mailboxes = {item["name"] for item in real_service.call("mailbox.list", domain=DOMAIN)["items"]}
    assert (name in mailboxes) == (reason is None), "a refused password creates no mailbox"


def test_an_empty_password_is_refused_everywhere(qtbot, real_service):
    assert wizard_verdict(qtbot, "") == passwords.EMPTY
    # The dialogs do not nag before anything is typed: OK stays disabled and says why on hover.
    new_mailbox = NewMailboxDialog(None, domain=DOMAIN, submit=lambda *_a: None)
    qtbot.addWidget(new_mailbox)
    new_mailbox.name_edit.setText("alice")
    assert not new_mailbox.ok_button.isEnabled() and new_mailbox.ok_button.toolTip() == passwords.EMPTY
    change = ChangePasswordDialog(None, address=f"alice@{DOMAIN}", submit=lambda *_a: None)
    qtbot.addWidget(change)
    assert not change.ok_button.isEnabled()
    refused = real_service.winpop("add", f"nobody@{DOMAIN}", "--password-stdin", input="\n")
    assert refused.returncode == 1
    # The admin channel itself (a script that skips winpop) gets the rule's words.
    with pytest.raises(PasswordRefused, match=passwords.EMPTY):
        real_service.call("mailbox.add", address=f"nobody@{DOMAIN}", password="")


def test_the_confirmation_is_worded_the_same_in_the_console_and_winpop(qtbot):
    page = FirstMailboxPage(Answers(method="passwordfile"))
    qtbot.addWidget(page)
    page.initializePage()
    page.domain.setText(DOMAIN)
    page.mailbox.setText("alice")
    page.password.setText("Long-enough-1")
    page.confirm.setText("Long-enough-2")
    assert page.problem() == passwords.CONFIRM_DIFFERS
    dialog = ChangePasswordDialog(None, address=f"alice@{DOMAIN}", submit=lambda *_a: None)
    qtbot.addWidget(dialog)
    dialog.password.setText("Long-enough-1")
    dialog.confirm.setText("Long-enough-2")
    assert dialog.confirm_reason.text() == passwords.CONFIRM_DIFFERS and not dialog.ok_button.isEnabled()


def test_the_rule_is_shown_where_a_password_is_typed(qtbot):
    page = FirstMailboxPage(Answers(method="passwordfile"))
    qtbot.addWidget(page)
    page.initializePage()
    assert page.password_note.text() == passwords.RULE
    dialog = NewMailboxDialog(None, domain=DOMAIN, submit=lambda *_a: None)
    qtbot.addWidget(dialog)
    assert dialog.password.toolTip() == passwords.RULE
