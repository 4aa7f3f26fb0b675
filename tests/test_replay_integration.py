"""The replay generator against the real ingest API (gunicorn) and the real Kafka: what
it reports as acknowledged is exactly what is in the topic, once each."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest

from orderlog.events import parse_record, validate_event
from tests.conftest import gunicorn_server
from tools import replay as replay_cli
from tools.generator import ReplayParams, generate

pytestmark = pytest.mark.integration

END = date(2025, 5, 31)
ARGS = ["--days", "2", "--users", "120", "--orders", "1600", "--seed", "7"]


@pytest.fixture
def ingest_api(settings, kafka_topic, tmp_path) -> Iterator[str]:
    env = {
        "ORDERLOG_KAFKA_BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "ORDERLOG_KAFKA_TOPIC": kafka_topic,
        "ORDERLOG_INGEST_WORKERS": "1",
        "ORDERLOG_INGEST_THREADS": "4",
        "ORDERLOG_INGEST_API_TOKEN": None,
    }
    with gunicorn_server("ingest_api", env, tmp_path / "ingest.log", "/readyz") as (_, url):
        yield url


def read_topic(settings, topic: str, expected: int) -> list[tuple[bytes, bytes]]:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic, bootstrap_servers=settings.kafka.bootstrap_list, auto_offset_reset="earliest",
        enable_auto_commit=False, consumer_timeout_ms=10000,
    )
    records = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for message in consumer:
                records.append((message.key, message.value))
            if len(records) >= expected:
                break
        # Nothing more arrives after the expected count (no duplicates).
        for message in consumer:
            records.append((message.key, message.value))
    finally:
        consumer.close()
    return records


def comparable(record: dict) -> dict:
    return {k: v for k, v in record.items() if k != "received_at"}


def test_replay_through_the_real_api_puts_exactly_the_valid_events_in_kafka(
    settings, kafka_topic, ingest_api, tmp_path, capsys
):
    truth_file = tmp_path / "truth.json"
    code = replay_cli.main(
        ["2025-05-31", *ARGS, "--dirty", "--rate", "0", "--batch", "150", "--quiet",
         "--url", ingest_api, "--truth", str(truth_file)]
    )
    out = capsys.readouterr().out
    replay = generate(ReplayParams(END, days=2, users=120, orders=1600, seed=7, dirty=True))
    valid = replay.valid_events
    malformed = len(replay.events) - len(valid)
    assert (len(valid), malformed) == (1600, 8)
    assert code == 0, out
    assert f"sent 1608, acknowledged 1600, refused {malformed}" in out

    records = read_topic(settings, kafka_topic, len(valid))
    assert len(records) == len(valid)
    now = datetime.now(UTC)
    got = Counter(
        (key.decode(), json.dumps(comparable(parse_record(value).to_record()), sort_keys=True))
        for key, value in records
    )
    expected = Counter(
        (e.payload["user_id"], json.dumps(comparable(validate_event(e.payload, now=now).to_record()), sort_keys=True))
        for e in valid
    )
    assert got == expected
    for _, value in records:  # the API stamped every record with its receive time
        assert parse_record(value).received_at is not None

    truth = json.loads(truth_file.read_text())
    assert truth["orders"] == 1600
    assert truth["replay"]["acknowledged"] == 1600 and truth["replay"]["refused"] == malformed
    assert sum(d["total"] for d in truth["daily"].values()) == 1600


def test_sending_the_same_replay_again_sends_the_same_order_ids(settings, kafka_topic, ingest_api, capsys):
    for _ in range(2):
        assert replay_cli.main(["2025-05-31", *ARGS, "--rate", "0", "--quiet", "--url", ingest_api]) == 0
    records = read_topic(settings, kafka_topic, 3200)
    ids = Counter(json.loads(value)["order_id"] for _, value in records)
    # Kafka has each twice; downstream raw_orders is keyed by order_id, so it counts once.
    assert len(ids) == 1600 and set(ids.values()) == {2}
    assert "sent 1600, acknowledged 1600, refused 0" in capsys.readouterr().out

