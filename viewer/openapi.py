"""The OpenAPI 3 description of the viewer's JSON API, built from the same limits the
parameters are checked with (viewer/params.py), served at /api/openapi.json."""

from __future__ import annotations

from typing import Any

from orderlog.business_day import HOURS_OF_DAY
from orderlog.events import USER_ID_MAX_LENGTH
from orderlog.menu import SEGMENT_LABELS, SEGMENTS
from orderlog.openapi import RETRY_AFTER, json_response, ref
from viewer.params import (
    DEFAULT_PER_PAGE,
    DEFAULT_RANGE_DAYS,
    DEFAULT_USER_MATCHES,
    MAX_ACTIVE_DAYS,
    MAX_HOURLY_RANGE_DAYS,
    MAX_MIN_ORDERS,
    MAX_PAGE,
    MAX_PAGE_OFFSET,
    MAX_PER_PAGE,
    MAX_RANGE_DAYS,
    MAX_USER_MATCHES,
    SORTS,
)
from viewer.queries import REJECTED_SAMPLES
from viewer.status_queries import REJECTED_SAMPLES as STATUS_SAMPLES
from viewer.status_queries import RUNS_SHOWN, STATUS_DAYS, STREAM_QUERIES, STREAM_STATES


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


_DATE = {"type": "string", "format": "date"}
_INSTANT = {"type": "string", "format": "date-time", "description": "UTC, ISO-8601 with Z"}
# A run of the aggregate job's ledger, as the status answers show it.
_RUN_FIELDS: dict[str, Any] = {
    "order_date": _nullable(_DATE),
    "run_id": {"type": "string"},
    "status": _nullable({"type": "string"}),
    "orders_read": _nullable({"type": "integer"}),
    "users_touched": _nullable({"type": "integer"}),
    "started_at": _nullable(_INSTANT),
    "finished_at": _nullable(_INSTANT),
    "duration_ms": _nullable({"type": "integer"}),
    "error": _nullable({"type": "string"}),
}
_COUNT = {"type": "integer", "minimum": 0}


def _object_with_optional(properties: dict[str, Any], optional: dict[str, Any]) -> dict[str, Any]:
    return {**_object(properties), "properties": {**properties, **optional}}


def _object(properties: dict[str, Any], description: str = "") -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "required": list(properties), "properties": properties}
    if description:
        schema["description"] = description
    return schema


