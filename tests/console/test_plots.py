"""The console's SVG charts: accessible (title, aria-label, data as a table, focusable points), a band for an
interval, markers on the time axis, bars; nothing drawn when there is nothing to draw."""

from __future__ import annotations

import itertools
import re

from gateway.console.plots.axes import nice_ticks, percent
from gateway.console.plots.charts import (
    Bars,
    Line,
    Marker,
    Point,
    grouped_bars,
    horizontal_bars,
    line_chart,
    stacked_bars,
)
from gateway.console.plots.palette import OKABE_ITO

DAY = 86400.0
T0 = 1_740_787_200.0  # 2025-03-01 00:00 UTC


def test_a_line_with_its_interval_band_and_a_promotion_marker():
    points = [Point(T0 + i * DAY, 0.5 + i / 10, 0.3 + i / 10, 0.7 + i / 10, f"{10 + i} ratings") for i in range(3)]
    chart = line_chart("👍 rate", [Line("support@1", points)], y_format=percent, y_range=(0, 1),
                       markers=[Marker(T0 + DAY, "promoted support@1")])  # fmt: skip
    svg = str(chart.svg)
    assert svg.startswith('<svg class="chart') and 'aria-label="👍 rate"' in svg and "<title>👍 rate</title>" in svg
    assert svg.count('<polygon class="band"') == 1 and 'data-points="3"' in svg
    assert svg.count('class="point" tabindex="0"') == 3
    assert "support@1, 02 Mar 00:00: 60% (40% to 80%), 11 ratings" in svg
    assert 'class="marker"' in svg and "promoted support@1" in svg
    assert chart.rows[0] == ["support@1", "01 Mar 00:00", "50%", "30% to 70%", "10 ratings"]
    assert chart.legend == [("support@1", OKABE_ITO[0], "")]


def test_long_lines_are_drawn_whole_and_their_points_left_to_the_table():
    losses = [Point(float(step), 1 / step) for step in range(1, 501)]
    svg = str(line_chart("loss", [Line("loss", losses)], time_axis=False).svg)
    assert 'data-points="500"' in svg and len(re.search(r' points="([^"]+)"', svg).group(1).split()) == 500
    assert 'class="point"' not in svg


def test_bars_stacked_over_time_grouped_and_horizontal():
    stacked = stacked_bars("requests", [T0, T0 + 3600], 3600, [Bars("support", [3, 0]), Bars("faq", [1, 2])])
    assert str(stacked.svg).count('class="bar"') == 2 and stacked.rows[0][1:] == ["3", "1"]
    grouped = grouped_bars("scores", ["held-out · exact"], [Bars("before", [0.2]), Bars("after", [0.9])],
                           y_format=percent, y_max=1)  # fmt: skip
    assert str(grouped.svg).count('class="bar"') == 2 and ">90%</text>" in str(grouped.svg)
    timed = horizontal_bars("time", ["train", "evaluate"], [8.2, 9.5])
    assert "train: 8.2 s" in str(timed.svg)


def test_nothing_to_draw_is_said_not_drawn():
    assert line_chart("x", [Line("a", [])]).empty
    assert stacked_bars("x", [T0], 3600, [Bars("a", [0])]).empty
    assert grouped_bars("x", [], []).empty


def test_ticks_are_round_numbers():
    assert nice_ticks(0, 1) == [0, 0.25, 0.5, 0.75, 1.0]
    assert nice_ticks(0, 37) == [0, 10, 20, 30]


def test_time_labels_never_run_into_each_other():
    # 48 hourly buckets ending mid-afternoon, as the tenant page draws them: the last tick sits near the right edge.
    starts = [T0 + 16 * 3600 + hour * 3600 for hour in range(48)]
    svg = str(stacked_bars("requests", starts, 3600, [Bars("support", [1.0] * 48)]).svg)
    below_the_axis = r'<text class="tick" x="([\d.]+)" y="212" text-anchor="(\w+)">([^<]+)</text>'
    x_labels = [(float(x), anchor, text) for x, anchor, text in re.findall(below_the_axis, svg)]
    assert [text for _, _, text in x_labels] == ["02 Mar", "12:00", "03 Mar", "12:00"]  # the day at midnight
    spans = []
    for x, anchor, text in x_labels:
        width = len(text) * 8.4
        start = {"start": x, "middle": x - width / 2, "end": x - width}[anchor]
        spans.append((start, start + width))
    assert all(left[1] + 6 <= right[0] for left, right in itertools.pairwise(spans))
