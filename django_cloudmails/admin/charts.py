"""Charts drawn on the server as SVG: no JavaScript, no library, nothing fetched.

Each chart names itself for screen readers (``role="img"``, ``<title>``, ``<desc>``),
each bar carries its number as a tooltip, and the page shows the same numbers in a
table beside it. Colours come from CSS classes (``cloudmails/admin.css``), so the
admin's dark theme applies; series also differ by position and are named in a legend.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

WIDTH = 960
PANEL_HEIGHT = 170
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 26, 26
MAX_X_LABELS = 12
GRID_LINES = 4


@dataclass(frozen=True)
class Series:
    key: str
    label: Any  # str or a lazy translation


@dataclass(frozen=True)
class Panel:
    """One plot of a chart: some series over the shared x axis, on their own scale."""

    title: Any
    series: Sequence[Series]


def _num(value: float) -> str:
    """A coordinate with one decimal (format_html escapes its arguments as text)."""
    return f"{value:.1f}"


def nice_ceiling(value: int) -> int:
    """The scale's top: the smallest 1, 2, 4, 5 or 8 times a power of ten at or above
    ``value`` that :data:`GRID_LINES` divides (at least 4), so every grid line is round."""
    if value <= GRID_LINES:
        return GRID_LINES
    power = int(10 ** math.floor(math.log10(value)))
    for step in (1, 2, 4, 5, 8, 10):
        top = step * power
        if value <= top and top % GRID_LINES == 0:
            return top
    return 20 * power  # value <= 10: 10 is not a multiple of 4


def column_chart(
    *,
    title: str,
    description: str,
    labels: Sequence[str],
    values: Sequence[dict[str, int]],
    panels: Sequence[Panel],
    chart_id: str,
) -> SafeString:
    """Grouped columns, one group per label, one stacked panel per :class:`Panel`."""
    count = max(len(labels), 1)
    plot_width = WIDTH - LEFT - RIGHT
    group = plot_width / count
    height = len(panels) * (PANEL_HEIGHT + TOP) + BOTTOM
    parts: list[SafeString] = []
    for index, panel in enumerate(panels):
        top = index * (PANEL_HEIGHT + TOP) + TOP
        parts.append(_panel(panel, labels, values, top, group))
    step = math.ceil(count / MAX_X_LABELS)
    baseline = height - BOTTOM + 16
    parts.extend(
        format_html(
            '<text class="cm-axis" x="{}" y="{}" text-anchor="middle">{}</text>',
            _num(LEFT + group * (position + 0.5)),
            baseline,
            label,
        )
        for position, label in enumerate(labels)
        if position % step == 0
    )
    return format_html(
        '<svg class="cm-chart" viewBox="0 0 {} {}" role="img" aria-labelledby="{}-t {}-d" '
        'xmlns="http://www.w3.org/2000/svg"><title id="{}-t">{}</title>'
        '<desc id="{}-d">{}</desc>{}</svg>',
        WIDTH,
        height,
        chart_id,
        chart_id,
        chart_id,
        title,
        chart_id,
        description,
        mark_safe("".join(parts)),  # noqa: S308 - each part built by format_html
    )


def _panel(
    panel: Panel,
    labels: Sequence[str],
    values: Sequence[dict[str, int]],
    top: int,
    group: float,
) -> SafeString:
    highest = max((row.get(s.key, 0) for row in values for s in panel.series), default=0)
    ceiling = nice_ceiling(highest)
    bottom = top + PANEL_HEIGHT
    parts = [
        format_html(
            '<text class="cm-panel-title" x="{}" y="{}">{}</text>', LEFT, top - 8, panel.title
        )
    ]
    for line in range(GRID_LINES + 1):
        value = ceiling * line // GRID_LINES
        y = bottom - PANEL_HEIGHT * line / GRID_LINES
        parts.append(
            format_html(
                '<line class="cm-grid" x1="{}" x2="{}" y1="{}" y2="{}"/>'
                '<text class="cm-axis" x="{}" y="{}" text-anchor="end">{}</text>',
                LEFT,
                WIDTH - RIGHT,
                _num(y),
                _num(y),
                LEFT - 6,
                _num(y + 4),
                f"{value:,}",
            )
        )
    width = group * 0.8 / max(len(panel.series), 1)
    for position, (label, row) in enumerate(zip(labels, values, strict=True)):
        for offset, series in enumerate(panel.series):
            value = row.get(series.key, 0)
            bar = PANEL_HEIGHT * value / ceiling
            parts.append(
                format_html(
                    '<rect class="cm-bar cm-{}" x="{}" y="{}" width="{}" '
                    'height="{}"><title>{}: {} {}</title></rect>',
                    series.key,
                    _num(LEFT + group * position + group * 0.1 + width * offset),
                    _num(bottom - bar),
                    _num(max(width - 1, 1)),
                    _num(bar),
                    label,
                    f"{value:,}",
                    series.label,
                )
            )
    legend_x = WIDTH - RIGHT
    for series in reversed(panel.series):
        legend_x -= 12 + 7 * len(series.label) + 18
        parts.append(
            format_html(
                '<rect class="cm-bar cm-{}" x="{}" y="{}" width="12" height="12"/>'
                '<text class="cm-axis" x="{}" y="{}">{}</text>',
                series.key,
                legend_x,
                top - 19,
                legend_x + 16,
                top - 9,
                series.label,
            )
        )
    return format_html_join("", "{}", ((part,) for part in parts))


def share_bar(value: int, highest: int, label: str) -> SafeString:
    """A small horizontal bar for a ranked table's row (its number is in the row)."""
    width = 0 if highest <= 0 else 100 * value / highest
    return format_html(
        '<svg class="cm-share" viewBox="0 0 100 10" preserveAspectRatio="none" '
        'role="presentation" aria-hidden="true"><rect class="cm-bar cm-bounced" x="0" y="0" '
        'width="{}" height="10"><title>{}</title></rect></svg>',
        _num(width),
        label,
    )
