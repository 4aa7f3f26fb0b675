"""The viewer's /metrics: requests counted over gunicorn's two workers (multiprocess mode),
and the aggregate job's latest date and last run read from the real run ledger; open
without credentials, never cached."""

from __future__ import annotations

import base64
import urllib.error
import urllib.request
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import free_ports, gunicorn_server
from tests.viewer_data import LATEST, ViewerData, load_standard, viewer_app
from viewer.db import close_app

pytestmark = pytest.mark.integration

AUTH = {"Authorization": "Basic " + base64.b64encode(b"analyst:s3cret").decode()}


def get(url: str, headers: dict[str, str] | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=30) as reply:
            return reply.status
    except urllib.error.HTTPError as error:
        return error.code


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(got: dict, name: str, **labels: str) -> float | None:
    return got.get((name, tuple(sorted(labels.items()))))


def test_requests_add_up_over_the_workers_and_the_ledger_is_exported(cassandra, settings, tmp_path: Path):
    load_standard(cassandra)
    env = {
        "ORDERLOG_CASSANDRA_KEYSPACE": settings.cassandra.keyspace,
        "ORDERLOG_VIEWER_WORKERS": "2",
        "ORDERLOG_VIEWER_THREADS": "2",
        "ORDERLOG_VIEWER_USER": "analyst",
        "ORDERLOG_VIEWER_PASSWORD": "s3cret",
    }
    with gunicorn_server("viewer", env, tmp_path / "gunicorn.log", "/readyz") as (_, base):
        statuses = [get(base + "/daily", AUTH) for _ in range(3)]  # the cache answers some: counted too
        statuses += [get(base + "/daily"), get(base + "/api/status", AUTH), get(base + "/api/status", AUTH)]
        assert statuses == [200, 200, 200, 401, 200, 200]
        scrapes = []
        for _ in range(4):  # without credentials; any worker may answer each
            with urllib.request.urlopen(base + "/metrics", timeout=30) as reply:
                assert reply.status == 200 and "ETag" not in reply.headers
                scrapes.append(samples(reply.read().decode()))

    today = datetime.now(ZoneInfo(settings.business.timezone)).date()
    for got in scrapes:
        assert value(got, "orderlog_viewer_requests_total", endpoint="/daily", method="GET", status="200") == 3
        assert value(got, "orderlog_viewer_requests_total", endpoint="/daily", method="GET", status="401") == 1
        assert value(got, "orderlog_viewer_requests_total", endpoint="/api/status", method="GET", status="200") == 2
        assert value(got, "orderlog_viewer_request_duration_seconds_count", endpoint="/daily") == 4
        assert value(got, "orderlog_viewer_cassandra_up") == 1
        assert value(got, "orderlog_aggregate_latest_date_age_days") == (today - LATEST).days
        assert value(got, "orderlog_aggregate_last_run_info", status="succeeded", trigger="nightly",
                     order_date="2025-05-31") == 1
        assert value(got, "orderlog_aggregate_last_run_failed") == 0
        assert value(got, "orderlog_aggregate_last_run_duration_seconds") == 1.234
        finished = datetime(2025, 5, 31, 17, 0, tzinfo=UTC).timestamp()  # as tests/viewer_data.py writes it
        assert value(got, "orderlog_aggregate_last_run_finished_timestamp_seconds") == finished


def test_a_failed_run_shows_and_an_unreachable_cassandra_is_a_zero_not_an_error(cassandra, settings):
    load_standard(cassandra)
    ViewerData(cassandra).aggregate_run(date(2025, 6, 1), status="failed", error="boom")
    app = viewer_app(settings)
    got = samples(app.test_client().get("/metrics").get_data(as_text=True))  # type: ignore[attr-defined]
    close_app(app)  # type: ignore[arg-type]
    assert value(got, "orderlog_aggregate_last_run_failed") == 1
    assert value(got, "orderlog_aggregate_last_run_info", status="failed", trigger="nightly",
                 order_date="2025-06-01") == 1

    (port,) = free_ports(1)
    app = viewer_app(settings.replace(cassandra_port=port))
    response = app.test_client().get("/metrics")  # type: ignore[attr-defined]
    assert response.status_code == 200
    got = samples(response.get_data(as_text=True))
    assert value(got, "orderlog_viewer_cassandra_up") == 0
    assert value(got, "orderlog_aggregate_last_run_failed") is None  # unknown, not "fine"
