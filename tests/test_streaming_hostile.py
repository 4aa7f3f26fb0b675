"""Hostile records sent straight to Kafka (not through the ingest API) under the real
streaming job (`./spark-submit.sh streaming`): every record that once stopped the job, and
every other kind a producer can send, with and without keys (binary ones too) and with
hostile headers, between good events. The job must keep running, write every good event
to raw_orders exactly once and every bad one to rejected_events with its reason, carry on
with the events sent after them, and stop cleanly on SIGTERM."""

from __future__ import annotations

import hashlib
import time
import uuid

import pytest
from kafka import KafkaProducer
from kafka.errors import InvalidTimestampError

from orderlog.events import derived_order_id, parse_record
from orderlog.layout import rejected_bucket_of
from orderlog.rejected import KEPT_PAYLOAD_BYTES
from tests.hostile import HOSTILE, HOSTILE_HEADERS, event_bytes
from tests.streaming_job import StreamingJob, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.fault]

KEYS = [None, b"user-1", b"\xff\xfe\x00\x80 binary", "キー".encode(), b""]


def good_events(run: str, count: int) -> list[bytes]:
    """Valid events with and without order_id, with the extreme received_at the rules allow."""
    received = [None, "0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999Z", "2025-05-31T03:00:00.120+00:00"]
    events = []
    for i in range(count):
        fields: dict[str, object] = {"user_id": f"{run}-user-{i % 7}", "menu_type": ["japanese", "洋食"][i % 2]}
        if i % 2:
            fields["order_id"] = f"{run}-{i}"
        if received[i % 4] is not None:
            fields["received_at"] = received[i % 4]
        events.append(event_bytes(**fields))
    return events


class Sender:
    """Sends records one by one (acks=all) and remembers what each must become."""

    def __init__(self, settings, topic: str, **config):
        self.topic = topic
        self.producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_list, acks="all",
                                      max_request_size=2_000_000, **config)
        self.good: dict[str, bytes] = {}  # order_id -> value
        self.bad: dict[tuple[int, int], tuple[bytes | None, bytes | None, str]] = {}  # (p, o) -> key, value, reason

    def send(self, key: bytes | None, value: bytes | None, headers=None, reason: str | None = None) -> None:
        meta = self.producer.send(self.topic, key=key, value=value, headers=headers or []).get(timeout=60)
        if reason is None:
            event = parse_record(value)
            self.good[event.order_id or derived_order_id(self.topic, meta.partition, meta.offset)] = value
        else:
            self.bad[(meta.partition, meta.offset)] = (key, value, reason)


def raw_ids(session) -> list[str]:
    return [r.order_id for r in session.execute("SELECT order_id FROM raw_orders", timeout=60)]


def rejected(session) -> dict[tuple[int, int], object]:
    rows = session.execute(
        "SELECT kafka_partition, kafka_offset, bucket, kafka_key, kafka_key_length, raw_value, raw_length, "
        "raw_sha256, reason, TTL(reason) AS ttl FROM rejected_events", timeout=60
    )
    return {(r.kafka_partition, r.kafka_offset): r for r in rows}


