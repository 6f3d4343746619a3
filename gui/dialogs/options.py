"""View > Options: the console's own choices kept in its settings file, as MMC's Options dialog.

Every "Don't show this message again" of the console is a ``Reminder`` in ``REMINDERS``, and its
check box is made here (``dont_show_check_box``): the Options dialog lists them all, so a message
turned off can always be turned on again, and a new one cannot be forgotten (a test checks that no
other module writes such a key or makes such a check box). The remembered computers of File >
Connect to Another Computer are listed too, to be removed with their token and certificate.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

DONT_SHOW_TEXT = "&Don't show this message again"


# QSettings.value(..., type=bool) trips a reference-counting bug in PySide6 (a fatal error at
# exit), and INI files give text back anyway: read flags by hand.
def stored_flag(settings: QSettings, key: str, default: bool) -> bool:
    """A yes/no the console stored in its settings file."""
    value = settings.value(key)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Reminder:
    """A message the administrator may turn off with "Don't show this message again"."""

    key: str          # the settings key; true while the message is turned off
    option: str       # the Options dialog's check box, which shows the message again (with its Alt+letter)


MAILBOX_CREATED = Reminder("confirm/hide_mailbox_created",
                           "Show the &mail client settings after New Mailbox")
REMINDERS: tuple[Reminder, ...] = (MAILBOX_CREATED,)


def is_hidden(settings: QSettings, reminder: Reminder) -> bool:
    """True when the administrator turned ``reminder`` off."""
    return stored_flag(settings, reminder.key, False)


def set_hidden(settings: QSettings, reminder: Reminder, hidden: bool) -> None:
    settings.setValue(reminder.key, hidden)


def dont_show_check_box(settings: QSettings, reminder: Reminder, parent: QWidget | None = None) -> QCheckBox:
    """The message's "Don't show this message again" box; what it says is stored when it changes."""
    box = QCheckBox(DONT_SHOW_TEXT, parent)
    box.setChecked(is_hidden(settings, reminder))
    box.setToolTip("View > Options shows it again")
    box.toggled.connect(lambda checked: set_hidden(settings, reminder, checked))
    return box


class OptionsDialog(QDialog):
    """The messages that can be shown again, and the remembered computers; OK applies, Cancel keeps all."""

    def __init__(self, parent: QWidget | None, settings: QSettings, *, computers: list[tuple[str, str]],
                 remove_computer: Callable[[str], None]) -> None:
        super().__init__(parent)
        self.setWindowTitle("Options")
        self.settings = settings
        self._remove_computer = remove_computer

        messages = QGroupBox("Messages")
        message_layout = QVBoxLayout(messages)
        self.reminder_boxes: dict[Reminder, QCheckBox] = {}
        for reminder in REMINDERS:
            box = QCheckBox(reminder.option)
            box.setChecked(not is_hidden(settings, reminder))
            message_layout.addWidget(box)
            self.reminder_boxes[reminder] = box
        hint = QLabel("A message turned off with \u201cDon't show this message again\u201d is shown again "
                      "when its box here is ticked.")
        hint.setWordWrap(True)
        hint.setStyleSheet("color: #555;")
        message_layout.addWidget(hint)

        remembered = QGroupBox("Remembered computers")
        self.computers = QListWidget()
        self.computers.setAccessibleName("Remembered computers")
        for key, label in computers:
            item = QListWidgetItem(label)
            item.setData(Qt.ItemDataRole.UserRole, key)
            self.computers.addItem(item)
        self.computers.setMaximumHeight(6 * self.computers.fontMetrics().height() + 8)
        self.remove_button = QPushButton("&Remove")
        self.remove_button.setToolTip("Forget the selected computer, its admin token and its certificate")
        self.remove_button.clicked.connect(self._remove_selected)
        self.computers.currentRowChanged.connect(lambda _r: self._update())
        row = QHBoxLayout()
        row.addWidget(self.computers, 1)
        row.addWidget(self.remove_button, 0, Qt.AlignmentFlag.AlignTop)
        note = QLabel("The computers File > Connect to Another Computer has connected to. Removing one "
                      "forgets its admin token and the certificate you trusted.")
        note.setWordWrap(True)
        note.setStyleSheet("color: #555;")
        self.no_computers = QLabel("No other computer is remembered.")
        computer_layout = QVBoxLayout(remembered)
        computer_layout.addLayout(row)
        computer_layout.addWidget(self.no_computers)
        computer_layout.addWidget(note)
        self.removed: list[str] = []

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(messages)
        layout.addWidget(remembered)
        layout.addWidget(buttons)
        self.setMinimumWidth(460)
        self._update()

    def _update(self) -> None:
        empty = self.computers.count() == 0
        self.computers.setVisible(not empty)
        self.remove_button.setVisible(not empty)
        self.no_computers.setVisible(empty)
        self.remove_button.setEnabled(self.computers.currentItem() is not None)

    def _remove_selected(self) -> None:
        item = self.computers.currentItem()
        if item is None:
            return
        self.removed.append(str(item.data(Qt.ItemDataRole.UserRole)))
        self.computers.takeItem(self.computers.row(item))
        self._update()

    def accept(self) -> None:
        """Apply: the messages ticked are shown again, the computers removed are forgotten."""
        for reminder, box in self.reminder_boxes.items():
            set_hidden(self.settings, reminder, not box.isChecked())
        for key in self.removed:
            self._remove_computer(key)
        super().accept()
