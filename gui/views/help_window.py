"""Help (F1): the local pages under resources/help, one per screen, in a small browser window."""
from __future__ import annotations

from PySide6.QtCore import QUrl
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QTextBrowser, QVBoxLayout, QWidget

from gui.icons import RESOURCES

HELP_DIR = RESOURCES / "help"


def help_url(topic: str) -> QUrl:
    page = HELP_DIR / f"{topic}.html"
    if not page.exists():
        page = HELP_DIR / "index.html"
    return QUrl.fromLocalFile(str(page))


class HelpWindow(QDialog):
    """A non-modal help viewer; links between pages work, external links open nothing."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("POP3 Service Help")
        self.browser = QTextBrowser()
        self.browser.setOpenExternalLinks(False)
        self.browser.setSearchPaths([str(HELP_DIR)])
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        back = buttons.addButton("&Back", QDialogButtonBox.ButtonRole.ActionRole)
        back.clicked.connect(self.browser.backward)
        contents = buttons.addButton("&Contents", QDialogButtonBox.ButtonRole.ActionRole)
        contents.clicked.connect(lambda: self.show_topic("index"))
        layout = QVBoxLayout(self)
        layout.addWidget(self.browser)
        layout.addWidget(buttons)
        self.resize(620, 560)

    def show_topic(self, topic: str) -> None:
        self.browser.setSource(help_url(topic))
        self.show()
        self.raise_()

    @property
    def topic(self) -> str:
        return self.browser.source().fileName().removesuffix(".html")