def _schemas() -> dict[str, Any]:
    size = _object({"users": _COUNT, "entered": _COUNT, "exited": _COUNT})
    by_segment = _object({s: ref("SegmentSize") for s in SEGMENTS})
    member = _object({"user_id": {"type": "string"}, "japanese": _COUNT, "western": _COUNT,
                      "last_order_date": _nullable({**_DATE, "description": "null: not stored yet for this member"})})
    return {
        "DaySummary": _object(
            {
                "date": _DATE,
                "japanese": _COUNT,
                "western": _COUNT,
                "total": _COUNT,
                "users": _nullable({**_COUNT, "description": "users who ordered that day"}),
                "japanese_share": _nullable({"type": "number", "minimum": 0, "maximum": 1}),
                "aggregated_at": _nullable(_INSTANT),
            },
            "one aggregated date (the seed's shape, plus users, share and when it was aggregated)",
        ),
        "CountChange": _object(
            {"change": {"type": "integer"},
             "relative": _nullable({"type": "number", "description": "change / the reference day's count; "
                                    "null when that count is 0"})}
        ),
        "DayChange": {
            "type": "object",
            "required": ["date", "aggregated"],
            "description": "the date's numbers against a reference day; only date and aggregated (false) when "
            "that day is not aggregated",
            "properties": {
                "date": _nullable({**_DATE, "description": "the reference day (null before the calendar's start)"}),
                "aggregated": {"type": "boolean"},
                "japanese": ref("CountChange"),
                "western": ref("CountChange"),
                "total": ref("CountChange"),
                "japanese_share": _nullable({"type": "number", "minimum": -1, "maximum": 1,
                                             "description": "the difference of the shares (fractions)"}),
            },
        },
        "DaySummaryOfDate": {
            "allOf": [
                ref("DaySummary"),
                _object({
                    "late_orders": {**_COUNT, "description": "orders that arrived after the date's last run"},
                    "changes": _object({"previous_day": ref("DayChange"), "week_before": ref("DayChange")},
                                       "against the previous day and the same weekday a week earlier"),
                }),
            ]
        },
        "DayRange": _object_with_optional(
            {
                "from": _DATE,
                "to": _DATE,
                "days": {"type": "array", "items": ref("DaySummary"), "description": "oldest first"},
                "missing": {"type": "array", "items": _DATE, "description": "dates of the range not aggregated"},
                "japanese_share_7d": {
                    "type": "array",
                    "description": "for each aggregated date of the range: the Japanese share of the orders of the "
                    "7 days up to it (null when they have none)",
                    "items": _object({"date": _DATE,
                                      "japanese_share": _nullable({"type": "number", "minimum": 0, "maximum": 1})}),
                },
            },
            {"compare": ref("ComparedPeriod")},  # only with compare_from
        ),
        "ComparedPeriod": _object(
            {
                "from": _DATE,
                "to": _DATE,
                "days": {"type": "array", "items": ref("DaySummary"), "description": "oldest first"},
            },
            "the period of compare_from, as long as the range (day i of it goes with day i of the range)",
        ),
        "RejectedSample": _object(
            {
                "topic": {"type": "string"},
                "partition": {"type": "integer"},
                "offset": {"type": "integer"},
                "kafka_timestamp": _nullable(_INSTANT),
                "reason": {"type": "string", "description": "why the streaming job rejected it (escaped)"},
                "length": _nullable({**_COUNT, "description": "the payload's full length in bytes; null: none"}),
                "preview": {"type": "string", "description": "the stored payload as text, non-printable characters "
                            "and bytes that are not UTF-8 escaped (\\x07, \\xff), cut to 200 characters"},
                "replayed": {"type": "boolean", "description": "sent back by `python -m tools.rejected replay`"},
                "replayed_at": _nullable(_INSTANT),
            },
            "one rejected record, its Kafka coordinates first",
        ),
        "RejectedOfDate": _object(
            {
                "date": _DATE,
                "rejected": {**_COUNT, "description": "records of the date the streaming job rejected"},
                "samples": {"type": "array", "items": ref("RejectedSample"), "maxItems": REJECTED_SAMPLES,
                            "description": "a few of them (`python -m tools.rejected list --date D` shows all)"},
            }
        ),
        "RejectedRange": _object(
            {
                "from": _DATE,
                "to": _DATE,
                "days": {"type": "array", "description": "every date of the range, oldest first",
                         "items": _object({"date": _DATE, "rejected": _COUNT})},
                "total": _COUNT,
            }
        ),
        "WeekdayHours": _object(
            {
                "from": _DATE,
                "to": _DATE,
                "timezone": {"type": "string", "description": "the business time zone the hours are in"},
                "dates": {**_COUNT, "description": "aggregated dates of the range (the cells sum them)"},
                "weekdays": {
                    "type": "array", "minItems": 7, "maxItems": 7, "description": "Monday (1) to Sunday (7)",
                    "items": _object({"weekday": {"type": "integer", "minimum": 1, "maximum": 7},
                                      "name": {"type": "string"},
                                      "dates": {**_COUNT, "description": "aggregated dates of that weekday"}}),
                },
                "cells": {
                    "type": "array", "minItems": 7 * HOURS_OF_DAY, "maxItems": 7 * HOURS_OF_DAY,
                    "description": "weekday by weekday, hour by hour: each (weekday, hour) summed over the "
                    "range's dates; on a daylight-saving change day the skipped clock hour has no order and the "
                    "repeated one holds both",
                    "items": _object({
                        "weekday": {"type": "integer", "minimum": 1, "maximum": 7},
                        "hour": {"type": "integer", "minimum": 0, "maximum": HOURS_OF_DAY - 1},
                        "japanese": _COUNT,
                        "western": _COUNT,
                        "total": _COUNT,
                        "japanese_share": _nullable({"type": "number", "minimum": 0, "maximum": 1,
                                                     "description": "null: no order in the cell"}),
                    }),
                },
            },
            "orders by weekday and hour of the business clock",
        ),
        "SegmentSize": size,
        "SizesOfDate": _object({"as_of": _DATE, "segments": by_segment}),
        "SizesRange": _object(
            {"from": _DATE, "to": _DATE, "days": {"type": "array", "items": ref("SizesOfDate")}}
        ),
        "SegmentsOverview": {
            "type": "object",
            "required": ["as_of", "segments"],
            "properties": {
                "as_of": _nullable(_DATE),
                "segments": _object({s: ref("SegmentFirstPage") for s in SEGMENTS}),
                "message": {"type": "string", "description": "set when nothing is aggregated yet"},
            },
        },
        "SegmentFirstPage": _object(
            {
                "label": {"type": "string", "enum": [SEGMENT_LABELS[s] for s in SEGMENTS]},
                "count": _COUNT,
                "entered": _COUNT,
                "exited": _COUNT,
                "user_ids": {"type": "array", "items": {"type": "string"}},
                "next_after": _nullable({"type": "string", "description": "the cursor of the next page"}),
            }
        ),
        "SegmentPage": _object_with_optional(
            {
                "segment": {"type": "string", "enum": list(SEGMENTS)},
                "label": {"type": "string"},
                "as_of": _nullable(_DATE),
                "count": _COUNT,
                "page": {"type": "integer", "minimum": 1},
                "per_page": {"type": "integer", "minimum": 1, "maximum": MAX_PER_PAGE},
                "prefix": _nullable({"type": "string"}),
                "after": _nullable({"type": "string"}),
                "user_ids": {"type": "array", "items": {"type": "string"}},
                "users": {"type": "array", "items": ref("Member")},
                "has_more": {"type": "boolean"},
                "next_after": _nullable({"type": "string"}),
            },
            {  # only with an audience filter (min_orders, active_within_days, sort=orders)
                "filters": {"type": "object", "properties": {
                    "min_orders": _nullable({"type": "integer"}), "active_within_days": _nullable({"type": "integer"}),
                    "active_since": _nullable(_DATE), "sort": {"type": "string", "enum": list(SORTS)}}},
                "matching": {**_COUNT, "description": "members of the list that match the filters (exact)"},
            },
        ),
        "Member": member,
        "User": _object(
            {
                "user_id": {"type": "string"},
                "japanese": _COUNT,
                "western": _COUNT,
                "total": _COUNT,
                "preference": {"type": "string", "enum": list(SEGMENTS)},
                "preference_label": {"type": "string"},
                "first_order_date": _nullable(_DATE),
                "last_order_date": _nullable(_DATE),
                "updated_at": _nullable(_INSTANT),
                "history": {
                    "type": "array",
                    "description": "latest first",
                    "items": _object({"date": _DATE, "japanese": _COUNT, "western": _COUNT}),
                },
                "segment_timeline": {
                    "type": "array",
                    "description": "the user's segments over time, latest first: each from the order date that "
                    "put the user in it to the day before the next change (to: null, the current one)",
                    "items": _object({
                        "segment": {"type": "string", "enum": list(SEGMENTS)},
                        "label": {"type": "string"},
                        "from": _DATE,
                        "to": _nullable(_DATE),
                    }),
                },
            }
        ),
        "UsersFound": _object(
            {
                "prefix": {"type": "string"},
                "limit": {"type": "integer", "minimum": 1, "maximum": MAX_USER_MATCHES},
                "users": {
                    "type": "array", "maxItems": MAX_USER_MATCHES, "description": "in user_id order",
                    "items": _object({"user_id": {"type": "string"},
                                      "segment": {"type": "string", "enum": list(SEGMENTS)},
                                      "segment_label": {"type": "string"},
                                      "japanese": _COUNT, "western": _COUNT}),
                },
                "has_more": {"type": "boolean", "description": "more users match: narrow the prefix"},
            }
        ),
        "Alive": _object({"status": {"enum": ["ok"]}}),
        "Ready": {
            "type": "object", "required": ["status", "cassandra", "keyspace"],
            "properties": {
                "status": {"enum": ["ok", "unavailable"]},
                "cassandra": {"enum": ["reachable", "unreachable"]},
                "keyspace": {"type": "string"},
                "error": {"type": "string", "description": "why not, one line (only when unavailable)"},
            },
        },
        "Status": _object(
            {
                "latest_summary_date": _nullable(_DATE),
                "aggregated_at": _nullable(_INSTANT),
                "segments_as_of": _nullable(_DATE),
                "last_run": _nullable(
                    {"type": "object", "description": "the newest run of the aggregate job's ledger",
                     "properties": _RUN_FIELDS}
                ),
            }
        ),
        "StatusOverview": _object(
            {
                "from": _DATE,
                "to": _DATE,
                "generated_at": _INSTANT,
                "stream": _object(
                    {
                        "state": {"type": "string", "enum": list(STREAM_STATES), "description": (
                            "of the query the job last heard from: no_progress (never recorded), silent (no word for "
                            "minutes: is the job running?), behind (records not processed yet), caught_up")},
                        "queries": {"type": "array", "items": ref("StreamQueryProgress"), "maxItems": STREAM_QUERIES,
                                    "description": "the topic's streaming queries, the last heard from first"},
                    }
                ),
                "days": {"type": "array", "items": ref("DayStatus"), "maxItems": STATUS_DAYS,
                         "description": f"the {STATUS_DAYS} days up to `to`, newest first"},
                "waiting": {"type": "array", "items": ref("WaitingDate"),
                            "description": "dates the next nightly run redoes because orders arrived after their "
                            "last run, oldest first"},
                "runs": {"type": "array", "items": ref("AggregateRun"), "maxItems": RUNS_SHOWN,
                         "description": "the aggregate runs of the window's dates, newest first"},
            },
            "what the status page shows",
        ),
        "StreamQueryProgress": _object(
            {
                "query_id": {"type": "string"},
                "run_id": _nullable({"type": "string"}),
                "batch_id": _nullable({"type": "integer"}),
                "batch_at": _nullable(_INSTANT),
                "batch_duration_ms": _nullable({"type": "integer"}),
                "input_rows": _nullable({"type": "integer"}),
                "input_rows_per_second": _nullable({"type": "number"}),
                "processed_rows_per_second": _nullable({"type": "number"}),
                "offsets_behind": {"type": "object", "additionalProperties": {"type": "integer"},
                                   "description": "Kafka partition -> records not processed after the last batch"},
                "offsets_behind_total": {"type": "integer"},
                "rows_valid": _nullable({"type": "integer"}),
                "rows_rejected": _nullable({"type": "integer"}),
                "idle_at": _nullable(_INSTANT),
                "last_heard_at": _nullable(_INSTANT),
                "seconds_since_last_heard": _nullable({"type": "number", "minimum": 0}),
            },
            "the last batch of one streaming query, as the job persisted it (stream_progress)",
        ),
        "DayStatus": _object(
            {
                "date": _DATE,
                "ingested": {**_COUNT, "description": "records the streaming job wrote for the date: an upper bound "
                             "of its orders (a client's retry or a replay counts again)"},
                "aggregated": _nullable({**_COUNT, "description": "the daily summary's total; null: not aggregated"}),
                "late_orders": {**_COUNT, "description": "records that arrived after the date's last run"},
                "rejected": _COUNT,
                "rejected_reasons": {"type": "array", "items": {"type": "string"}, "maxItems": STATUS_SAMPLES,
                                     "description": "a few reasons (escaped), for the newest dates with rejections"},
            }
        ),
        "WaitingDate": _object({"date": _DATE, "late_orders": _COUNT, "why": {"type": "string"}}),
        "AggregateRun": _object({**_RUN_FIELDS, "trigger": _nullable({"type": "string"})}),
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {"type": "string"},
                "parameter": {"type": "string", "description": "400: the parameter that is wrong"},
                "date": {**_DATE, "description": "404: the date that is not aggregated"},
                "user_id": {"type": "string", "description": "404: the unknown user"},
            },
        },
    }


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _path(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema, "description": description}


