"""The operators' status page, /status, and its JSON twin, /api/status_overview: is the
stream keeping up, per day orders ingested against orders aggregated, dates waiting for the
nightly run, rejected records, and the recent aggregate runs (viewer/status_queries.py).

The stream's figures are live: both answers are in the response cache's stream-fed set
(viewer/response_cache.py), kept at most ORDERLOG_VIEWER_CACHE_SECONDS (5 s by default),
and the page reloads itself every PAGE_REFRESH_SECONDS while its auto-refresh box is ticked
(static/status.js: a user can stop it, which a meta refresh would not allow)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, current_app, render_template, request

from viewer import queries, status_queries
from viewer.db import get_store
from viewer.params import parse_date

bp = Blueprint("status", __name__)

PAGE_REFRESH_SECONDS = 30


def _overview() -> status_queries.StatusOverview:
    settings = current_app.config["SETTINGS"]
    now = datetime.now(UTC)
    last = parse_date(request.args, "to") or now.astimezone(settings.business.tz).date()
    return status_queries.status_overview(get_store(), settings.kafka.topic, last, now)


@bp.app_template_filter("ago")
def ago(seconds: float | None) -> str:
    """A duration in the past, as a person reads it: '42 s', '5 min', '3 h', '2 d'."""
    if seconds is None:
        return "—"
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit}"
    return f"{int(seconds)} s"


@bp.get("/status")
def status_page() -> Any:
    overview = _overview()
    return render_template(
        "status.html", o=overview, state=overview.stream_state, refresh_seconds=PAGE_REFRESH_SECONDS,
        silent_after=status_queries.SILENT_AFTER_SECONDS, topic=current_app.config["SETTINGS"].kafka.topic,
    )


@bp.get("/api/status_overview")
def status_overview() -> Any:
    o = _overview()
    return {
        "from": o.first.isoformat(),
        "to": o.last.isoformat(),
        "generated_at": queries.iso(o.now),
        "stream": {"state": o.stream_state, "queries": [q.to_json(o.now) for q in o.stream]},
        "days": [d.to_json() for d in o.days],
        "waiting": [w.to_json() for w in o.waiting],
        "runs": [
            {k: queries.iso(v) if k in ("order_date", "started_at", "finished_at") else v for k, v in run.items()}
            for run in o.runs
        ],
    }
