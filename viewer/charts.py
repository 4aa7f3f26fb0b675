"""Plotly figures of the pages, as plain JSON-able dicts (pure functions of the data).

The pages embed them with Jinja's |tojson (safe inside <script>) and static/viewer.js
draws them with the Plotly served by the app. Every name, axis title and sentence is in the
page's language (``lang``, viewer/labels.py): the script draws what the page gives it.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio

from orderlog.business_day import HOURS_OF_DAY, shift_days
from orderlog.menu import EVEN, JA, JAPANESE, MENU_NAMES, SEGMENT_NAMES, SEGMENTS, WESTERN
from viewer.heatmap import WEEKDAYS, WeekdayHours
from viewer.i18n import day, text, weekday_name
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


def _menu_bars(x: list[str], days: list[Any], lang: str) -> list[go.Bar]:
    """Japanese and Western orders per day, as the two stacked bars every chart uses."""
    return [
        go.Bar(name=MENU_NAMES[lang][menu], x=x, y=[getattr(d, menu) for d in days], marker_color=COLORS[menu])
        for menu in (JAPANESE, WESTERN)
    ]


def _percent(share: float | None) -> float | None:
    return None if share is None else round(100 * share, 2)


def daily_figure(
    days: list[DaySummary],
    moving: dict[date, float | None] | None = None,
    comparison: Comparison | None = None,
    lang: str = JA,
) -> dict[str, Any]:
    """Orders per day (stacked bars) with the Japanese share (line, right axis); the share
    over 7 days (``moving``, by date) and a second period drawn day by day over the range
    (``comparison``: its total orders and its share, dashed) when given."""
    x = [d.date.isoformat() for d in days]
    traces: list[Any] = [
        *_menu_bars(x, days, lang),
        go.Scatter(name=text(lang, "chart.share"), x=x, y=[_percent(d.japanese_share) for d in days], yaxis="y2",
                   mode="lines+markers", line={"color": COLORS[SHARE], "width": 2}),
    ]
    if moving is not None:
        traces.append(go.Scatter(name=text(lang, "chart.moving"), x=x,
                                 y=[_percent(moving.get(d.date)) for d in days], yaxis="y2", mode="lines",
                                 line={"color": COLORS[MOVING], "width": 3}))
    if comparison is not None:
        aligned = comparison.aligned()
        cx = [at.isoformat() for at, _ in aligned]
        shown = [d.date.isoformat() for _, d in aligned]  # the compared period's own dates, on hover
        period = f"{comparison.first.isoformat()} – {comparison.last.isoformat()}"
        traces += [
            go.Scatter(name=text(lang, "chart.compare_total", period=period), x=cx, y=[d.total for _, d in aligned],
                       customdata=shown,
                       mode="lines", line={"color": COLORS[COMPARED], "dash": "dash"},
                       hovertemplate="%{customdata}: %{y}"),
            go.Scatter(name=text(lang, "chart.compare_share", period=period), x=cx,
                       y=[_percent(d.japanese_share) for _, d in aligned], customdata=shown, yaxis="y2",
                       mode="lines", line={"color": COLORS[SHARE], "dash": "dot"},
                       hovertemplate="%{customdata}: %{y}%"),
        ]
    fig = go.Figure(
        data=traces,
        layout={
            **_LAYOUT,
            "barmode": "stack",
            "xaxis": _date_axis(x, text(lang, "chart.business_date")),
            "yaxis": {"title": {"text": text(lang, "chart.orders")}, "rangemode": "tozero"},
            "yaxis2": {"title": {"text": text(lang, "chart.share_axis")}, "overlaying": "y", "side": "right",
                       "range": [0, 100], "showgrid": False,
                       # Fixed ticks: left alone, Plotly aligns them to the count axis (14.2, 28.4, ...).
                       "tickmode": "array", "tickvals": [0, 25, 50, 75, 100]},
        },
    )
    return _plain(fig)


HOUR_LABELS = [f"{h:02d}:00" for h in range(HOURS_OF_DAY)]


def hourly_figure(grid: WeekdayHours, lang: str = JA) -> dict[str, Any]:
    """Orders by weekday (rows, Monday on top) and business hour (columns), as two heatmaps:
    the orders of each cell (shown) and its Japanese share in % (hidden; the page's switch
    shows one or the other). A cell without orders has no share: a gap, not 0 %."""
    y = [weekday_name(lang, w) for w in WEEKDAYS]
    orders = [[grid.cell(w, h).total for h in range(HOURS_OF_DAY)] for w in WEEKDAYS]
    shares = [[_percent(grid.cell(w, h).japanese_share) for h in range(HOURS_OF_DAY)] for w in WEEKDAYS]
    orders_name, share_name = text(lang, "hourly.orders"), text(lang, "chart.share")
    fig = go.Figure(
        data=[
            go.Heatmap(name=orders_name, x=HOUR_LABELS, y=y, z=orders, colorscale="Blues", xgap=1, ygap=1,
                       colorbar={"title": {"text": orders_name}},
                       hovertemplate="%{y} %{x}: %{z} " + text(lang, "chart.orders_unit") + "<extra></extra>"),
            go.Heatmap(name=share_name, x=HOUR_LABELS, y=y, z=shares, visible=False,
                       colorscale=[[0, COLORS[WESTERN]], [0.5, "#f4f4f4"], [1, COLORS[JAPANESE]]],
                       zmin=0, zmax=100, xgap=1, ygap=1, colorbar={"title": {"text": text(lang, "chart.share_axis")}},
                       hovertemplate="%{y} %{x}: " + share_name + " %{z}<extra></extra>"),
        ],
        layout={
            **_LAYOUT,
            "hovermode": "closest",
            "height": 340,
            "xaxis": {"title": {"text": text(lang, "chart.hour_axis")}, "type": "category", "dtick": 3},
            "yaxis": {"type": "category", "autorange": "reversed"},
        },
    )
    return _plain(fig)


def hourly_summary(grid: WeekdayHours, tz: str, lang: str = JA) -> str:
    """What the heatmap shows, in one sentence."""
    busy = [c for c in grid.cells if c.total]
    if not busy:
        return text(lang, "chart.hourly_none")
    top = max(busy, key=lambda c: c.total)
    most_japanese = max(busy, key=lambda c: (c.japanese_share, c.total))
    return text(
        lang, "chart.hourly_summary", tz=tz, dates=grid.dates,
        top_day=weekday_name(lang, top.weekday), top_hour=HOUR_LABELS[top.hour], top=f"{top.total:,}",
        share_day=weekday_name(lang, most_japanese.weekday), share_hour=HOUR_LABELS[most_japanese.hour],
        share=_pct(most_japanese.japanese_share), share_of=f"{most_japanese.total:,}",
    )


def segments_figure(by_date: dict[date, dict[str, SegmentSize]], lang: str = JA) -> dict[str, Any]:
    """Segment sizes over time, one line per segment."""
    x = [d.isoformat() for d in by_date]
    fig = go.Figure(
        data=[
            go.Scatter(name=SEGMENT_NAMES[lang][s], x=x, y=[sizes[s].users for sizes in by_date.values()],
                       mode="lines+markers", line={"color": COLORS[s]})
            for s in SEGMENTS
        ],
        layout={
            **_LAYOUT,
            "xaxis": _date_axis(x, text(lang, "chart.as_of")),
            "yaxis": {"title": {"text": text(lang, "chart.users")}, "rangemode": "tozero"},
        },
    )
    return _plain(fig)


def segment_flows_figure(by_date: dict[date, dict[str, SegmentSize]], lang: str = JA) -> dict[str, Any]:
    """Users who entered (up) and exited (down) each segment per day, as relative bars."""
    x = [d.isoformat() for d in by_date]
    traces = []
    for s in SEGMENTS:
        traces.append(go.Bar(name=text(lang, "chart.entered", segment=SEGMENT_NAMES[lang][s]), x=x, legendgroup=s,
                             y=[sizes[s].entered for sizes in by_date.values()], marker_color=COLORS[s]))
        traces.append(go.Bar(name=text(lang, "chart.exited", segment=SEGMENT_NAMES[lang][s]), x=x, legendgroup=s,
                             y=[-sizes[s].exited for sizes in by_date.values()], marker_color=COLORS[s],
                             marker_pattern_shape="/"))
    fig = go.Figure(
        data=traces,
        layout={
            **_LAYOUT,
            "barmode": "relative",
            "xaxis": _date_axis(x, text(lang, "chart.as_of")),
            "yaxis": {"title": {"text": text(lang, "chart.flows_axis")}, "zeroline": True},
        },
    )
    return _plain(fig)


def user_figure(history: list[UserDay], lang: str = JA) -> dict[str, Any]:
    """One user's orders per day (oldest first)."""
    days = sorted(history, key=lambda d: d.date)
    x = [d.date.isoformat() for d in days]
    fig = go.Figure(
        data=[
            *_menu_bars(x, days, lang),
        ],
        layout={
            **_LAYOUT,
            "barmode": "stack",
            "xaxis": _date_axis(x, text(lang, "chart.business_date")),
            "yaxis": {"title": {"text": text(lang, "chart.orders")}, "rangemode": "tozero", "dtick": 1},
        },
    )
    return _plain(fig)


