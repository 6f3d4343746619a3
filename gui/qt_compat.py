"""Work-arounds for bugs of the installed PySide6.

PySide6 6.12: ``SignalInstance.emit()`` returns ``True`` without taking a reference, so each
emit from Python steals one reference to ``True``; after enough emits CPython 3.11 frees ``True``
and aborts ("Fatal Python error: bool_dealloc"). ``emit()`` below measures the leak once at import
and gives the reference back after each emit; on a fixed PySide6 it measures 0 and adds nothing.
"""
from __future__ import annotations

import ctypes
import sys
from typing import Any

from PySide6.QtCore import QObject, Signal

_incref = ctypes.pythonapi.Py_IncRef
_incref.argtypes = [ctypes.py_object]
_incref.restype = None


class _Probe(QObject):
    fired = Signal()


def _measure_leak() -> int:
    probe = _Probe()
    before = sys.getrefcount(True)
    probe.fired.emit()
    leaked = before - sys.getrefcount(True)
    for _ in range(max(0, leaked)):
        _incref(True)
    return max(0, leaked)


EMIT_LEAK = _measure_leak()


def emit(signal: Any, *args: Any) -> None:
    """``signal.emit(*args)``, minus the PySide6 reference leak."""
    signal.emit(*args)
    for _ in range(EMIT_LEAK):
        _incref(True)
