"""A work-around for reference-counting bugs of the installed PySide6 (6.12.0).

Measured on CPython 3.11: every call of a Python slot from a Qt signal, every
``QApplication.processEvents()`` and every ``Signal.emit()`` from Python drops one reference to
``None`` or ``True`` that it never took. A console that runs for a while therefore frees
``None`` and CPython aborts ("Fatal Python error: none_dealloc" / "bool_dealloc").

None, True and False are static singletons that are never freed (freeing them is that fatal
error), so giving them a very large reference count changes nothing else; CPython 3.12 does the
same by design ("immortal objects", PEP 683). ``pin_singletons`` does it once, when ``gui`` is
imported; on 3.12+ it does nothing.
"""
from __future__ import annotations

import ctypes
import sys

_HEADROOM = 1 << 40   # a leak of one reference per slot call would need 10^12 calls


def pin_singletons() -> None:
    """Make None, True and False effectively immortal on CPython < 3.12."""
    if sys.implementation.name != "cpython" or sys.version_info >= (3, 12):
        return
    for obj in (None, True, False):
        refcnt = ctypes.c_ssize_t.from_address(id(obj))   # ob_refcnt is the first field
        if refcnt.value < _HEADROOM:
            refcnt.value += _HEADROOM
