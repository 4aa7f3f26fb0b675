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
from viewer.heatmap import WEEKDAY_NAMES, WEEKDAYS, WeekdayHours
from viewer.queries import DaySummary, SegmentSize, UserDay
from viewer.trends import Comparison

# The line of the Japanese share is drawn in a colour of its own.
SHARE = "share"
MOVING = "moving"
COMPARED = "compared"
COLORS = {JAPANESE: "#c0392b", WESTERN: "#2e6da4", EVEN: "#7f8c8d", SHARE: "#e67e22", MOVING: "#8e44ad",
          COMPARED: "#555555"}
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


def _percent(share: float | None) -> float | None:
    return None if share is None else round(100 * share, 2)


def daily_figure(
    days: list[DaySummary],
    moving: dict[date, float | None] | None = None,
    comparison: Comparison | None = None,
) -> dict[str, Any]:
    """Orders per day (stacked bars) with the Japanese share (line, right axis); the share
    over 7 days (``moving``, by date) and a second period drawn day by day over the range
    (``comparison``: its total orders and its share, dashed) when given."""
    x = [d.date.isoformat() for d in days]
    traces: list[Any] = [
        *_menu_bars(x, days),
        go.Scatter(name="和食率 Japanese share (%)", x=x, y=[_percent(d.japanese_share) for d in days], yaxis="y2",
                   mode="lines+markers", line={"color": COLORS[SHARE], "width": 2}),
    ]
    if moving is not None:
        traces.append(go.Scatter(name="和食率 7日移動平均 Japanese share, 7 days (%)", x=x,
                                 y=[_percent(moving.get(d.date)) for d in days], yaxis="y2", mode="lines",
                                 line={"color": COLORS[MOVING], "width": 3}))
    if comparison is not None:
        aligned = comparison.aligned()
        cx = [at.isoformat() for at, _ in aligned]
        shown = [d.date.isoformat() for _, d in aligned]  # the compared period's own dates, on hover
        period = f"{comparison.first.isoformat()} – {comparison.last.isoformat()}"
        traces += [
            go.Scatter(name=f"比較期間 合計 Total, {period}", x=cx, y=[d.total for _, d in aligned], customdata=shown,
                       mode="lines", line={"color": COLORS[COMPARED], "dash": "dash"},
                       hovertemplate="%{customdata}: %{y}"),
            go.Scatter(name=f"比較期間 和食率 Japanese share (%), {period}", x=cx,
                       y=[_percent(d.japanese_share) for _, d in aligned], customdata=shown, yaxis="y2",
                       mode="lines", line={"color": COLORS[SHARE], "dash": "dot"},
                       hovertemplate="%{customdata}: %{y}%"),
        ]
    fig = go.Figure(
        data=traces,
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


HOUR_LABELS = [f"{h:02d}:00" for h in range(24)]


def hourly_figure(grid: WeekdayHours) -> dict[str, Any]:
    """Orders by weekday (rows, Monday on top) and business hour (columns), as two heatmaps:
    the orders of each cell (shown) and its Japanese share in % (hidden; the page's switch
    shows one or the other). A cell without orders has no share: a gap, not 0 %."""
    y = [WEEKDAY_NAMES[w] for w in WEEKDAYS]
    orders = [[grid.cell(w, h).total for h in range(24)] for w in WEEKDAYS]
    shares = [[_percent(grid.cell(w, h).japanese_share) for h in range(24)] for w in WEEKDAYS]
    fig = go.Figure(
        data=[
            go.Heatmap(name="注文数 Orders", x=HOUR_LABELS, y=y, z=orders, colorscale="Blues", xgap=1, ygap=1,
                       colorbar={"title": {"text": "orders"}},
                       hovertemplate="%{y} %{x}: %{z} orders<extra></extra>"),
            go.Heatmap(name="和食率 Japanese share (%)", x=HOUR_LABELS, y=y, z=shares, visible=False,
                       colorscale=[[0, COLORS[WESTERN]], [0.5, "#f4f4f4"], [1, COLORS[JAPANESE]]],
                       zmin=0, zmax=100, xgap=1, ygap=1, colorbar={"title": {"text": "% Japanese"}},
                       hovertemplate="%{y} %{x}: %{z}% Japanese<extra></extra>"),
        ],
        layout={
            **_LAYOUT,
            "hovermode": "closest",
            "height": 340,
            "xaxis": {"title": {"text": "hour of the business day 時"}, "type": "category", "dtick": 3},
            "yaxis": {"type": "category", "autorange": "reversed"},
        },
    )
    return _plain(fig)


def hourly_summary(grid: WeekdayHours, tz: str) -> str:
    """What the heatmap shows, in one sentence."""
    busy = [c for c in grid.cells if c.total]
    if not busy:
        return "No orders by hour in this range."
    top = max(busy, key=lambda c: c.total)
    most_japanese = max(busy, key=lambda c: (c.japanese_share, c.total))
    return (
        f"Orders by weekday and hour ({tz}) over {grid.dates} aggregated date{'' if grid.dates == 1 else 's'}: "
        f"the most on {WEEKDAY_NAMES[top.weekday]} at {HOUR_LABELS[top.hour]} ({top.total:,} orders); the highest "
        f"Japanese share on {WEEKDAY_NAMES[most_japanese.weekday]} at {HOUR_LABELS[most_japanese.hour]} "
        f"({_pct(most_japanese.japanese_share)} of {most_japanese.total:,})."
    )


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


def segment_flows_figure(by_date: dict[date, dict[str, SegmentSize]]) -> dict[str, Any]:
    """Users who entered (up) and exited (down) each segment per day, as relative bars."""
    x = [d.isoformat() for d in by_date]
    traces = []
    for s in SEGMENTS:
        traces.append(go.Bar(name=f"{SEGMENT_LABELS[s]} 流入 entered", x=x, legendgroup=s,
                             y=[sizes[s].entered for sizes in by_date.values()], marker_color=COLORS[s]))
        traces.append(go.Bar(name=f"{SEGMENT_LABELS[s]} 流出 exited", x=x, legendgroup=s,
                             y=[-sizes[s].exited for sizes in by_date.values()], marker_color=COLORS[s],
                             marker_pattern_shape="/"))
    fig = go.Figure(
        data=traces,
        layout={
            **_LAYOUT,
            "barmode": "relative",
            "xaxis": _date_axis(x, "as of"),
            "yaxis": {"title": {"text": "users entered (+) / exited (−)"}, "zeroline": True},
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


# -- text alternatives: one sentence that says what a chart shows (its table has the numbers) --


def _pct(share: float | None) -> str:
    return "—" if share is None else f"{100 * share:.1f}%"


def daily_summary(days: list[DaySummary], moving: dict[date, float | None] | None = None) -> str:
    """What the trend chart shows, in one sentence."""
    if not days:
        return "No aggregated days."
    first, last = days[0], days[-1]
    busiest = max(days, key=lambda d: d.total)
    text = (
        f"Orders per day, {first.date.isoformat()} to {last.date.isoformat()} ({len(days)} aggregated days): "
        f"{sum(d.total for d in days):,} orders, the most on {busiest.date.isoformat()} ({busiest.total:,}); "
        f"Japanese share {_pct(first.japanese_share)} on the first day and {_pct(last.japanese_share)} on the last"
    )
    if moving:
        text += f", {_pct(moving.get(last.date))} over the last 7 days"
    return text + "."


def sizes_summary(by_date: dict[date, dict[str, SegmentSize]]) -> str:
    if not by_date:
        return "No segment sizes."
    first, last = next(iter(by_date)), list(by_date)[-1]
    moves = "; ".join(
        f"{SEGMENT_LABELS[s]} {by_date[first][s].users:,} → {by_date[last][s].users:,}" for s in SEGMENTS
    )
    return f"Users per segment, {first.isoformat()} to {last.isoformat()}: {moves}."


def flows_summary(by_date: dict[date, dict[str, SegmentSize]]) -> str:
    if not by_date:
        return "No segment sizes."
    first, last = next(iter(by_date)), list(by_date)[-1]
    moves = "; ".join(
        f"{SEGMENT_LABELS[s]} +{sum(v[s].entered for v in by_date.values()):,} "
        f"−{sum(v[s].exited for v in by_date.values()):,}"
        for s in SEGMENTS
    )
    return f"Users who entered and exited each segment per day, {first.isoformat()} to {last.isoformat()}: {moves}."


def user_summary(history: list[UserDay]) -> str:
    if not history:
        return "No orders."
    days = sorted(history, key=lambda d: d.date)
    return (
        f"Orders per day, {days[0].date.isoformat()} to {days[-1].date.isoformat()} ({len(days)} days with orders): "
        f"{sum(d.japanese for d in days):,} Japanese and {sum(d.western for d in days):,} Western."
    )
