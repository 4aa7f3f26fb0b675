"""Liveness and readiness of the viewer, for probes (compose healthchecks, load balancers):
outside basic auth and outside the response cache, so a probe needs no password and always
sees the present state.

``/healthz``: the process answers (asks nothing of Cassandra). ``/readyz``: Cassandra
answers a query of the keyspace, so pages can be served."""

from __future__ import annotations

from typing import Any

from cassandra.cluster import NoHostAvailable
from flask import Blueprint, current_app, jsonify

from orderlog.cassandra_session import refusal
from viewer.db import LATEST_RUN_SCOPE, SchemaOutOfDate, get_store
from viewer.errors import CASSANDRA_ERRORS, RETRY_AFTER_SECONDS

bp = Blueprint("health", __name__)

# Endpoints that answer without credentials and are never cached: the probes, and the
# metrics (counts and dates, for Prometheus; viewer/metrics.py).
PUBLIC_ENDPOINTS = frozenset({"health.healthz", "health.readyz", "metrics"})
# A reason is one line a probe's log can show whole.
MAX_REASON_CHARS = 300


@bp.get("/healthz")
def healthz() -> Any:
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Any:
    cassandra = current_app.config["SETTINGS"].cassandra
    where = {"keyspace": cassandra.keyspace}
    try:
        # The smallest read the pages depend on: one row of one table of the keyspace.
        get_store().execute("latest_finished_run", (LATEST_RUN_SCOPE,)).one()
    except (*CASSANDRA_ERRORS, OSError) as exc:
        settings = current_app.config["SETTINGS"]
        body = {"status": "unavailable", "cassandra": "unreachable", **where,
                "error": refusal(settings, exc) or f"Cassandra at {cassandra.address}: {reason(exc)}"}
        return jsonify(body), 503, {"Retry-After": str(RETRY_AFTER_SECONDS)}
    except SchemaOutOfDate as exc:
        return jsonify({"status": "unavailable", "cassandra": "reachable", **where, "error": str(exc)}), 503
    return jsonify({"status": "ok", "cassandra": "reachable", **where})


def reason(exc: BaseException) -> str:
    """What went wrong, as one bounded line (the driver names each host's own error)."""
    if isinstance(exc, NoHostAvailable) and exc.errors:
        text = "; ".join(f"{host}: {_one_line(error)}" for host, error in exc.errors.items())
    else:
        text = _one_line(exc)
    return text[:MAX_REASON_CHARS]


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    name = type(exc).__name__
    return text if text.startswith(name) else f"{name}: {text}"
