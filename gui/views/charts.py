"""The Service Status page's small live charts: the service's per-minute history (``stats.history``)
for the last hour or the last day, one small plot per series in a compact grid.

pyqtgraph draws them (a maintained plotting library made for Qt; numpy underneath). A minute the
service was not running comes as ``null`` and is drawn as a gap, never as 0. Titles, tick labels
and the latest value follow the widget's font, so the charts stay readable at 150 % text scale.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QFont, QFontMetrics
from PySide6.QtWidgets import (
    QButtonGroup,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QRadioButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from core.ipc.ops import STATS_SERIES, StatsSeries

PERIODS = {"hour": 60, "day": 1440}     # the choice → stats.history's minutes
COLUMNS = 4                             # 2 x 4: seven charts and the period choice, where the width allows
GRID_SPACING = 10
MAX_POINTS = 144                        # more minutes than this are drawn in steps (a day: ten minutes)
COLOURS = {"received": "#0063b1", "delivered": "#107c10", "sent": "#8764b8", "pop3_sessions": "#008575",
           "failed_logons": "#a4262c", "queue_size": "#ca5010", "disk_free_mb": "#5d5a58"}


def as_points(values: list[Any]) -> np.ndarray:
    """The op's values as floats, ``null`` as NaN: pyqtgraph leaves a gap there (connect="finite")."""
    return np.array([np.nan if v is None else float(v) for v in values], dtype=float)


def latest_text(spec: StatsSeries, values: list[Any]) -> str:
    """The number beside a chart's title: the last full minute's value ('–' if the service was not
    running then)."""
    last = values[-1] if values else None
    if last is None:
        return "–"
    if spec.unit == "MB":
        return f"{last / 1024:,.1f} GB" if last >= 10 * 1024 else f"{last:,} MB"
    return f"{last:,}/min" if spec.counted else f"{last:,}"


def bucket_means(points: np.ndarray, step: int) -> np.ndarray:
    """Averages of ``step`` consecutive points (gaps left out; all gaps: a gap), the newest bucket
    ending with the last point."""
    extra = (-len(points)) % step
    padded = np.concatenate([np.full(extra, np.nan), points]).reshape(-1, step)
    counted = np.isfinite(padded).sum(axis=1)
    sums = np.nansum(padded, axis=1)
    return np.where(counted > 0, sums / np.maximum(counted, 1), np.nan)


TICK_STEPS = (5, 10, 15, 20, 30, 60, 120, 180, 240, 360, 720)   # minutes between time labels


