"""The console collects garbage on its GUI thread only (gui/app.py
``collect_garbage_on_the_main_thread``): Python's automatic collection would otherwise run in
whichever thread allocates (the wizard's directory test has one), destroy Qt objects there, and
shiboken 6.12 can deadlock with the GUI thread doing the same. A test run hung exactly so."""
from __future__ import annotations

import gc
import threading

from PySide6.QtCore import QObject

from gui import app as console_app


class Marker:
    """Notes the thread it is freed in."""

    def __init__(self, freed_in: list[str]) -> None:
        self.freed_in = freed_in

    def __del__(self) -> None:
        self.freed_in.append(threading.current_thread().name)


def test_qt_garbage_is_freed_on_the_gui_thread_whoever_allocates(qtbot, monkeypatch) -> None:
    monkeypatch.setattr(console_app, "_collector", None)
    gc.enable()   # as a fresh console process starts
    try:
        collector = console_app.collect_garbage_on_the_main_thread()
        assert console_app.collect_garbage_on_the_main_thread() is collector
        freed_in: list[str] = []
        owner = QObject()
        marker = Marker(freed_in)
        owner.setObjectName("in a cycle")
        owner.marker = marker            # a Qt object and a Python object holding each other
        marker.owner = owner
        del owner, marker

        kept: list[list[list[int]]] = []

        def allocate() -> None:   # far past Python's thresholds: automatic collection would run here
            kept.append([[i] for i in range(20_000)])

        worker = threading.Thread(target=allocate, name="worker")
        worker.start()
        worker.join()
        assert freed_in == [], "collected in the worker thread"
        qtbot.waitUntil(lambda: freed_in != [], timeout=5000)   # the GUI thread's timer, once a second
        assert freed_in == ["MainThread"]
        kept.clear()
    finally:
        collector.timer.stop()
        gc.disable()   # the test process's own policy (tests/conftest.py)
