"""The status page's small live charts (gui/views/charts.py): the service's per-minute history drawn
with gaps where the service was not running, the hour/day choice, the poll only while the page is
shown, an older service without stats.history, and titles that fit at 150 % text scale."""
from __future__ import annotations

import math

import numpy as np
import pytest
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QApplication

from core.errors import Invalid
from core.ipc.ops import STATS_SERIES
from gui.views.charts import SeriesChart, StatsCharts, as_points, bucket_means, latest_text
from tests.fake_service import demo_history

END = 1_800_000_000 // 60 * 60


def _result(series: dict[str, list], end: int = END) -> dict:
    return {"interval": 60, "end": end, "series": series}


def test_null_is_a_gap_and_a_day_is_drawn_in_ten_minute_steps():
    assert np.isnan(as_points([1, None, 3])[1])
    means = bucket_means(as_points([1, 3, None, None, 4, None]), 2)
    assert means[0] == 2 and math.isnan(means[1]) and means[2] == 4
    assert len(bucket_means(as_points([1] * 1440), 10)) == 144


def test_latest_values_read_as_people_say_them():
    assert latest_text(STATS_SERIES["received"], [3, 12]) == "12/min"
    assert latest_text(STATS_SERIES["queue_size"], [0, 2]) == "2"
    assert latest_text(STATS_SERIES["disk_free_mb"], [512]) == "512 MB"
    assert latest_text(STATS_SERIES["disk_free_mb"], [40_960]) == "40.0 GB"
    assert latest_text(STATS_SERIES["received"], [3, None]) == "–"   # the service was not running


def test_counts_are_bars_only_where_the_service_ran_and_levels_a_line_with_gaps(qtbot):
    charts = StatsCharts()
    qtbot.addWidget(charts)
    values = [2, 0, None, None, 5, 1]
    levels = [3, 3, None, None, 1, 0]
    series = {name: (values if spec.counted else levels) for name, spec in STATS_SERIES.items()}
    charts.apply_history(_result(series))
    received = charts.charts["received"]
    xs, heights = received.bars.opts["x"], received.bars.opts["height"]
    assert list(heights) == [2, 0, 5, 1]                             # no bar at all for the two gaps
    assert list(xs) == [END - 6 * 60 + 30, END - 5 * 60 + 30, END - 2 * 60 + 30, END - 60 + 30]
    x, y = charts.charts["queue_size"].curve.getData()
    assert len(x) == 6 and np.isnan(y[2]) and np.isnan(y[3]) and y[4] == 1
    assert charts.charts["queue_size"].value.text() == "0"
    assert received.value.text() == "1/min"
    view = received.plot.getPlotItem().viewRange()
    assert view[0] == [END - 6 * 60, END]


def test_the_day_choice_asks_for_1440_minutes(qtbot):
    charts = StatsCharts()
    qtbot.addWidget(charts)
    assert charts.minutes == 60
    with qtbot.waitSignal(charts.period_changed) as asked:
        charts.day.setChecked(True)
    assert asked.args == [1440] and charts.minutes == 1440
    charts.apply_history(_result(demo_history()))
    x, _y = charts.charts["disk_free_mb"].curve.getData()
    assert len(x) == 144


def test_the_status_page_polls_the_history_only_while_shown(qtbot, window, fake):
    fake.service.history = demo_history()
    view = window.status_view
    window.server_tabs.setCurrentWidget(view)
    qtbot.waitUntil(lambda: view.charts.charts["received"].value.text() != "–")
    assert fake.ops_sent("stats.history")[-1] == {"minutes": 60}
    assert view.charts_box.isVisible()
    view.charts.day.setChecked(True)
    qtbot.waitUntil(lambda: fake.ops_sent("stats.history")[-1] == {"minutes": 1440})
    window.server_tabs.setCurrentIndex(0)   # the page hidden: no more requests
    asked = len(fake.ops_sent("stats.history"))
    view.refresh()
    qtbot.wait(50)
    assert len(fake.ops_sent("stats.history")) == asked


def test_an_older_service_without_the_op_hides_the_charts(qtbot, window, fake, monkeypatch):
    def unknown(p, ev):
        raise Invalid("Unknown operation 'stats.history'.")
    monkeypatch.setattr(fake.service, "op_stats_history", unknown)
    view = window.status_view
    window.server_tabs.setCurrentWidget(view)
    qtbot.waitUntil(lambda: not view.charts_box.isVisibleTo(view))
    assert view.listeners.rowCount() > 0      # the rest of the page works


@pytest.mark.parametrize("scale", [1.0, 1.25, 1.5], ids=["100%", "125%", "150%"])
def test_titles_and_values_fit_at_larger_text(qtbot, scale):
    app = QApplication.instance()
    before = QFont(app.font())
    font = QFont(before)
    font.setPointSizeF(before.pointSizeF() * scale)
    app.setFont(font)
    try:
        charts = StatsCharts()
        qtbot.addWidget(charts)
        charts.apply_history(_result(demo_history()))
        charts.resize(700, 600)
        charts.show()
        qtbot.waitExposed(charts)
        for chart in charts.charts.values():
            assert isinstance(chart, SeriesChart)
            title, value = chart.title, chart.value
            assert not title.wordWrap() and title.width() >= title.sizeHint().width(), f"{title.text()} is cut"
            assert value.width() >= value.sizeHint().width(), f"{value.text()} is cut"
            assert chart.plot.height() >= 6 * chart.fontMetrics().height()
        assert charts.minimumSizeHint().width() <= 700
    finally:
        app.setFont(before)
