"""The bar above the panes that says plainly when the service cannot be reached."""
from __future__ import annotations

from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QStyle, QWidget


class ConnectionBanner(QFrame):
    """'The POP3 Service is not reachable…' with Retry now and Start the service."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("connectionBanner")
        self.setStyleSheet("#connectionBanner { background: #fde7e9; border: 1px solid #d13438; }")
        icon = QLabel()
        icon.setPixmap(self.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxWarning).pixmap(24, 24))
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.retry_button = QPushButton("&Retry now")
        self.start_button = QPushButton("&Start the service")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 8, 4)
        layout.addWidget(icon)
        layout.addWidget(self.message, 1)
        layout.addWidget(self.retry_button)
        layout.addWidget(self.start_button)
        self.setVisible(False)

    def show_message(self, text: str, *, can_start: bool = True) -> None:
        """Show ``text``; Start the service only for a service on this computer (``can_start``)."""
        self.message.setText(text)
        self.start_button.setVisible(can_start)
        self.setVisible(True)
