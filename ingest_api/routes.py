"""The HTTP routes: one event, a batch, liveness and readiness, and the OpenAPI document.

Every request is fully parsed and validated before anything is produced, so an invalid
batch produces nothing; a 202 is sent only after Kafka acknowledged every record. A batch
is read one event at a time (ingest_api/batch.py), so what it costs is bounded by the
batch limit, whatever its body holds.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.exceptions import ClientDisconnected, HTTPException, RequestEntityTooLarge

from ingest_api import fast_batch, metrics
from ingest_api.batch import BatchRefused, Item, json_array_items, loads, ndjson_items, ndjson_lines
from ingest_api.openapi import openapi_document
from ingest_api.producer import KafkaUnavailable, get_producer
from orderlog.config import Settings
from orderlog.events import MAX_EVENT_BYTES, InvalidEvent, OrderEvent, validate_event

bp = Blueprint("ingest", __name__)

JSON = "application/json"
NDJSON = "application/x-ndjson"
# A batch with thousands of bad items still gets a readable answer.
MAX_REPORTED_ERRORS = 1000
RETRY_ADVICE = (
    "nothing was acknowledged, but some events may still reach Kafka: retry later with these order_ids, "
    "which counts each event once"
)


class RequestProblem(Exception):
    """A request that cannot be processed: its status and the JSON body to answer with."""

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None):
        super().__init__(body.get("error", ""))
        self.status = status
        self.body = body
        self.headers = headers or {}


def _problem(status: int, message: str, **extra: Any) -> RequestProblem:
    return RequestProblem(status, {"error": message, **extra})


def json_http_error(error: HTTPException) -> Response:
    """Every HTTP error of the app (404, 405, 413, ...) as JSON, headers kept (Allow)."""
    if isinstance(error, RequestEntityTooLarge):
        message = f"request body is larger than {request.max_content_length} bytes"
    elif isinstance(error, ClientDisconnected):
        # Werkzeug's words ("the browser (or proxy) sent a request...") do not say what.
        message = f"the request body ended before its Content-Length ({request.content_length} bytes)"
    elif error.code == 404:
        message = f"no route {request.path}"
    elif error.code == 405:
        allowed = ", ".join(sorted(m for m in error.valid_methods or [] if m not in ("HEAD", "OPTIONS")))
        message = f"method {request.method} is not allowed on {request.path} (allowed: {allowed})"
    else:
        message = error.description or error.name
    response = error.get_response()
    response.data = json.dumps({"error": message})
    response.content_type = JSON
    return response


@bp.before_request
def _check_token() -> None:
    token = _settings().ingest.api_token
    if not token or not request.path.startswith("/api/"):
        return
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    # compare_digest: the time taken does not tell how much of the token was right.
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise RequestProblem(
            401, {"error": "missing or wrong bearer token (Authorization: Bearer <token>)"},
            {"WWW-Authenticate": 'Bearer realm="ingest"'},
        )


def _read_body(max_bytes: int | None = None) -> bytes:
    if max_bytes is not None:
        request.max_content_length = max_bytes
    return request.get_data(cache=False)


def _require_content_type(*accepted: str) -> str:
    mimetype = request.mimetype
    if mimetype not in accepted:
        raise _problem(
            415, f"Content-Type must be {' or '.join(accepted)} (got {request.content_type or 'none'})"
        )
    charset = request.mimetype_params.get("charset", "utf-8").lower()
    if charset not in ("utf-8", "utf8"):
        raise _problem(415, f"charset must be utf-8 (got {charset})")
    return mimetype


def _parse_json(data: bytes) -> Any:
    try:
        return loads(data)
    except UnicodeDecodeError:
        raise _problem(400, "malformed JSON: the body is not UTF-8") from None
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        raise _problem(400, f"malformed JSON: {exc}") from None


def _validate_each(items: Iterable[Item], now: datetime) -> list[OrderEvent]:
    """Every item validated as it is read, only the valid events kept; if any item is
    invalid, a 400 listing each bad item by index (the first MAX_REPORTED_ERRORS)."""
    events: list[OrderEvent] = []
    errors: list[dict[str, Any]] = []
    error_count = 0
    count = 0
    for index, (value, problem) in enumerate(items):
        count = index + 1
        if problem is not None:
            found = [{"index": index, "field": "", "reason": problem}]
        else:
            try:
                events.append(validate_event(value, now=now))
                continue
            except InvalidEvent as exc:
                found = [{"index": index, **e.as_dict()} for e in exc.errors]
        error_count += len(found)
        errors.extend(found[: MAX_REPORTED_ERRORS - len(errors)])
    if not count:
        raise _problem(400, "the batch is empty")
    if errors:
        metrics.refused_events("invalid", count)
        extra = {"error_count": error_count} if error_count > MAX_REPORTED_ERRORS else {}
        raise _problem(400, "invalid event", errors=errors, **extra)
    return events


def _produce(events: list[OrderEvent]) -> list[str]:
    """Assign ids and receive time, produce, and return the order ids once Kafka has all."""
    received_at = datetime.now(UTC)
    stamped = [event.with_ids(received_at) for event in events]
    records = [(e.user_id.encode("utf-8"), e.to_json_bytes()) for e in stamped]
    return _send(records, [e.order_id or "" for e in stamped])


def _send(records: list[tuple[bytes, bytes]], order_ids: list[str]) -> list[str]:
    """Produce the records; return their order ids once Kafka has acknowledged all."""
    started = time.perf_counter()
    try:
        get_producer().send_all(records)
    except KafkaUnavailable as exc:
        metrics.KAFKA_FAILURES.inc()
        metrics.refused_events("kafka_unavailable", len(records))
        current_app.logger.warning("503: %s", exc)
        retry_after = str(current_app.config["INGEST_RETRY_AFTER_S"])
        # Not acknowledged is not "not written": a broker may have written a record whose
        # answer was lost or late. Retried with these ids, such a record is counted once
        # downstream (raw_orders is keyed by order_id).
        message = f"{exc}; {RETRY_ADVICE}"
        raise RequestProblem(503, {"error": message, "order_ids": order_ids}, {"Retry-After": retry_after}) from None
    metrics.KAFKA_ACK.observe(time.perf_counter() - started)
    metrics.EVENTS_ACCEPTED.inc(len(records))
    return order_ids


@bp.post("/api/log")
def post_log() -> tuple[Response, int]:
    _require_content_type(JSON)
    payload = _parse_json(_read_body(min(MAX_EVENT_BYTES, _body_limit())))
    now = datetime.now(UTC)
    try:
        event = validate_event(payload, now=now)
    except InvalidEvent as exc:
        metrics.refused_events("invalid", 1)
        raise _problem(400, "invalid event", errors=[e.as_dict() for e in exc.errors]) from None
    (order_id,) = _produce([event])
    return jsonify({"status": "accepted", "order_id": order_id}), 202


@bp.post("/api/logs")
def post_logs() -> tuple[Response, int]:
    mimetype = _require_content_type(JSON, NDJSON)
    data = _read_body(_body_limit())
    max_batch = _settings().ingest.max_batch
    now = datetime.now(UTC)
    # A body of valid events in the usual form is decoded and stamped in C (fast_batch);
    # any other body is read the careful way, which says what is wrong with it.
    if mimetype == NDJSON:
        lines = ndjson_lines(data, max_batch)
        fast = None if lines is None else fast_batch.ndjson_records(lines, now, now)
    else:
        fast = fast_batch.json_array_records(data, max_batch, now, now)
    if fast is not None:
        order_ids = _send(*fast)
        return jsonify({"status": "accepted", "count": len(order_ids), "order_ids": order_ids}), 202
    # Read one event at a time: never a list of everything the body holds.
    items = ndjson_items(data, max_batch) if mimetype == NDJSON else json_array_items(data, max_batch)
    try:
        events = _validate_each(items, now)
    except BatchRefused as refused:
        raise _problem(refused.status, refused.message) from None
    order_ids = _produce(events)
    return jsonify({"status": "accepted", "count": len(order_ids), "order_ids": order_ids}), 202


def _settings() -> Settings:
    return current_app.config["SETTINGS"]


def _body_limit() -> int:
    return _settings().ingest.max_body_bytes


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    """Liveness: the process answers. Nothing outside it is asked, so a Kafka outage never
    gets a healthy worker restarted (that is what /readyz is for)."""
    return jsonify({"status": "ok"}), 200


@bp.get("/readyz")
def readyz() -> tuple[Response, int] | tuple[Response, int, dict[str, str]]:
    """Readiness: Kafka answers a fresh metadata request for the topic, so events sent now
    can be acknowledged."""
    ok, reason = get_producer().reachable()
    topic = _settings().kafka.topic
    if ok:
        return jsonify({"status": "ok", "kafka": "reachable", "topic": topic}), 200
    retry_after = str(current_app.config["INGEST_RETRY_AFTER_S"])
    where = _settings().kafka.bootstrap_servers
    body = {"status": "unavailable", "kafka": "unreachable", "topic": topic, "error": f"Kafka at {where}: {reason}"}
    return jsonify(body), 503, {"Retry-After": retry_after}


@bp.get("/openapi.json")
def openapi() -> Response:
    ingest = _settings().ingest
    return jsonify(
        openapi_document(max_batch=ingest.max_batch, max_body_bytes=ingest.max_body_bytes, auth=bool(ingest.api_token))
    )