_RANGE = (
    f"`from` and `to` (YYYY-MM-DD, both included); one alone means {DEFAULT_RANGE_DAYS} days from or up to it; "
    f"at most {MAX_RANGE_DAYS} days"
)
_DATE_PARAMETERS = [
    _query("date", _DATE, "one date (YYYY-MM-DD); default: the latest aggregated; not with from/to"),
    _query("from", _DATE, _RANGE),
    _query("to", _DATE, _RANGE),
]
_PAGE_PARAMETERS = [
    _query("per_page", {"type": "integer", "minimum": 1, "maximum": MAX_PER_PAGE, "default": DEFAULT_PER_PAGE},
           "users a page"),
    _query("page", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 1},
           f"page number, counted from 1, at most {MAX_PAGE_OFFSET} users deep; not with after"),
    _query("prefix", {"type": "string", "maxLength": USER_ID_MAX_LENGTH}, "only user ids that start with it"),
    _query("after", {"type": "string"}, "the opaque cursor of a previous page's next_after; not with page"),
]
_PREFIX = _PAGE_PARAMETERS[2]
_AUDIENCE_PARAMETERS = [
    _query("min_orders", {"type": "integer", "minimum": 1, "maximum": MAX_MIN_ORDERS},
           "only members with at least this many orders (Japanese + Western)"),
    _query("active_within_days", {"type": "integer", "minimum": 1, "maximum": MAX_ACTIVE_DAYS},
           "only members whose last order is within this many days up to the segments' date (both included)"),
    _query("sort", {"type": "string", "enum": list(SORTS), "default": "user_id"},
           "orders: most orders first (ties by user_id), paged by number (the CSV has the whole ranking)"),
]
_SEGMENT = _path("segment", {"type": "string", "enum": list(SEGMENTS)}, "the segment")
_USER_ID = _path(
    "user_id", {"type": "string", "minLength": 1, "maxLength": USER_ID_MAX_LENGTH},
    "the user id (percent-encoded; it may contain slashes)",
)


