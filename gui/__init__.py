"""The console: the POP3 Service snap-in (PySide6). Talks to the service only over the admin channel."""
from gui.qt_compat import pin_singletons

pin_singletons()   # before any Qt signal fires: see gui/qt_compat.py
