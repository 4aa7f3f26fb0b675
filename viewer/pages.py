"""The HTML pages: daily orders, segments, users."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, current_app, redirect, render_template, request, url_for

from orderlog.business_day import date_range, shift_days
from orderlog.menu import EVEN, JAPANESE, SEGMENTS, WESTERN
from viewer import audience, changes, charts, heatmap, queries, trends
from viewer.assets import plotly_js_url
from viewer.db import SchemaOutOfDate, get_store
from viewer.errors import CASSANDRA_ERRORS, error_response
from viewer.i18n import language, text
from viewer.params import (
    DEFAULT_USER_MATCHES,
    MAX_HOURLY_RANGE_DAYS,
    MAX_PAGE,
    BadParameter,
    audience_args,
    check_user_id,
    page_args,
    parse_date,
    parse_int,
    parse_prefix,
    parse_range,
)
from viewer.timeline import segment_timeline

bp = Blueprint("pages", __name__)

# Rejected records shown under the daily numbers; the hint names the tool that lists them all.
PAGE_REJECTED_SAMPLES = 5


def _tz() -> Any:
    return current_app.config["SETTINGS"].business.tz


@bp.app_template_filter("local_time")
def local_time(value: datetime | None) -> str:
    """A UTC instant as wall-clock time of the business time zone."""
    if value is None:
        return "—"
    return value.astimezone(_tz()).strftime("%Y-%m-%d %H:%M %Z")


@bp.app_template_filter("percent")
def percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


@bp.app_template_filter("signed")
def signed(value: int) -> str:
    """A change with its sign: +1,234 / −56 / ±0 (a real minus sign)."""
    return "±0" if value == 0 else f"{'+' if value > 0 else '−'}{abs(value):,}"


@bp.app_template_filter("signed_percent")
def signed_percent(value: float) -> str:
    return f"{'+' if value >= 0 else '−'}{abs(100 * value):.1f}%"


@bp.app_template_filter("points")
def points(value: float | None) -> str:
    """A change of a share, in percentage points."""
    return "—" if value is None else f"{'+' if value >= 0 else '−'}{abs(100 * value):.1f} pt"


@bp.app_context_processor
def common() -> dict[str, Any]:
    try:
        last = queries.last_aggregated(get_store(), _tz())
    except (*CASSANDRA_ERRORS, SchemaOutOfDate):
        last = None  # the error page itself must still render
    return {
        "last": last,
        "plotly_js": plotly_js_url(),
        "segments": SEGMENTS,
        "JAPANESE": JAPANESE,
        "WESTERN": WESTERN,
        "EVEN": EVEN,
        "timezone": current_app.config["SETTINGS"].business.timezone,
    }


@bp.get("/")
def index() -> Any:
    return redirect(url_for("pages.daily"))


@bp.get("/daily")
def daily() -> Any:
    store = get_store()
    last = queries.last_aggregated(store, _tz())
    chosen = parse_date(request.args, "date") or last.date
    summary = queries.summary_of(store, chosen) if chosen else None
    late = queries.late_orders_of(store, chosen) if summary else None
    span = parse_range(request.args, last.date)
    days: list[queries.DaySummary] = []
    rows: list[tuple[date, queries.DaySummary | None]] = []
    rejected_by_date: dict[date, int] = {}
    compare_from = parse_date(request.args, "compare_from")
    trend = None
    lang = language()
    if span is not None:
        trend = trends.range_trend(store, span, compare_from)
        days = trend.days
        by_date = {d.date: d for d in days}
        rows = [(d, by_date.get(d)) for d in reversed(date_range(*span))]
        rejected_by_date = queries.rejected_between(store, *span)
    return render_template(
        "daily.html",
        chosen=chosen,
        summary=summary,
        late=late,
        changes=changes.changes_of_date(store, summary) if summary else {},
        span=span,
        days=days,
        rows=rows,
        rejected_by_date=rejected_by_date,
        rejected=queries.rejected_of(store, chosen, PAGE_REJECTED_SAMPLES) if chosen else None,
        rejected_ttl_days=current_app.config["SETTINGS"].rejected.ttl_days,
        figure=charts.daily_figure(days, trend.moving, trend.comparison, lang) if trend and days else None,
        comparison=trend.comparison if trend else None,
        chart_summary=charts.daily_summary(days, trend.moving if trend else None, lang),
        month_link=_month_link(chosen or (span[1] if span else None)),
        **_hourly_of(store, span, lang),
    )


def _hourly_of(store: Any, span: tuple[date, date] | None, lang: str) -> dict[str, Any]:
    """The weekday x hour heatmap of the page's range (its last MAX_HOURLY_RANGE_DAYS days
    at most, as the API allows): the template's hourly_* values."""
    if span is None:
        return {"hourly_span": None, "hourly": None, "hourly_figure": None, "hourly_summary": ""}
    first = max(span[0], shift_days(span[1], -(MAX_HOURLY_RANGE_DAYS - 1)))
    grid = heatmap.weekday_hours(queries.hourly_between(store, first, span[1]))
    tz = current_app.config["SETTINGS"].business.timezone
    return {
        "hourly_span": (first, span[1]),
        "hourly": grid,
        "hourly_figure": charts.hourly_figure(grid, lang) if grid.dates else None,
        "hourly_summary": charts.hourly_summary(grid, tz, lang),
        "hourly_tz": tz,
        "weekdays": heatmap.WEEKDAYS,
        "hour_labels": charts.HOUR_LABELS,
    }


