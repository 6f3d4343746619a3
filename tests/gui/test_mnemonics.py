"""No two controls shown together share an Alt+letter: every dialog, property-sheet tab and wizard page.

A control is a button or check box with a ``&``-letter, a label with a buddy, a tab's title. Two
controls are shown together unless they sit on different pages of the same stack (a tab widget's
pages, a wizard's pages); controls hidden in the state the dialog opens in do not count.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
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

from tests.gui.dialog_walk import NAMES, dialogs


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


# -- every dialog, tab and wizard page (tests/gui/dialog_walk.py) --------------------------------------
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