class TimeAxis(pg.AxisItem):
    """Clock times (local) on the bottom axis, as many as fit without touching: 14:15, 14:30 ...
    for an hour, 06:00, 12:00 ... for a day."""

    label_width = 30.0   # pixels of "00:00" in the tick font (SeriesChart.follow_font sets it)

    def tickStrings(self, values: list[float], scale: float, spacing: float) -> list[str]:
        return [datetime.fromtimestamp(v).strftime("%H:%M") for v in values]

    def tickValues(self, minVal: float, maxVal: float, size: float) -> list[tuple[float, list[float]]]:
        fit = max(1, int(size // (self.label_width * 1.8)))
        span_minutes = (maxVal - minVal) / 60
        step = 60 * next((m for m in TICK_STEPS if span_minutes / m <= fit), TICK_STEPS[-1])
        offset = datetime.fromtimestamp(minVal).astimezone().utcoffset()
        shift = offset.total_seconds() if offset is not None else 0.0   # steps on the local clock
        first = ((minVal + shift) // step + 1) * step - shift
        return [(step, list(np.arange(first, maxVal + 1, step)))]


class SeriesChart(QWidget):
    """One series: its title and latest value above a small plot."""

    def __init__(self, spec: StatsSeries, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.spec = spec
        self.title = QLabel(spec.label)
        # One line, always (a wrapped title pushes its plot out of line with its row's). The grid takes fewer
        # charts to a row when titles do not fit (StatsCharts.columns_for); a title never widens the page.
        self.title.setMinimumWidth(1)
        self.title.setToolTip(spec.label + (": how many in each minute" if spec.counted else
                                            ": the level at the end of each minute") +
                              (f", in {spec.unit} (in GB from 10 GB)" if spec.unit == "MB" else ""))
        self.value = QLabel("–")
        self.value.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        bold = QFont(self.value.font())
        bold.setBold(True)
        self.value.setFont(bold)
        head = QHBoxLayout()
        head.setContentsMargins(0, 0, 0, 0)
        head.addWidget(self.title, 1)
        head.addWidget(self.value)
        self._head = head
        self.plot = pg.PlotWidget(axisItems={"bottom": TimeAxis(orientation="bottom")}, background="w")
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.setMenuEnabled(False)
        self.plot.hideButtons()
        self.plot.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.plot.showGrid(x=True, y=True, alpha=0.15)
        item = self.plot.getPlotItem()
        item.layout.setContentsMargins(2, 2, 6, 2)
        for name in ("left", "bottom"):
            axis = item.getAxis(name)
            axis.setPen(pg.mkPen("#8a8886"))
            axis.setTextPen(pg.mkPen("#323130"))
        # Small, and as wide as the grid gives: a plot's own size hint would widen the whole page.
        self.plot.setMinimumWidth(60)
        self.plot.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        colour = QColor(COLOURS.get(spec.name, "#0063b1"))
        # Counts as bars (a minute with none: no bar; not running: nothing), levels as a line with gaps.
        self.bars = pg.BarGraphItem(x=[], height=[], width=1.0, pen=pg.mkPen(None), brush=pg.mkBrush(colour))
        self.curve = pg.PlotDataItem([], [], pen=pg.mkPen(colour, width=1.5), connect="finite")
        self.plot.addItem(self.bars if spec.counted else self.curve)
        self.follow_font()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(1)
        layout.addLayout(head)
        layout.addWidget(self.plot, 1)

    def follow_font(self) -> None:
        """Tick labels in the widget's font (smaller by a step) and a plot tall enough for them."""
        font = QFont(self.font())
        if font.pointSizeF() > 0:
            font.setPointSizeF(max(6.0, font.pointSizeF() * 0.85))
        height = self.fontMetrics().height()
        item = self.plot.getPlotItem()
        for name in ("left", "bottom"):
            item.getAxis(name).setTickFont(font)
        bottom = item.getAxis("bottom")
        if isinstance(bottom, TimeAxis):
            bottom.label_width = float(QFontMetrics(font).horizontalAdvance("00:00"))
        item.getAxis("left").setWidth(int(height * 3.2))
        item.getAxis("bottom").setHeight(int(height * 1.6))
        self.plot.setFixedHeight(int(height * 6.5))

    def changeEvent(self, event: Any) -> None:
        super().changeEvent(event)
        if event.type() == event.Type.FontChange:
            self.follow_font()

    def head_width(self) -> int:
        """The width the title and the latest value need on one line (the value at its widest likely text)."""
        bold = QFontMetrics(self.value.font())
        widest_value = max(bold.horizontalAdvance(self.value.text()), bold.horizontalAdvance("999/min"))
        return self.title.sizeHint().width() + max(self._head.spacing(), 0) + widest_value

    def set_values(self, values: list[Any], end: int, interval: int) -> None:
        """Draw ``values`` (oldest first) ending at ``end`` (epoch seconds); None: a gap. A day is
        drawn in ten-minute steps (the average per minute in each): 1,440 bars would be a smear."""
        n = len(values)
        points = as_points(values)
        if self.spec.unit == "MB" and np.nanmax(points, initial=0.0) >= 10 * 1024:
            points = points / 1024           # tens of thousands of MB read better as GB (the value says which)
        step = max(1, n // MAX_POINTS)
        if step > 1:
            points = bucket_means(points, step)
        width = interval * step
        times = end - width * (len(points) - np.arange(len(points))) + width / 2   # the middle of each step
        if self.spec.counted:
            shown = np.isfinite(points)
            self.bars.setOpts(x=times[shown], height=points[shown], width=width * 0.8)
        else:
            self.curve.setData(times, points, connect="finite")
        finite = points[np.isfinite(points)]
        top = float(finite.max()) if finite.size else 1.0
        self.plot.setXRange(end - interval * n, end, padding=0)
        if self.spec.counted or self.spec.name == "queue_size":
            self.plot.setYRange(0, max(top, 4.0) * 1.1, padding=0)   # whole numbers on a quiet chart
        else:
            low = float(finite.min()) if finite.size else 0.0
            self.plot.setYRange(low * 0.98, max(top, low + 1) * 1.02, padding=0)
        self.value.setText(latest_text(self.spec, values))


class StatsCharts(QWidget):
    """The grid of small charts with the "Last hour / Last day" choice."""

    period_changed = Signal(int)   # minutes: ask the service again now

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.charts: dict[str, SeriesChart] = {name: SeriesChart(spec) for name, spec in STATS_SERIES.items()}
        self.hour = QRadioButton("Last hour")
        self.day = QRadioButton("Last day")
        self.hour.setChecked(True)   # no Alt+letter: the main window's menus own them
        self._group = QButtonGroup(self)
        self._group.addButton(self.hour)
        self._group.addButton(self.day)
        self.hour.toggled.connect(lambda _on: self.period_changed.emit(self.minutes))
        self.note = QLabel("Per minute (a day: ten-minute averages). A gap: the service was not running.")
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: #555;")
        choice = QWidget()
        choice_layout = QVBoxLayout(choice)
        choice_layout.setContentsMargins(6, 0, 0, 0)
        choice_layout.addWidget(QLabel("Show:"))
        choice_layout.addWidget(self.hour)
        choice_layout.addWidget(self.day)
        choice_layout.addWidget(self.note)
        choice_layout.addStretch(1)
        self.choice = choice
        self.grid = QGridLayout(self)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.grid.setHorizontalSpacing(GRID_SPACING)
        self.grid.setVerticalSpacing(6)
        self.columns = 0
        self.place(COLUMNS)

    def columns_for(self, width: int) -> int:
        """As many charts to a row as fit with their titles on one line: four, or fewer in a narrow page."""
        need = max(chart.head_width() for chart in self.charts.values())
        return max(1, min(COLUMNS, (width + GRID_SPACING) // (need + GRID_SPACING)))

    def place(self, columns: int) -> None:
        """Lay the charts and the period choice out ``columns`` to a row."""
        if columns == self.columns:
            return
        self.columns = columns
        for widget in (*self.charts.values(), self.choice):
            self.grid.removeWidget(widget)
        for n, widget in enumerate((*self.charts.values(), self.choice)):
            self.grid.addWidget(widget, *divmod(n, columns))
        for column in range(COLUMNS):
            self.grid.setColumnStretch(column, 1 if column < columns else 0)
        self.grid.activate()   # the new places now, not after the next layout request: the titles fit at once

    def resizeEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self.place(self.columns_for(event.size().width()))

    @property
    def minutes(self) -> int:
        return PERIODS["hour"] if self.hour.isChecked() else PERIODS["day"]

    def apply_history(self, result: dict[str, Any]) -> None:
        """Draw a stats.history result; a series the service does not send stays as it was."""
        series = result.get("series") or {}
        end, interval = int(result.get("end") or 0), int(result.get("interval") or 60)
        for name, chart in self.charts.items():
            if isinstance(series.get(name), list):
                chart.set_values(series[name], end, interval)
