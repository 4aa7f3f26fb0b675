"""The viewer's Prometheus metrics, served at ``/metrics`` (outside basic auth: counts and
dates, no customer data), summed over gunicorn's workers (orderlog/metrics.py).

Requests and their latency are counted as they are answered. What the aggregate job did is
read at scrape time from its run ledger (the same lookup as ``/api/status``, cached until
the next run finishes), so the nightly run is visible without scraping a batch job.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from flask import Flask, Response, current_app, g, request
from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

from orderlog.metrics import LATENCY_BUCKETS, exposition
from viewer import queries
from viewer.db import SchemaOutOfDate, get_store
from viewer.errors import CASSANDRA_ERRORS

REQUESTS = Counter("orderlog_viewer_requests", "HTTP requests answered, by endpoint (its route), method and status",
                   ["endpoint", "method", "status"])
LATENCY = Histogram("orderlog_viewer_request_duration_seconds", "time to answer a request, by endpoint",
                    ["endpoint"], buckets=LATENCY_BUCKETS)


class LedgerCollector:
    """The aggregate job's latest date and last run, from Cassandra, at each scrape."""

    def __init__(self, app: Flask):
        self.app = app

    def collect(self) -> Iterator[Any]:
        up = GaugeMetricFamily("orderlog_viewer_cassandra_up",
                               "1 when this scrape could read the run ledger from Cassandra, else 0")
        tz = self.app.config["SETTINGS"].business.tz
        try:
            last = queries.last_aggregated(get_store(), tz)
        except (*CASSANDRA_ERRORS, SchemaOutOfDate):
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        if last.date is not None:
            age = GaugeMetricFamily(
                "orderlog_aggregate_latest_date_age_days",
                "days from the latest aggregated date to today in the business time zone (1 after a nightly run)")
            age.add_metric([], (datetime.now(tz).date() - last.date).days)
            yield age
        run = last.run
        if run is None:
            return
        info = GaugeMetricFamily("orderlog_aggregate_last_run_info",
                                 "1, labelled with the newest ledger run's status, trigger and date",
                                 labels=["status", "trigger", "order_date"])
        info.add_metric([run["status"] or "", run["trigger"] or "", queries.iso(run["order_date"]) or ""], 1)
        yield info
        failed = GaugeMetricFamily("orderlog_aggregate_last_run_failed",
                                   "1 when the newest ledger run failed or was abandoned, else 0")
        failed.add_metric([], 1 if run["status"] in ("failed", "abandoned") else 0)
        yield failed
        if run["duration_ms"] is not None:
            duration = GaugeMetricFamily("orderlog_aggregate_last_run_duration_seconds",
                                         "how long the newest finished ledger run took")
            duration.add_metric([], run["duration_ms"] / 1000)
            yield duration
        if run["finished_at"] is not None:
            finished = GaugeMetricFamily("orderlog_aggregate_last_run_finished_timestamp_seconds",
                                         "when the newest ledger run finished (Unix time)")
            finished.add_metric([], run["finished_at"].timestamp())
            yield finished


def _started() -> None:
    g.metrics_started = time.perf_counter()


def _answered(response: Response) -> Response:
    rule = request.url_rule.rule if request.url_rule is not None else "unmatched"
    count_answer(rule, request.method, response.status_code, g.get("metrics_started"))
    return response


def count_answer(rule: str, method: str, status: int, started: float | None) -> None:
    """One answered request of a route (its rule), timed from started (perf_counter)."""
    counter_of(rule, method, status)(started)


def counter_of(rule: str, method: str, status: int) -> Callable[[float | None], None]:
    """What counts an answer of this route, method and status, timed from its start (none:
    counted, not timed), with the labels looked up once: viewer.response_cache.ReadyAnswers
    keeps it with an answer it gives again and again."""
    requests, latency = REQUESTS.labels(rule, method, str(status)), LATENCY.labels(rule)

    def count(started: float | None) -> None:
        requests.inc()
        if started is not None:
            latency.observe(time.perf_counter() - started)
    return count


def metrics() -> Response:
    body, content_type = exposition([LedgerCollector(current_app._get_current_object())])  # type: ignore[attr-defined]
    return Response(body, content_type=content_type)


def init_app(app: Flask) -> None:
    """First of the hooks: a request refused by auth or answered from the cache counts too."""
    app.before_request(_started)
    app.after_request(_answered)
    app.add_url_rule("/metrics", "metrics", metrics, methods=["GET"])