# Answers kept between aggregate runs (viewer/response_cache.py) carry an ETag and answer a
# conditional request with 304.
_IF_NONE_MATCH = {
    "name": "If-None-Match", "in": "header", "required": False, "schema": {"type": "string"},
    "description": "the ETag of an answer you keep: 304 while it is still the current one",
}
_ETAG = {"ETag": {"description": "names the aggregate run and the request; changes when a new run finishes",
                  "schema": {"type": "string"}}}
_NOT_MODIFIED = {"description": "the answer whose ETag you sent is still current (no body)", "headers": _ETAG}


def _get(summary: str, ok: dict[str, Any], parameters: list[dict[str, Any]], errors: dict[str, str], *,
         conditional: bool = True) -> dict:
    responses = {"200": {**ok, "headers": {**ok.get("headers", {}), **_ETAG}} if conditional else ok}
    if conditional:
        responses["304"] = _NOT_MODIFIED
        parameters = [*parameters, _IF_NONE_MATCH]
    responses.update({status: json_response(ref("Error"), why) for status, why in errors.items()})
    responses["503"] = json_response(ref("Error"), "Cassandra is unreachable or timed out", RETRY_AFTER)
    return {"summary": summary, "responses": responses, "parameters": parameters}


_CSV_OK = {
    "description": "UTF-8 with a BOM, CRLF lines; cells that a spreadsheet would run as a formula start with an "
    "apostrophe",
    "content": {"text/csv": {"schema": {"type": "string"}}},
}
_BAD = "a bad parameter: the error names it (`parameter`) and says why"


