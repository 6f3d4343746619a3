"""The console's icons: small SVGs under resources/icons, and badges drawn over them."""
from __future__ import annotations

from functools import cache
from pathlib import Path

from PySide6.QtCore import QRect, QSize, Qt
from PySide6.QtGui import QIcon, QPainter, QPixmap

RESOURCES = Path(__file__).resolve().parent.parent / "resources"
ICON_DIR = RESOURCES / "icons"
_SIZES = (16, 24, 32, 48)


@cache
def icon(name: str) -> QIcon:
    """``resources/icons/<name>.svg`` as an icon (empty if the file is missing)."""
    path = ICON_DIR / f"{name}.svg"
    return QIcon(str(path)) if path.exists() else QIcon()


@cache
def badged(base: str, badge: str) -> QIcon:
    """``base`` with ``badge`` drawn small in its lower right corner (lock, service state)."""
    out = QIcon()
    for size in _SIZES:
        pix = QPixmap(size, size)
        pix.fill(Qt.GlobalColor.transparent)
        painter = QPainter(pix)
        icon(base).paint(painter, QRect(0, 0, size, size))
        b = max(8, size * 5 // 8)
        icon(badge).paint(painter, QRect(size - b, size - b, b, b))
        painter.end()
        out.addPixmap(pix)
    return out


def server_icon(state: str) -> QIcon:
    """The server node's icon with its running / paused / stopped badge."""
    badge = {"running": "state-running", "paused": "state-paused", "stopped": "state-stopped"}.get(
        state, "state-unknown")
    return badged("server", badge)


def item_icon(kind: str, *, locked: bool = False) -> QIcon:
    return badged(kind, "lock") if locked else icon(kind)


def pixmap(name: str, size: int = 32) -> QPixmap:
    return icon(name).pixmap(QSize(size, size))
