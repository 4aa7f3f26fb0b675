"""The ingest API's /metrics under gunicorn with two workers (prometheus-client's
multiprocess mode), read after real requests against the real Kafka: every figure is the
sum over the workers, whichever worker answers the scrape."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import gunicorn_server

pytestmark = pytest.mark.integration

GOOD = {"user_id": "u-1", "timestamp": "2025-05-31T12:34:56+09:00", "menu_type": "japanese"}
TOKEN = "metrics-t0ken"


def post(base: str, path: str, body: bytes, token: str | None = TOKEN, content_type: str = "application/json") -> int:
    headers = {"Content-Type": content_type, **({"Authorization": f"Bearer {token}"} if token else {})}
    request = urllib.request.Request(base + path, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status
    except urllib.error.HTTPError as error:
        return error.code


def scrape(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(base + "/metrics", timeout=10) as reply:
        assert reply.status == 200
        text = reply.read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_metrics_add_up_every_workers_requests(settings, kafka_topic, kafka_client, tmp_path: Path):
    env = {
        "ORDERLOG_KAFKA_CLIENT": kafka_client,
        "ORDERLOG_KAFKA_BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "ORDERLOG_KAFKA_TOPIC": kafka_topic,
        "ORDERLOG_INGEST_WORKERS": "2",
        "ORDERLOG_INGEST_THREADS": "2",
        "ORDERLOG_INGEST_API_TOKEN": TOKEN,
    }
    with gunicorn_server("ingest_api", env, tmp_path / "gunicorn.log", "/readyz") as (_, base):
        good = json.dumps(GOOD).encode()
        statuses = [post(base, "/api/log", good) for _ in range(6)]
        statuses.append(post(base, "/api/logs", json.dumps([GOOD] * 3).encode()))
        statuses.append(post(base, "/api/logs", json.dumps([GOOD, {**GOOD, "menu_type": "x"}]).encode()))
        statuses.append(post(base, "/api/log", b"{oops"))
        statuses.append(post(base, "/api/log", good, token=None))
        statuses.append(post(base, "/api/log", good, content_type="text/plain"))
        assert statuses == [202] * 7 + [400, 400, 401, 415]

        figures = [scrape(base) for _ in range(4)]  # any worker may answer each scrape

    for got in figures:
        check(got)


def check(got: dict) -> None:
    def value(name: str, **labels: str) -> float:
        return got.get((name, tuple(sorted(labels.items()))), 0.0)

    assert value("orderlog_ingest_requests_total", route="/api/log", method="POST", status="202") == 6
    assert value("orderlog_ingest_requests_total", route="/api/logs", method="POST", status="202") == 1
    assert value("orderlog_ingest_requests_total", route="/api/logs", method="POST", status="400") == 1
    assert value("orderlog_ingest_requests_total", route="/api/log", method="POST", status="400") == 1
    assert value("orderlog_ingest_requests_total", route="/api/log", method="POST", status="401") == 1
    assert value("orderlog_ingest_requests_total", route="/api/log", method="POST", status="415") == 1
    assert value("orderlog_ingest_request_duration_seconds_count", route="/api/log") == 9
    assert value("orderlog_ingest_events_accepted_total") == 9
    assert value("orderlog_ingest_events_refused_total", reason="invalid") == 2  # the whole batch
    refusals = {"invalid_event": 1, "malformed": 1, "unauthorized": 1, "unsupported_media_type": 1}
    for reason, count in refusals.items():
        assert value("orderlog_ingest_requests_refused_total", reason=reason) == count, reason
    assert value("orderlog_ingest_kafka_ack_seconds_count") == 7  # one per acknowledged request
    assert 0 < value("orderlog_ingest_kafka_ack_seconds_sum") < 7 * 30
    assert value("orderlog_ingest_kafka_failures_total") == 0