def test_hostile_records_straight_to_kafka_are_rejected_and_the_job_keeps_going(
    settings, kafka_topic, clean_cassandra, tmp_path, streaming_jobs
):
    job = StreamingJob(settings, kafka_topic, tmp_path / "checkpoint", tmp_path / "streaming.log").start()
    streaming_jobs.append(job)
    sender = Sender(settings, kafka_topic)
    good = iter(good_events("before", 2 * len(HOSTILE)))
    for i, hostile in enumerate(HOSTILE):
        key = KEYS[i % len(KEYS)] if hostile.value is not None else b"tombstone"  # a tombstone needs a key
        sender.send(KEYS[(i + 1) % len(KEYS)], next(good))
        sender.send(key, hostile.value, HOSTILE_HEADERS[i % len(HOSTILE_HEADERS)], reason=hostile.reason)
        sender.send(KEYS[(i + 2) % len(KEYS)], next(good), HOSTILE_HEADERS[(i + 3) % len(HOSTILE_HEADERS)])

    # A timestamp Spark's Kafka source cannot convert (it failed the task on every restart)
    # never reaches the job: the topic refuses it (orderlog.schema.TOPIC_TIMESTAMP_CONFIGS).
    with pytest.raises(InvalidTimestampError):
        sender.producer.send(kafka_topic, value=event_bytes(), timestamp_ms=-9 * 10**18).get(timeout=60)

    wait_for(lambda: len(raw_ids(clean_cassandra)) >= len(sender.good) and len(rejected(clean_cassandra)) >= len(
        sender.bad), 300, f"{len(sender.good)} orders and {len(sender.bad)} rejected records", interval=2)
    assert job.proc.poll() is None, f"the job stopped:\n{job.text()[-3000:]}"

    # Good events sent after the hostile ones arrive too, compressed ones included.
    after = Sender(settings, kafka_topic, compression_type="gzip")
    for i, value in enumerate(good_events("after", 10)):
        after.send(KEYS[i % len(KEYS)], value)
    expected_good = {**sender.good, **after.good}
    wait_for(lambda: len(raw_ids(clean_cassandra)) >= len(expected_good), 180, "the events sent afterwards")
    time.sleep(3)  # a few more triggers: nothing may arrive twice

    ids = raw_ids(clean_cassandra)
    assert sorted(ids) == sorted(expected_good), "every good event exactly once"
    rows = rejected(clean_cassandra)
    assert set(rows) == set(sender.bad)
    for coordinates, (key, value, reason) in sender.bad.items():
        row = rows[coordinates]
        assert row.reason == reason and row.reason.isprintable()
        assert row.bucket == rejected_bucket_of(coordinates[1])
        assert (row.kafka_key, row.kafka_key_length) == (key, None if key is None else len(key))
        assert row.raw_value == (None if value is None else value[:KEPT_PAYLOAD_BYTES])
        assert row.raw_length == (None if value is None else len(value))
        assert row.raw_sha256 == (None if value is None else hashlib.sha256(value).hexdigest())
        assert 29 * 86_400 < row.ttl <= 30 * 86_400  # ORDERLOG_REJECTED_TTL_DAYS' default
    megabyte = next(h.value for h in HOSTILE if h.name == "1,000,000 bytes")
    assert [len(r.raw_value) for r in rows.values() if r.raw_length == len(megabyte)] == [KEPT_PAYLOAD_BYTES]

    assert job.proc.poll() is None
    assert job.terminate() == 0
    log = job.text()
    assert "query stopped at a batch boundary" in log
    assert "Traceback" not in log and "streaming: error" not in log


def test_an_order_topic_made_before_the_timestamp_bounds_gets_them_from_make_schema(settings):
    from kafka.admin import KafkaAdminClient, NewTopic

    from orderlog.schema import create_topic

    topic = f"test-old-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_list)
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])  # no configs: Kafka's defaults
    try:
        producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_list, acks="all")
        producer.send(topic, value=b"accepted before", timestamp_ms=-9 * 10**18).get(timeout=60)
        assert create_topic(settings.replace(kafka_topic=topic)) is False  # exists: bounds set, nothing else

        def refused() -> bool:
            try:
                producer.send(topic, value=b"refused now", timestamp_ms=-9 * 10**18).get(timeout=60)
            except InvalidTimestampError:
                return True
            return False

        # A configuration change reaches the partition's log a moment after it is acknowledged.
        wait_for(refused, 30, "the broker to refuse the timestamp", interval=0.5)
        producer.close()  # a refused record leaves kafka-python's idempotent producer failed
        producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_list, acks="all")
        producer.send(topic, value=b"an ordinary record").get(timeout=60)
        producer.close()
    finally:
        admin.delete_topics([topic])
        admin.close()
