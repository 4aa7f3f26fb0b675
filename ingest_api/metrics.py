"""The ingest API's Prometheus metrics, served at ``/metrics`` (outside the token: no
customer data, only counts), summed over gunicorn's workers (orderlog/metrics.py).

Labels stay bounded: a route is its rule (``/api/log``; ``unmatched`` for any other path),
a reason one of a few classes. Kafka's acknowledgement is measured around
``Producer.send_all``, the one interface both client backends implement.
"""

from __future__ import annotations

import time

from flask import Flask, Response, g, request
from prometheus_client import Counter, Histogram

from orderlog.metrics import LATENCY_BUCKETS, exposition

REQUESTS = Counter("orderlog_ingest_requests", "HTTP requests answered, by route, method and status",
                   ["route", "method", "status"])
LATENCY = Histogram("orderlog_ingest_request_duration_seconds", "time to answer a request, by route", ["route"],
                    buckets=LATENCY_BUCKETS)
EVENTS_ACCEPTED = Counter("orderlog_ingest_events_accepted", "events Kafka acknowledged (answered 202)")
EVENTS_REFUSED = Counter(
    "orderlog_ingest_events_refused",
    "events of refused requests, by reason: invalid (a batch with any invalid event is refused whole), "
    "kafka_unavailable (not acknowledged in time: 503)", ["reason"])
REQUESTS_REFUSED = Counter(
    "orderlog_ingest_requests_refused",
    "requests answered 4xx/5xx, by reason class: invalid_event, malformed, unauthorized, too_large, "
    "unsupported_media_type, not_found, method_not_allowed, kafka_unavailable, internal", ["reason"])
KAFKA_ACK = Histogram("orderlog_ingest_kafka_ack_seconds",
                      "time from handing a request's records to the producer to Kafka acknowledging all of them",
                      buckets=LATENCY_BUCKETS)
KAFKA_FAILURES = Counter("orderlog_ingest_kafka_failures",
                         "requests whose records Kafka did not acknowledge within the ack timeout (503)")

# The reason class of a refusal, by status, unless the route named a finer one.
STATUS_REASONS = {400: "malformed", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
                  413: "too_large", 415: "unsupported_media_type", 500: "internal", 503: "kafka_unavailable"}


def refused_events(reason: str, count: int) -> None:
    """The events of a request refused for ``reason`` (nothing of it was produced)."""
    g.refusal = "invalid_event" if reason == "invalid" else reason
    EVENTS_REFUSED.labels(reason).inc(count)


def _started() -> None:
    g.metrics_started = time.perf_counter()


def _answered(response: Response) -> Response:
    route = request.url_rule.rule if request.url_rule is not None else "unmatched"
    status = response.status_code
    REQUESTS.labels(route, request.method, str(status)).inc()
    started = g.get("metrics_started")
    if started is not None:
        LATENCY.labels(route).observe(time.perf_counter() - started)
    if status >= 400:
        REQUESTS_REFUSED.labels(g.get("refusal") or STATUS_REASONS.get(status, str(status))).inc()
    return response


def metrics() -> Response:
    body, content_type = exposition()
    return Response(body, content_type=content_type)


def init_app(app: Flask) -> None:
    """Before the blueprint's own hooks: a request the token check refuses is timed too."""
    app.before_request(_started)
    app.after_request(_answered)
    app.add_url_rule("/metrics", "metrics", metrics, methods=["GET"])
