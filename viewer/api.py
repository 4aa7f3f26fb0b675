"""The JSON API (seed-compatible shapes), its OpenAPI document, and the CSV export of a
segment (written by viewer/csv_export.py)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from flask import Blueprint, Response, current_app, request

from orderlog.business_day import date_range
from orderlog.menu import SEGMENT_LABELS, SEGMENTS
from viewer import audience, changes, heatmap, queries, trends
from viewer.csv_export import csv_rows, sizes_csv, summaries_csv
from viewer.db import Store, get_store
from viewer.errors import error_response
from viewer.openapi import openapi_document
from viewer.params import (
    DEFAULT_PER_PAGE,
    DEFAULT_USER_MATCHES,
    MAX_HOURLY_RANGE_DAYS,
    MAX_PER_PAGE,
    MAX_USER_MATCHES,
    BadParameter,
    audience_args,
    check_exclusive,
    check_user_id,
    page_args,
    parse_date,
    parse_int,
    parse_prefix,
    parse_range,
)
from viewer.timeline import segment_timeline

bp = Blueprint("api", __name__, url_prefix="/api")


def _tz() -> Any:
    return current_app.config["SETTINGS"].business.tz


def not_aggregated(day: date, latest: date | None) -> str:
    tail = f"the latest aggregated date is {latest.isoformat()}" if latest else "nothing is aggregated yet"
    return f"{day.isoformat()} has not been aggregated yet ({tail})"


def check_segment(segment: str) -> str | None:
    return segment if segment in SEGMENTS else None


def unknown_segment(segment: str) -> Any:
    return error_response(404, f"unknown segment {segment!r}; the segments are {', '.join(SEGMENTS)}")


# Which "latest date" a single-date route falls back to: the daily summary's or the sizes'.
_LATEST_SUMMARY: Callable[[queries.LastAggregated], date | None] = lambda last: last.date  # noqa: E731
_LATEST_SIZES: Callable[[queries.LastAggregated], date | None] = lambda last: last.segments_as_of  # noqa: E731


def _one_date(store: Any, latest_of: Callable[[queries.LastAggregated], date | None], nothing_yet: str) -> Any:
    """The date a request asks about: ``date``, or the latest one when it gives neither
    ``date`` nor a range; None for a range; a 404 response when there is no latest yet."""
    check_exclusive(request.args, "date", ("from", "to"))
    day = parse_date(request.args, "date")
    if day is None and not (request.args.get("from") or request.args.get("to")):
        day = latest_of(queries.last_aggregated(store, _tz()))
        if day is None:
            return error_response(404, nothing_yet)
    return day


def _not_aggregated_response(store: Any, day: date, latest_of: Callable[[queries.LastAggregated], date | None]) -> Any:
    latest = latest_of(queries.last_aggregated(store, _tz()))
    return error_response(404, not_aggregated(day, latest), date=day.isoformat())


@bp.get("/openapi.json")
def openapi() -> Any:
    return openapi_document(auth=bool(current_app.config["SETTINGS"].viewer.user))


@bp.get("/status")
def status() -> Any:
    last = queries.last_aggregated(get_store(), _tz())
    run = None
    if last.run is not None:
        run = {k: queries.iso(v) if isinstance(v, date) else v for k, v in last.run.items()}
    return {
        "latest_summary_date": queries.iso(last.date),
        "aggregated_at": queries.iso(last.aggregated_at),
        "segments_as_of": queries.iso(last.segments_as_of),
        "last_run": run,
    }


@bp.get("/daily_order_summaries")
def daily_order_summaries() -> Any:
    store = get_store()
    day = _one_date(store, _LATEST_SUMMARY, "nothing has been aggregated yet")
    if not isinstance(day, date | None):  # the 404 answer
        return day
    if day is not None:
        summary = queries.summary_of(store, day)
        if summary is None:
            return _not_aggregated_response(store, day, _LATEST_SUMMARY)
        # Orders that arrived after the date's last run: not in these numbers until the next run.
        return {
            **summary.to_json(),
            "late_orders": queries.late_orders_of(store, day).count,
            "changes": {name: c.to_json() for name, c in changes.changes_of_date(store, summary).items()},
        }
    first, last = parse_range(request.args, None)  # type: ignore[misc]
    trend = trends.range_trend(store, (first, last), parse_date(request.args, "compare_from"))
    have = {d.date for d in trend.days}
    body = {
        "from": first.isoformat(),
        "to": last.isoformat(),
        "days": [d.to_json() for d in trend.days],
        "missing": [d.isoformat() for d in date_range(first, last) if d not in have],
        "japanese_share_7d": [
            {"date": d.isoformat(), "japanese_share": None if s is None else round(s, 4)}
            for d, s in trend.moving.items()
        ],
    }
    if trend.comparison is not None:
        body["compare"] = trend.comparison.to_json()
    return body


def _csv_range(latest_of: Callable[[queries.LastAggregated], date | None]) -> tuple[date, date] | Any:
    """`from`/`to` of a range export; by default the 30 days up to the latest aggregated
    date (a 404 answer when nothing is aggregated yet)."""
    given = request.args.get("from") or request.args.get("to")
    # The latest date is only needed for the default range (it costs a few reads when not cached).
    latest = None if given else latest_of(queries.last_aggregated(get_store(), _tz()))
    span = parse_range(request.args, latest)
    return span if span is not None else error_response(404, "nothing has been aggregated yet")


def _range_csv(
    latest_of: Callable[[queries.LastAggregated], date | None], name: str,
    rows_csv: Callable[[Store, date, date], str],
) -> Any:
    """A range export (``name``_FIRST_LAST.csv), or the error of its range. Whole, not
    streamed: a range is at most MAX_RANGE_DAYS rows a segment, so the answer is small
    enough to be kept between runs like any other (response_cache)."""
    span = _csv_range(latest_of)
    if not isinstance(span, tuple):
        return span
    first, last = span
    response = Response(rows_csv(get_store(), first, last), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{name}_{first}_{last}.csv"'
    return response


@bp.get("/daily_order_summaries.csv")
def daily_order_summaries_csv() -> Any:
    return _range_csv(_LATEST_SUMMARY, "daily_order_summaries",
                      lambda store, first, last: summaries_csv(queries.summaries_between(store, first, last)))


@bp.get("/segment_sizes.csv")
def segment_sizes_csv() -> Any:
    return _range_csv(_LATEST_SIZES, "segment_sizes",
                      lambda store, first, last: sizes_csv(queries.sizes_between(store, first, last)))


@bp.get("/hourly_orders")
def hourly_orders() -> Any:
    """Orders by weekday and business hour over a range (default: the 30 days up to the
    latest aggregated date), each cell with its Japanese and Western counts."""
    store = get_store()
    given = request.args.get("from") or request.args.get("to")
    latest = None if given else _LATEST_SUMMARY(queries.last_aggregated(store, _tz()))
    span = parse_range(request.args, latest, MAX_HOURLY_RANGE_DAYS)
    if span is None:
        return error_response(404, "nothing has been aggregated yet")
    first, last = span
    grid = heatmap.weekday_hours(queries.hourly_between(store, first, last))
    return hourly_json(first, last, grid)


def hourly_json(first: date, last: date, grid: heatmap.WeekdayHours) -> dict[str, Any]:
    return {
        "from": first.isoformat(),
        "to": last.isoformat(),
        "timezone": current_app.config["SETTINGS"].business.timezone,
        "dates": grid.dates,
        "weekdays": [{"weekday": w, "name": heatmap.WEEKDAY_NAMES[w], "dates": grid.dates_by_weekday[w]}
                     for w in heatmap.WEEKDAYS],
        "cells": [c.to_json() for c in grid.cells],
    }


@bp.get("/rejected_events")
def rejected_events() -> Any:
    """A date's rejected count and a few of its records, or the counts of each date of a
    range (default: the 30 days up to the latest aggregated date, or up to today)."""
    check_exclusive(request.args, "date", ("from", "to"))
    store = get_store()
    day = parse_date(request.args, "date")
    if day is not None:
        found = queries.rejected_of(store, day, queries.REJECTED_SAMPLES)
        return {"date": day.isoformat(), "rejected": found.count, "samples": [s.to_json() for s in found.samples]}
    latest = queries.last_aggregated(store, _tz()).date
    first, last = parse_range(request.args, latest or datetime.now(_tz()).date())  # type: ignore[misc]
    counts = queries.rejected_between(store, first, last)
    return {
        "from": first.isoformat(),
        "to": last.isoformat(),
        "days": [{"date": d.isoformat(), "rejected": n} for d, n in sorted(counts.items())],
        "total": sum(counts.values()),
    }


@bp.get("/segment_sizes")
def segment_sizes() -> Any:
    store = get_store()
    day = _one_date(store, _LATEST_SIZES, "no segment sizes yet: nothing has been aggregated")
    if not isinstance(day, date | None):  # the 404 answer
        return day
    if day is not None:
        sizes = queries.sizes_of(store, day)
        if not sizes:
            return _not_aggregated_response(store, day, _LATEST_SIZES)
        return {"as_of": day.isoformat(), "segments": {s: v.to_json() for s, v in sizes.items()}}
    first, last = parse_range(request.args, None)  # type: ignore[misc]
    by_date = queries.sizes_between(store, first, last)
    return {
        "from": first.isoformat(),
        "to": last.isoformat(),
        "days": [
            {"as_of": d.isoformat(), "segments": {s: v.to_json() for s, v in sizes.items()}}
            for d, sizes in by_date.items()
        ],
    }


@bp.get("/user_segments")
def user_segments() -> Any:
    per_page = parse_int(request.args, "per_page", DEFAULT_PER_PAGE, 1, MAX_PER_PAGE)
    store = get_store()
    as_of = queries.last_aggregated(store, _tz()).segments_as_of
    sizes = queries.sizes_of(store, as_of) if as_of else {}
    pages = queries.first_pages(store, SEGMENTS, per_page)
    body: dict[str, Any] = {"as_of": queries.iso(as_of), "segments": {}}
    if as_of is None:
        body["message"] = "no segment sizes yet: the aggregate job has not run"
    for segment in SEGMENTS:
        page, size = pages[segment], sizes.get(segment)
        body["segments"][segment] = {
            "label": SEGMENT_LABELS[segment],
            "count": size.users if size else 0,
            "entered": size.entered if size else 0,
            "exited": size.exited if size else 0,
            "user_ids": [m.user_id for m in page.members],
            "next_after": page.next_after,
        }
    return body


@bp.get("/user_segments/<segment>")
def segment_members(segment: str) -> Any:
    if segment.endswith(".csv"):
        return segment_csv(segment[: -len(".csv")])
    if check_segment(segment) is None:
        return unknown_segment(segment)
    args = page_args(request.args)
    wanted = audience.Audience(**audience_args(request.args))
    store = get_store()
    as_of = queries.last_aggregated(store, _tz()).segments_as_of
    size = queries.sizes_of(store, as_of).get(segment) if as_of else None
    body: dict[str, Any] = {
        "segment": segment,
        "label": SEGMENT_LABELS[segment],
        "as_of": queries.iso(as_of),
        "count": size.users if size else 0,
        "page": args["page"],
        "per_page": args["per_page"],
        "prefix": args["prefix"],
        "after": args["after"],
    }
    if not wanted.filtered:
        result = queries.members_page(store, segment, **args)
        return {
            **body,
            "user_ids": [m.user_id for m in result.members],
            "users": [m.to_json() for m in result.members],
            "has_more": result.has_more,
            "next_after": result.next_after,
        }
    found = audience.page(store, segment, wanted, as_of, **args)
    matching = audience.count(store, segment, wanted, as_of, args["prefix"])
    return {
        **body,
        "user_ids": [m.user_id for m in found.members],
        "users": [m.to_json() for m in found.members],
        "has_more": found.has_more,
        "next_after": found.next_after,
        "filters": {"min_orders": wanted.min_orders, "active_within_days": wanted.active_within_days,
                    "active_since": queries.iso(wanted.active_since(as_of)), "sort": wanted.sort},
        "matching": matching,
    }


def segment_csv(segment: str) -> Any:
    if check_segment(segment) is None:
        return unknown_segment(segment)
    prefix = parse_prefix(request.args)
    wanted = audience.Audience(**audience_args(request.args))
    store = get_store()
    as_of = queries.last_aggregated(store, _tz()).segments_as_of
    filename = f"user_segment_{segment}_{as_of.isoformat() if as_of else 'current'}.csv"
    # A generator over the merged bucket pages: the whole segment is never in memory
    # (sorted by orders: band after band, at most audience.BAND_ROWS members at a time).
    members = audience.export(store, segment, wanted, as_of, prefix) if wanted.filtered else (
        queries.iter_members(store, segment, prefix))
    body = csv_rows(members)
    response = Response(body, mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@bp.get("/users")
def users_by_prefix() -> Any:
    prefix = parse_prefix(request.args)
    if prefix is None:
        raise BadParameter("prefix", "is required: the start of the user ids to find")
    limit = parse_int(request.args, "limit", DEFAULT_USER_MATCHES, 1, MAX_USER_MATCHES)
    found, has_more = queries.users_by_prefix(get_store(), prefix, limit)
    return {
        "prefix": prefix,
        "limit": limit,
        "users": [{**u.to_json(), "segment_label": SEGMENT_LABELS[u.segment]} for u in found],
        "has_more": has_more,
    }


@bp.get("/users/<user_id:user_id>")
def user(user_id: str) -> Any:
    check_user_id(user_id)
    summary = queries.user_summary(get_store(), user_id)
    if summary is None:
        return error_response(404, f"unknown user {user_id!r}: no aggregated orders", user_id=user_id)
    return user_json(summary)


def user_json(u: queries.UserSummary) -> dict[str, Any]:
    return {
        "user_id": u.user_id,
        "japanese": u.japanese,
        "western": u.western,
        "total": u.japanese + u.western,
        "preference": u.preference,
        "preference_label": SEGMENT_LABELS.get(u.preference, u.preference),
        "first_order_date": queries.iso(u.first_order_date),
        "last_order_date": queries.iso(u.last_order_date),
        "updated_at": queries.iso(u.updated_at),
        "history": [
            {"date": d.date.isoformat(), "japanese": d.japanese, "western": d.western} for d in u.history
        ],
        "segment_timeline": [p.to_json() for p in segment_timeline(u.history)],
    }
