"""The seams the console's typing made explicit: the wizard's pages ask a ``SetupQuestions`` object
(not whatever ``wizard()`` returns), the tree model's ``parent()`` is both Qt's model call and
QObject's, form labels focus their field, and the token vault's keyring test does not bring the
database layer into the console."""
from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QLabel

from core import passwords
from core.keyrings import is_secure_backend
from gui.dialogs.new_domain import NewDomainDialog
from gui.models.tree_model import ScopeTreeModel
from gui.remote_servers import TokenVault
from gui.wizard import checks
from gui.wizard.apply import SetupPlan, SetupRunner
from gui.wizard.pages import FirstMailboxPage, PortsPage, SetupQuestions, StoragePage
from gui.wizard.setup_wizard import SetupWizard
from tests.support import ROOT


@dataclass
class Answers:
    """A stand-in for the wizard: only what the pages ask."""

    rerun: bool = False
    runner: SetupRunner | None = None
    initial_bind_address: str = "127.0.0.1"
    initial_ports: dict[str, int] = field(default_factory=dict)
    privileged: bool = False
    method: str = "passwordfile"

    def system_service_unavailable(self) -> str:
        return ""

    def will_have_privileges(self) -> bool:
        return self.privileged

    def owned_ports(self) -> set[int]:
        return set()

    def auth_method(self) -> str:
        return self.method

    def plan(self) -> SetupPlan:
        raise AssertionError("not asked by these pages")

    def finish_requested(self) -> bool:
        return False


def test_pages_ask_the_questions_they_are_given_not_a_wizard(qtbot, tmp_path):
    answers: SetupQuestions = Answers(initial_ports={"port": 110})
    ports = PortsPage(answers)
    qtbot.addWidget(ports)
    ports.spins["port"].setValue(110)
    # Without administrator rights (the answer given, whatever this machine can do) port 110 is refused.
    assert "needs administrator rights" in ports.problem()
    ports.spins["port"].setValue(checks.UNPRIVILEGED[110])
    assert "POP3 port" not in ports.problem()

    mailbox = FirstMailboxPage(Answers(method="local"))
    qtbot.addWidget(mailbox)
    mailbox.domain.setText("example.com")
    mailbox.mailbox.setText("alice")
    assert mailbox.problem() == ""          # local accounts: no password asked
    mailbox.questions = Answers(method="passwordfile")
    assert mailbox.problem() == passwords.EMPTY

    storage = StoragePage(tmp_path / "mailroot", Answers(rerun=True))
    qtbot.addWidget(storage)
    storage.initializePage()
    assert "never moves mail" in storage.note.text()


def test_the_wizard_answers_its_own_pages(qtbot, tmp_path):
    wizard = SetupWizard(tmp_path / "data")
    qtbot.addWidget(wizard)
    for page in (wizard.service_page, wizard.storage_page, wizard.ports_page, wizard.first_mailbox_page,
                 wizard.summary_page):
        assert page.questions is wizard
    wizard.auth_page.buttons["local"].setChecked(True)
    assert wizard.auth_method() == "local"


def test_tree_parent_is_the_model_call_with_an_index_and_the_qobject_one_without(qtbot, fake):
    owner = QObject()
    model = ScopeTreeModel(fake, owner)
    root_row = model.index(0, 0)
    assert root_row.isValid()
    assert not model.parent(root_row).isValid()           # a top-level row: the invisible root
    assert model.parent() is owner


def test_a_form_label_focuses_its_field(qtbot):
    dialog = NewDomainDialog(None, submit=lambda *_a: None)
    qtbot.addWidget(dialog)
    assert [label.text() for label in dialog.findChildren(QLabel) if label.buddy() is dialog.name_edit] \
        == ["&Domain name:"]


class _NullKeyring:
    priority = 10


_NullKeyring.__module__ = "keyring.backends.null"


class _GoodKeyring:
    priority = 5


class _BrokenKeyring:
    @property
    def priority(self) -> float:
        raise RuntimeError("locked")


def test_one_keyring_test_for_the_service_and_the_console():
    assert is_secure_backend(_GoodKeyring())
    assert not is_secure_backend(_NullKeyring())
    assert not is_secure_backend(_BrokenKeyring())
    vault = TokenVault(backend=_GoodKeyring())
    assert vault.available


def test_the_token_vault_loads_no_database_layer():
    code = ("import sys, gui.remote_servers, gui.wizard.pages\n"
            "gui.remote_servers.TokenVault()\n"
            "print('\\n'.join(m for m in sys.modules if m.startswith(('core.auth', 'core.db', 'sqlalchemy'))))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == []
