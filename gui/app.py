"""The console's entry point: ``run_console(data_dir)`` (``python main.py`` calls it)."""
from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import cast

from pyqtgraph.util.garbage_collector import GarbageCollector
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication

from gui import icons
from gui.ipc_client import IpcClient
from gui.views.main_window import MainWindow
from gui.wizard.setup_wizard import SetupWizard

ORGANIZATION = "pop3-service"
APPLICATION = "console"


def console_settings() -> QSettings:
    """Where the window layout, column widths and the last selected node are kept."""
    return QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, ORGANIZATION, APPLICATION)


def needs_setup(data_dir: Path) -> bool:
    """First use: no service answers at ``data_dir/admin.sock`` and there is no data directory yet."""
    data_dir = Path(data_dir)
    if data_dir.exists():
        return False
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(data_dir / "admin.sock"))
        return False
    except OSError:
        return True
    finally:
        probe.close()


def open_console(client: IpcClient, settings: QSettings | None = None) -> MainWindow:
    """The main window on ``client`` (connected or not: the banner offers to start the service)."""
    window = MainWindow(client, settings=settings or console_settings())
    window.show()
    client.start()
    return window


_collector: GarbageCollector | None = None


def collect_garbage_on_the_main_thread() -> GarbageCollector:
    """Python's cyclic garbage collector runs in whichever thread happens to allocate. If that is
    not the GUI thread (the wizard's directory test runs in one) and the garbage holds Qt objects,
    Qt destroys them there while the GUI thread destroys others: shiboken 6.12 can then deadlock,
    each thread holding what the other waits for (Qt's object lock and Python's GIL); the test run
    hung exactly so. Automatic collection is therefore off in the console and done by a timer on
    the GUI thread instead (pyqtgraph's GarbageCollector, once per second, generation by
    generation with Python's own thresholds). Idempotent."""
    global _collector
    if _collector is None:
        _collector = GarbageCollector(interval=1.0)
    return _collector


def run_console(data_dir: Path) -> int:
    """Open the console for the service whose admin socket is ``data_dir/admin.sock``; on first use,
    the setup wizard comes first and the console opens on what it made."""
    app = cast(QApplication, QApplication.instance() or QApplication(sys.argv))
    app.setApplicationName("POP3 Service")
    app.setOrganizationName(ORGANIZATION)
    app.setWindowIcon(icons.icon("console"))
    collect_garbage_on_the_main_thread()
    if needs_setup(Path(data_dir)):
        wizard = SetupWizard(Path(data_dir))
        windows: list[MainWindow] = []

        def after_wizard(_result: int) -> None:
            client = wizard.client_after_setup if wizard.result_info else None
            window = open_console(client or IpcClient(Path(data_dir)))
            windows.append(window)
            if wizard.result_info:
                window.show_first_mailbox(wizard.plan().domain, wizard.result_info)

        wizard.finished.connect(after_wizard)
        wizard.show()
        return app.exec()
    window = open_console(IpcClient(Path(data_dir)))  # noqa: F841 - kept alive by this frame
    return app.exec()
