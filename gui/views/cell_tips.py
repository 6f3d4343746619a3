"""Tooltips for cut cells: a list or table cell whose text does not fit its column shows the whole
text when the mouse rests on it (as Explorer's and the MMC's details views do). A tooltip the model
gives (a lock's reason) wins."""
from __future__ import annotations

from PySide6.QtCore import QEvent, QModelIndex, QObject, Qt
from PySide6.QtGui import QHelpEvent
from PySide6.QtWidgets import QAbstractItemView, QStyle, QToolTip


def text_is_cut(view: QAbstractItemView, index: QModelIndex) -> bool:
    """Does the cell's text (with its icon and margins) need more width than the cell has?"""
    text = str(index.data(Qt.ItemDataRole.DisplayRole) or "")
    if not text:
        return False
    margin = 2 * (view.style().pixelMetric(QStyle.PixelMetric.PM_FocusFrameHMargin, None, view) + 1)
    needed = max(view.fontMetrics().horizontalAdvance(line) for line in text.split("\n")) + margin
    if index.data(Qt.ItemDataRole.DecorationRole) is not None:
        size = view.iconSize()
        needed += (size.width() if size.isValid() else 16) + 4
    return needed > view.visualRect(index).width()


class CutCellTips(QObject):
    """Installed on a view's viewport: the tooltip of a cut cell is its whole text."""

    def __init__(self, view: QAbstractItemView) -> None:
        super().__init__(view)
        self._view = view
        view.viewport().installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt override
        if event.type() != QEvent.Type.ToolTip or not isinstance(event, QHelpEvent):
            return False
        index = self._view.indexAt(event.pos())
        if not index.isValid() or index.data(Qt.ItemDataRole.ToolTipRole):
            return False                         # the model's own tooltip, or none to show
        if text_is_cut(self._view, index):
            QToolTip.showText(event.globalPos(), str(index.data(Qt.ItemDataRole.DisplayRole)), self._view.viewport(),
                              self._view.visualRect(index))
        else:
            QToolTip.hideText()
        return True