# -- text alternatives: one sentence that says what a chart shows (its table has the numbers) --


def _pct(share: float | None) -> str:
    return "—" if share is None else f"{100 * share:.1f}%"


def daily_summary(days: list[DaySummary], moving: dict[date, float | None] | None = None, lang: str = JA) -> str:
    """What the trend chart shows, in one sentence."""
    if not days:
        return text(lang, "chart.daily_none")
    first, last = days[0], days[-1]
    busiest = max(days, key=lambda d: d.total)
    sentence = text(
        lang, "chart.daily_summary", first=day(lang, first.date), last=day(lang, last.date), days=len(days),
        orders=f"{sum(d.total for d in days):,}", busiest=day(lang, busiest.date), most=f"{busiest.total:,}",
        share_first=_pct(first.japanese_share), share_last=_pct(last.japanese_share),
    )
    if moving:
        sentence += text(lang, "chart.daily_moving", share=_pct(moving.get(last.date)))
    return sentence + text(lang, "chart.end")


def sizes_summary(by_date: dict[date, dict[str, SegmentSize]], lang: str = JA) -> str:
    if not by_date:
        return text(lang, "chart.sizes_none")
    first, last = next(iter(by_date)), list(by_date)[-1]
    moves = "; ".join(
        f"{SEGMENT_NAMES[lang][s]} {by_date[first][s].users:,} → {by_date[last][s].users:,}" for s in SEGMENTS
    )
    return text(lang, "chart.sizes_summary", first=day(lang, first), last=day(lang, last), moves=moves)


def flows_summary(by_date: dict[date, dict[str, SegmentSize]], lang: str = JA) -> str:
    if not by_date:
        return text(lang, "chart.sizes_none")
    first, last = next(iter(by_date)), list(by_date)[-1]
    moves = "; ".join(
        f"{SEGMENT_NAMES[lang][s]} +{sum(v[s].entered for v in by_date.values()):,} "
        f"−{sum(v[s].exited for v in by_date.values()):,}"
        for s in SEGMENTS
    )
    return text(lang, "chart.flows_summary", first=day(lang, first), last=day(lang, last), moves=moves)


def user_summary(history: list[UserDay], lang: str = JA) -> str:
    if not history:
        return text(lang, "chart.user_none")
    days = sorted(history, key=lambda d: d.date)
    return text(
        lang, "chart.user_summary", first=day(lang, days[0].date), last=day(lang, days[-1].date), days=len(days),
        japanese=f"{sum(d.japanese for d in days):,}", western=f"{sum(d.western for d in days):,}",
    )
