"""What the parts around the console window may ask of it (the wizard, the server switch, the item commands)."""
from __future__ import annotations

from typing import Protocol

from PySide6.QtWidgets import QDialog, QWidget


class ConsoleHost(Protocol):
    """The console window as its helpers see it: a parent for dialogs, the status bar, the tree's selection."""

    def dialog_parent(self) -> QWidget:
        """The widget dialogs and message boxes belong to."""
        ...

    def open_dialog(self, dialog: QDialog, topic: str) -> QDialog:
        """Open ``dialog`` (deleted when closed, F1 opens help ``topic``); tests find it as ``window.dialog``."""
        ...

    def show_dialog(self, dialog: QDialog) -> None:
        """Open a message box or wizard the caller keeps, and remember it as the dialog opened last."""
        ...

    def show_message(self, text: str, timeout_ms: int) -> None:
        """A line in the status bar for ``timeout_ms``."""
        ...

    def select_server(self) -> None:
        """Select the server node in the tree."""
        ...

    def select_domain(self, name: str) -> bool:
        """Select the domain ``name`` in the tree; False when the tree does not show it (yet)."""
        ...

    def select_domain_when_added(self, name: str) -> None:
        """Select ``name`` now, or as soon as its ``domain.added`` event arrives."""
        ...