def _month_link(day: date | None) -> str | None:
    """The daily page of day's month against the month before ("this month vs last month")."""
    found = trends.previous_month(day) if day else None
    if found is None:
        return None
    (first, last), before = found
    args = {"from": first.isoformat(), "to": last.isoformat(), "compare_from": before.isoformat()}
    if day:
        args["date"] = day.isoformat()
    return url_for("pages.daily") + "?" + urlencode(args)


def _page_link(**changes: Any) -> str:
    args = {k: v for k, v in request.args.items() if k not in ("page", "after", "page_no")}
    args.update({k: v for k, v in changes.items() if v is not None})
    return url_for("pages.segments") + "?" + urlencode(args)


def _next_link(page: queries.MemberPage, number: int, shown: int) -> str | None:
    if not page.has_more:
        return None
    if page.next_after is None:  # a list sorted by orders pages by number
        return _page_link(page=number + 1)
    return _page_link(after=page.next_after, page_no=shown + 1)


def _csv_link(segment: str, prefix: str | None, wanted: audience.Audience) -> str:
    query = {**({"prefix": prefix} if prefix else {}), **wanted.query()}
    return url_for("api.segment_members", segment=f"{segment}.csv") + (f"?{urlencode(query)}" if query else "")


@bp.get("/segments")
def segments() -> Any:
    store = get_store()
    last = queries.last_aggregated(store, _tz())
    segment = request.args.get("segment") or JAPANESE
    if segment not in SEGMENTS:
        raise BadParameter("segment", f"must be one of {', '.join(SEGMENTS)}, got {segment!r}")
    chosen = parse_date(request.args, "date") or last.segments_as_of
    sizes = queries.sizes_of(store, chosen) if chosen else {}
    span = parse_range(request.args, chosen)
    history = queries.sizes_between(store, *span) if span else {}
    args = page_args(request.args)
    wanted = audience.Audience(**audience_args(request.args))
    matching = None
    if wanted.filtered:
        found = audience.page(store, segment, wanted, last.segments_as_of, **args)
        page = queries.MemberPage(found.members, found.has_more, found.next_after)
        matching = audience.count(store, segment, wanted, last.segments_as_of, args["prefix"])
    else:
        page = queries.members_page(store, segment, **args)
    current = queries.sizes_of(store, last.segments_as_of) if last.segments_as_of else {}
    # With a cursor the page number is only shown (page_no rides along in the links).
    lang = language()
    shown_page = parse_int(request.args, "page_no", 1, 1, MAX_PAGE) if args["after"] else args["page"]
    return render_template(
        "segments.html",
        chosen=chosen,
        sizes=sizes,
        span=span,
        figure=charts.segments_figure(history, lang) if history else None,
        flows_figure=charts.segment_flows_figure(history, lang) if history else None,
        history=history,
        sizes_summary=charts.sizes_summary(history, lang),
        flows_summary=charts.flows_summary(history, lang),
        segment=segment,
        current_count=current[segment].users if segment in current else None,
        page=page,
        args=args,
        next_link=_next_link(page, args["page"], shown_page),
        audience=wanted,
        matching=matching,
        prev_link=_page_link(page=args["page"] - 1) if not args["after"] and args["page"] > 1 else None,
        first_link=_page_link() if args["after"] else None,
        shown_page=shown_page,
        first_index=1 + (shown_page - 1) * args["per_page"],
        csv_link=_csv_link(segment, args["prefix"], wanted),
    )


@bp.get("/users")
def user_lookup() -> Any:
    user_id = request.args.get("user_id", "")
    if user_id:
        check_user_id(user_id)
        return redirect(url_for("pages.user", user_id=user_id))
    prefix = parse_prefix(request.args)
    found, has_more = queries.users_by_prefix(get_store(), prefix, DEFAULT_USER_MATCHES) if prefix else ([], False)
    return render_template("user_lookup.html", prefix=prefix, found=found, has_more=has_more)


@bp.get("/users/<user_id:user_id>")
def user(user_id: str) -> Any:
    check_user_id(user_id)
    summary = queries.user_summary(get_store(), user_id)
    lang = language()
    if summary is None:
        return error_response(404, text(lang, "user.not_found", user=user_id))
    return render_template(
        "user.html",
        u=summary,
        figure=charts.user_figure(summary.history, lang) if summary.history else None,
        timeline=segment_timeline(summary.history),
        chart_summary=charts.user_summary(summary.history, lang),
        now=datetime.now(UTC),
    )
