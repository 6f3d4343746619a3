"""The console: the POP3 Service snap-in (PySide6). Talks to the service only over the admin channel."""
import os

from gui.qt_compat import pin_singletons

pin_singletons()   # before any Qt signal fires: see gui/qt_compat.py
# pyqtgraph (the charts, the main-thread garbage collector) picks the first Qt binding it finds
# (PyQt6 before PySide6) unless told: on a machine that also has PyQt6, two bindings would mix.
os.environ.setdefault("PYQTGRAPH_QT_LIB", "PySide6")
