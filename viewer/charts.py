"""Plotly figures of the pages, as plain JSON-able dicts (pure functions of the data).

The pages embed them with Jinja's |tojson (safe inside <script>) and static/viewer.js
draws them with the Plotly served by the app.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio

from orderlog.business_day import shift_days
from orderlog.menu import EVEN, JAPANESE, MENU_LABELS, SEGMENT_LABELS, SEGMENTS, WESTERN
from viewer.queries import DaySummary, SegmentSize, UserDay

# The line of the Japanese share is drawn in a colour of its own.
SHARE = "share"
COLORS = {JAPANESE: "#c0392b", WESTERN: "#2e6da4", EVEN: "#7f8c8d", SHARE: "#e67e22"}
_LAYOUT = {
    "margin": {"l": 60, "r": 60, "t": 30, "b": 50},
    "legend": {"orientation": "h", "y": -0.18},
    "hovermode": "x unified",
    "height": 380,
}


def _date_axis(x: list[str], title: str) -> dict[str, Any]:
    """A date x axis ticked in whole days (Plotly would tick hours on a short range)."""
    axis: dict[str, Any] = {"type": "date", "title": {"text": title}, "tickformat": "%Y-%m-%d"}
    if x:
        days = (date.fromisoformat(x[-1]) - date.fromisoformat(x[0])).days + 1
        axis["dtick"] = 86_400_000 * max(1, -(-days // 10))  # at most ~10 ticks
        # Pad a day each side: the first and last bars are not cut in half.
        first = shift_days(date.fromisoformat(x[0]), -1)
        last = shift_days(date.fromisoformat(x[-1]), 1)
        axis["range"] = [first.isoformat(), last.isoformat()]
    return axis


def _plain(fig: go.Figure) -> dict[str, Any]:
    # Round-trip through plotly's encoder: validated, and only JSON types left.

    return json.loads(pio.to_json(fig, validate=True))


def _menu_bars(x: list[str], days: list[Any]) -> list[go.Bar]:
    """Japanese and Western orders per day, as the two stacked bars every chart uses."""
    return [
        go.Bar(name=MENU_LABELS[menu], x=x, y=[getattr(d, menu) for d in days], marker_color=COLORS[menu])
        for menu in (JAPANESE, WESTERN)
    ]


def daily_figure(days: list[DaySummary]) -> dict[str, Any]:
    """Orders per day (stacked bars) with the Japanese share (line, right axis)."""
    x = [d.date.isoformat() for d in days]
    share = [None if d.japanese_share is None else round(100 * d.japanese_share, 2) for d in days]
    fig = go.Figure(
        data=[
            *_menu_bars(x, days),
            go.Scatter(name="和食率 Japanese share (%)", x=x, y=share, yaxis="y2",
                       mode="lines+markers", line={"color": COLORS[SHARE], "width": 2}),
        ],
        layout={
            **_LAYOUT,
            "barmode": "stack",
            "xaxis": _date_axis(x, "business date"),
            "yaxis": {"title": {"text": "orders 注文数"}, "rangemode": "tozero"},
            "yaxis2": {"title": {"text": "Japanese share %"}, "overlaying": "y", "side": "right",
                       "range": [0, 100], "showgrid": False,
                       # Fixed ticks: left alone, Plotly aligns them to the count axis (14.2, 28.4, ...).
                       "tickmode": "array", "tickvals": [0, 25, 50, 75, 100]},
        },
    )
    return _plain(fig)


def segments_figure(by_date: dict[date, dict[str, SegmentSize]]) -> dict[str, Any]:
    """Segment sizes over time, one line per segment."""
    x = [d.isoformat() for d in by_date]
    fig = go.Figure(
        data=[
            go.Scatter(name=SEGMENT_LABELS[s], x=x, y=[sizes[s].users for sizes in by_date.values()],
                       mode="lines+markers", line={"color": COLORS[s]})
            for s in SEGMENTS
        ],
        layout={
            **_LAYOUT,
            "xaxis": _date_axis(x, "as of"),
            "yaxis": {"title": {"text": "users ユーザー数"}, "rangemode": "tozero"},
        },
    )
    return _plain(fig)


def user_figure(history: list[UserDay]) -> dict[str, Any]:
    """One user's orders per day (oldest first)."""
    days = sorted(history, key=lambda d: d.date)
    x = [d.date.isoformat() for d in days]
    fig = go.Figure(
        data=[
            *_menu_bars(x, days),
        ],
        layout={
            **_LAYOUT,
            "barmode": "stack",
            "xaxis": _date_axis(x, "business date"),
            "yaxis": {"title": {"text": "orders 注文数"}, "rangemode": "tozero", "dtick": 1},
        },
    )
    return _plain(fig)
