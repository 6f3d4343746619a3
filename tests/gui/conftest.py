"""Console tests: offscreen Qt, a fake service with the real client's interface, a fresh QSettings, and
the console on a real service (``console``).

The offscreen platform must be chosen before anything imports Qt.
"""
from __future__ import annotations

import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from PySide6.QtCore import QSettings  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from gui import ipc_client  # noqa: E402
from gui.dialogs import error_box  # noqa: E402
from gui.dialogs.server_properties import ServerPropertiesDialog  # noqa: E402
from gui.views.main_window import MainWindow  # noqa: E402
from tests.fake_service import FakeService, FakeServiceClient, demo_service  # noqa: E402

WAIT_AT_LEAST_MS = 15_000


@pytest.fixture
def qtbot(qtbot):
    """pytest-qt's qtbot, whose waitUntil gives up after 15 s at the earliest (it returns as soon as
    the condition holds): on a loaded 2-core CI machine 3-5 s was twice not enough for the
    console to hear back from the fake service."""
    original = qtbot.waitUntil

    def wait_until(callback, *, timeout: int = 5000):
        return original(callback, timeout=max(timeout, WAIT_AT_LEAST_MS))

    qtbot.waitUntil = wait_until
    return qtbot


@pytest.fixture
def errors(monkeypatch) -> list[str]:
    """Messages that would have popped up (error_box is the only place popups come from)."""
    shown: list[str] = []
    monkeypatch.setattr(error_box, "presenter", lambda parent, heading, message: shown.append(f"{heading} {message}"))
    return shown


@pytest.fixture
def fake_service() -> FakeService:
    return demo_service()


@pytest.fixture
def fake(fake_service, qtbot) -> FakeServiceClient:
    return FakeServiceClient(fake_service)


@pytest.fixture
def qsettings(tmp_path: Path) -> QSettings:
    settings = QSettings(str(tmp_path / "console.ini"), QSettings.Format.IniFormat)
    settings.clear()
    return settings


def open_window(qtbot, client, qsettings: QSettings) -> MainWindow:
    window = MainWindow(client, settings=qsettings)
    qtbot.addWidget(window)
    window.show()
    client.start()
    qtbot.waitUntil(lambda: client.is_connected and window.domain_model.fully_loaded
                    and window.tree_model.server.children != [] or window.tree_model.domain_total == 0
                    and client.is_connected, timeout=3000)
    return window


@pytest.fixture
def console(qtbot, service, qsettings, errors, monkeypatch) -> MainWindow:
    """The console connected to a real running service (tests/conftest.py's ``service``)."""
    monkeypatch.setattr(ipc_client, "RETRY_MS", 100)
    client = ipc_client.IpcClient(service.data_dir)
    window = open_window(qtbot, client, qsettings)
    yield window
    client.stop()


def open_server_properties(qtbot, window) -> ServerPropertiesDialog:
    """Select the server node and open its Properties, as the toolbar would."""
    window.tree.setCurrentIndex(window.tree_model.index_of(window.tree_model.server))
    window.tree.setFocus()
    window.do_properties()
    qtbot.waitUntil(lambda: isinstance(window.dialog, ServerPropertiesDialog))
    return window.dialog


@pytest.fixture
def window(qtbot, fake, qsettings, errors) -> MainWindow:
    """The console, connected to the demo service, with the server node selected."""
    w = open_window(qtbot, fake, qsettings)
    qtbot.waitUntil(lambda: w.domain_model.rowCount() == len(fake.service.domains), timeout=3000)
    yield w
    for top in QApplication.topLevelWidgets():
        if top is not w and top.isVisible() and top.isWindow():
            top.close()