def openapi_document(*, auth: bool) -> dict[str, Any]:
    """The document served at /api/openapi.json."""
    paths: dict[str, Any] = {
        "/api/daily_order_summaries": {
            "get": _get(
                "Japanese and Western orders of one date, or of each date of a range",
                json_response({"oneOf": [ref("DaySummaryOfDate"), ref("DayRange")]}, "one date, or the range"),
                [*_DATE_PARAMETERS,
                 _query("compare_from", _DATE, "with a range: the start of a second period as long as the range, "
                        "returned in `compare` (this month against last month: from/to the month, compare_from the "
                        "first of the month before)")],
                {"400": _BAD, "404": "the date is not aggregated yet (or nothing is)"},
            )
        },
        "/api/daily_order_summaries.csv": {
            "get": _get(
                "the daily summaries of a range as CSV (date,japanese,western,total,japanese_share,users), "
                "aggregated dates only, oldest first; default: the 30 days up to the latest aggregated date",
                _CSV_OK,
                _DATE_PARAMETERS[1:],
                {"400": _BAD, "404": "nothing is aggregated yet (and no range was given)"},
            )
        },
        "/api/segment_sizes.csv": {
            "get": _get(
                "segment sizes of a range as CSV (as_of,segment,users,entered,exited), one row per date and "
                "segment, oldest first; default: the 30 days up to the latest date with sizes",
                _CSV_OK,
                _DATE_PARAMETERS[1:],
                {"400": _BAD, "404": "nothing is aggregated yet (and no range was given)"},
            )
        },
        "/api/hourly_orders": {
            "get": _get(
                "orders by weekday x business hour over a range: each cell with its Japanese and Western counts "
                "and share; default: the 30 days up to the latest aggregated date",
                json_response(ref("WeekdayHours"), "the 7 x 24 cells"),
                [
                    _query("from", _DATE, _RANGE.replace(f"at most {MAX_RANGE_DAYS}", f"at most "
                                                         f"{MAX_HOURLY_RANGE_DAYS}")),
                    _query("to", _DATE, f"see from; at most {MAX_HOURLY_RANGE_DAYS} days"),
                ],
                {"400": _BAD, "404": "nothing is aggregated yet (and no range was given)"},
            )
        },
        "/api/rejected_events": {
            "get": _get(
                "records the streaming job rejected: a date's count and a few samples, or the count of each date "
                "of a range",
                json_response({"oneOf": [ref("RejectedOfDate"), ref("RejectedRange")]}, "one date, or the range"),
                [
                    _query("date", _DATE, "one date (YYYY-MM-DD); not with from/to"),
                    _query("from", _DATE, _RANGE + "; default: the 30 days up to the latest aggregated date "
                           "(or up to today)"),
                    _query("to", _DATE, _RANGE),
                ],
                {"400": _BAD},
            )
        },
        "/api/segment_sizes": {
            "get": _get(
                "segment sizes (users, entered, exited) of one date, or of each date of a range",
                json_response({"oneOf": [ref("SizesOfDate"), ref("SizesRange")]}, "one date, or the range"),
                _DATE_PARAMETERS,
                {"400": _BAD, "404": "the date is not aggregated yet (or nothing is)"},
            )
        },
        "/api/user_segments": {
            "get": _get(
                "every segment: its size and the first page of its members",
                json_response(ref("SegmentsOverview"), "the three segments"),
                [_PAGE_PARAMETERS[0]],
                {"400": _BAD},
            )
        },
        "/api/user_segments/{segment}": {
            "get": _get(
                "a page of a segment's members, in user_id order",
                json_response(ref("SegmentPage"), "the page"),
                [_SEGMENT, *_PAGE_PARAMETERS, *_AUDIENCE_PARAMETERS],
                {"400": _BAD, "404": "no such segment"},
            )
        },
        "/api/user_segments/{segment}.csv": {
            "get": _get(
                "every member of a segment as CSV (user_id,japanese,western), streamed",
                _CSV_OK,
                [_SEGMENT, _PREFIX, *_AUDIENCE_PARAMETERS],
                {"400": _BAD, "404": "no such segment"},
                conditional=False,  # streamed, any size: never kept
            )
        },
        "/api/users": {
            "get": _get(
                "users whose id starts with a prefix, in user_id order, with their segment and counts",
                json_response(ref("UsersFound"), "the first matches"),
                [
                    {**_query("prefix", {"type": "string", "minLength": 1, "maxLength": USER_ID_MAX_LENGTH},
                              "the start of the user ids"), "required": True},
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_USER_MATCHES,
                                     "default": DEFAULT_USER_MATCHES}, "users to list at most"),
                ],
                {"400": _BAD},
            )
        },
        "/api/users/{user_id}": {
            "get": _get(
                "one user's cumulative counts, preference and daily history",
                json_response(ref("User"), "the user"),
                [_USER_ID],
                {"400": _BAD, "404": "no aggregated orders for this user"},
            )
        },
        "/api/status": {
            "get": _get("the latest aggregated dates and the newest aggregate run",
                        json_response(ref("Status"), "the status"), [], {})
        },
        "/api/status_overview": {
            "get": _get(
                "the status page's figures: the stream's progress, per day orders ingested against aggregated, "
                "dates waiting for the nightly run, rejected records, recent aggregate runs (live: kept at most "
                "ORDERLOG_VIEWER_CACHE_SECONDS)",
                json_response(ref("StatusOverview"), "the overview"),
                [_query("to", _DATE, f"the window's last date (default: today in the business time zone); the "
                        f"window is the {STATUS_DAYS} days up to it")],
                {"400": _BAD},
            )
        },
        "/healthz": {
            "get": {
                "summary": "liveness: the process answers (asks nothing of Cassandra; never needs credentials)",
                "security": [],
                "responses": {"200": json_response(ref("Alive"), "the process is alive")},
            }
        },
        "/readyz": {
            "get": {
                "summary": "readiness: whether Cassandra answers a query of the keyspace (never needs credentials, "
                "never cached)",
                "security": [],
                "responses": {
                    "200": json_response(ref("Ready"), "Cassandra is reachable"),
                    "503": json_response(ref("Ready"), "Cassandra is unreachable, or the keyspace is missing",
                                         RETRY_AFTER),
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics, summed over the server's workers (never needs credentials, never "
                "cached)",
                "security": [],
                "responses": {"200": {"description": "the Prometheus text format",
                                      "content": {"text/plain": {"schema": {"type": "string"}}}}},
            }
        },
        "/api/openapi.json": {
            "get": {
                "summary": "this document",
                "responses": {"200": {"description": "OpenAPI 3", "content": {"application/json": {}}}},
            }
        },
    }
    document: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {
            "title": "orderlog viewer API",
            "version": "1.0.0",
            "description": "What the nightly aggregate job wrote to Cassandra, read only. Dates are business "
            "dates (YYYY-MM-DD). Every error is JSON with `error`; never a 500 for anything a client sends.",
        },
        "paths": paths,
        "components": {"schemas": _schemas()},
    }
    if auth:
        document["components"]["securitySchemes"] = {"basic": {"type": "http", "scheme": "basic"}}
        document["security"] = [{"basic": []}]
        for item in paths.values():
            if item["get"].get("security") == []:  # the probes stay open
                continue
            item["get"]["responses"]["401"] = json_response(ref("Error"), "missing or wrong credentials")
    return document
