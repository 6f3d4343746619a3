"""Delete confirmation, with "also delete the associated user" where it applies."""
from __future__ import annotations

import html

from PySide6.QtWidgets import QCheckBox, QDialog, QDialogButtonBox, QHBoxLayout, QLabel, QStyle, QVBoxLayout, QWidget

from gui.dialogs.form import keep_text_whole
from gui.models.nodes import NodeKind, Target


def describe(targets: list[Target]) -> str:
    kind = targets[0].kind
    if len(targets) == 1:
        t = targets[0]
        if kind is NodeKind.DOMAIN:
            count = int(t.data.get("mailbox_count", 0))
            boxes = f"its {count:,} mailbox{'es' if count != 1 else ''} and " if count else ""
            return (f"Are you sure you want to delete the domain <b>{html.escape(t.label)}</b>? "
                    f"This deletes {boxes}all the mail stored in it.")
        return (f"Are you sure you want to delete the mailbox <b>{html.escape(t.key)}</b>? "
                "This deletes all the mail stored in it.")
    if kind is NodeKind.DOMAIN:
        count = sum(int(t.data.get("mailbox_count", 0)) for t in targets)
        return (f"Are you sure you want to delete these {len(targets):,} domains? This deletes their "
                f"{count:,} mailboxes and all the mail stored in them.")
    return (f"Are you sure you want to delete these {len(targets):,} mailboxes? "
            "This deletes all the mail stored in them.")


def offers_user_deletion(targets: list[Target], auth: str) -> bool:
    """The choice applies to system or directory accounts; password-file users go with the mailbox."""
    if auth == "passwordfile":
        return False
    if targets[0].kind is NodeKind.DOMAIN:
        return True
    return any(t.data.get("has_user", True) for t in targets)


class ConfirmDeleteDialog(QDialog):
    """Yes / No, and the associated-user check box when it applies."""

    def __init__(self, parent: QWidget | None, targets: list[Target], *, auth: str) -> None:
        super().__init__(parent)
        self.setWindowTitle("POP3 Service")
        self.targets = targets
        icon = QLabel()
        icon.setPixmap(self.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxWarning).pixmap(32, 32))
        text = QLabel(describe(targets))
        text.setWordWrap(True)
        self.delete_user = QCheckBox("Also delete the associated user account" +
                                     ("s" if len(targets) > 1 or targets[0].kind is NodeKind.DOMAIN else ""))
        self.delete_user.setVisible(offers_user_deletion(targets, auth))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Yes | QDialogButtonBox.StandardButton.No)
        self.yes_button = buttons.button(QDialogButtonBox.StandardButton.Yes)
        buttons.button(QDialogButtonBox.StandardButton.No).setDefault(True)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        top = QHBoxLayout()
        top.addWidget(icon, 0)
        top.addWidget(text, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.delete_user)
        layout.addWidget(buttons)
        keep_text_whole(self, 430, 10)
