"""The console's entry point: ``run_console(data_dir)`` (``python main.py`` calls it)."""
from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication

from gui import icons
from gui.ipc_client import IpcClient
from gui.views.main_window import MainWindow

ORGANIZATION = "pop3-service"
APPLICATION = "console"


def console_settings() -> QSettings:
    """Where the window layout, column widths and the last selected node are kept."""
    return QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, ORGANIZATION, APPLICATION)


def run_console(data_dir: Path) -> int:
    """Open the console for the service whose admin socket is ``data_dir/admin.sock``."""
    app = QApplication.instance() or QApplication(sys.argv)
    app.setApplicationName("POP3 Service")
    app.setOrganizationName(ORGANIZATION)
    app.setWindowIcon(icons.icon("console"))
    settings = console_settings()
    client = IpcClient(Path(data_dir))
    window = MainWindow(client, settings=settings)
    window.show()
    client.start()
    return app.exec()
