"""Faults of the real streaming job (`./spark-submit.sh streaming` as a subprocess): kill -9
in the middle of a stream, Cassandra stopped under it, SIGTERM. Every event produced must
be in raw_orders exactly once afterwards."""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter

import pytest
from kafka import KafkaProducer

from orderlog.business_day import business_date
from orderlog.cassandra_session import connect, shutdown
from orderlog.events import derived_order_id, parse_record
from tests.streaming_job import StreamingJob, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.fault]

STAMPS = ["2025-05-30T23:59:59+09:00", "2025-05-31T15:00:00Z", "2025-05-31T12:00:00+09:00", "2025-06-01T02:00:00Z"]


def event_bytes(i: int, run: str) -> bytes:
    event = {"user_id": f"user-{i % 97}", "timestamp": STAMPS[i % len(STAMPS)],
             "menu_type": "japanese" if i % 3 else "western"}
    if i % 2:  # half carry a client id, half get the id of their Kafka coordinates
        event["order_id"] = f"{run}-{i}"
    return json.dumps(event).encode()


class Producer(threading.Thread):
    """Produces events [first, last) at about `rate` per second; records each order_id."""

    def __init__(self, settings, topic: str, run: str, first: int, last: int, rate: int):
        super().__init__(daemon=True)
        self.settings, self.topic, self.run_id, self.first, self.last, self.rate = (
            settings, topic, run, first, last, rate)
        self.expected: dict[str, str] = {}  # order_id -> business date
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            producer = KafkaProducer(bootstrap_servers=self.settings.kafka.bootstrap_list, acks="all", linger_ms=5)
            started = time.monotonic()
            pending = []
            for i in range(self.first, self.last):
                value = event_bytes(i, self.run_id)
                pending.append((value, producer.send(self.topic, key=f"user-{i % 97}".encode(), value=value)))
                if (i - self.first) % 100 == 99:
                    time.sleep(max(0.0, started + (i - self.first + 1) / self.rate - time.monotonic()))
            producer.flush()
            for value, future in pending:
                meta = future.get(timeout=30)
                event = parse_record(value)
                order_id = event.order_id or derived_order_id(self.topic, meta.partition, meta.offset)
                self.expected[order_id] = str(business_date(event.timestamp, self.settings.business.tz))
            producer.close()
        except BaseException as exc:  # surfaced by the test
            self.error = exc


def stored(session) -> list[tuple[str, str]]:
    return [(r.order_id, str(r.order_date)) for r in session.execute("SELECT order_id, order_date FROM raw_orders")]


def count(session) -> int:
    """Rows in raw_orders, or -1 while the test's own driver has not reconnected yet."""
    from cassandra import OperationTimedOut
    from cassandra.cluster import NoHostAvailable

    try:
        return session.execute("SELECT count(*) FROM raw_orders", timeout=60).one()[0]
    except (NoHostAvailable, OperationTimedOut):
        return -1


def assert_exactly_once(session, expected: dict[str, str]) -> None:
    rows = stored(session)
    ids = [order_id for order_id, _ in rows]
    assert len(ids) == len(set(ids)) == len(expected)
    assert set(ids) == set(expected)
    assert Counter(day for _, day in rows) == Counter(expected.values())


def test_kill_9_mid_stream_then_restart_keeps_every_event_exactly_once(
    settings, kafka_topic, clean_cassandra, tmp_path, streaming_jobs
):
    total = 20_000
    checkpoint, log = tmp_path / "checkpoint", tmp_path / "streaming.log"
    job = StreamingJob(settings, kafka_topic, checkpoint, log).start()
    streaming_jobs.append(job)
    producer = Producer(settings, kafka_topic, "k9", 0, total, rate=1000)
    producer.start()

    wait_for(lambda: count(clean_cassandra) >= 3000, 240, "the first 3,000 rows", interval=0.5)
    job.kill9()
    at_kill = count(clean_cassandra)
    assert at_kill < total, "the kill must land mid-stream"

    job2 = StreamingJob(settings, kafka_topic, checkpoint, log).start()
    streaming_jobs.append(job2)
    producer.join(120)
    assert producer.error is None and len(producer.expected) == total
    wait_for(lambda: count(clean_cassandra) >= total, 300, f"{total} rows")
    time.sleep(3)  # a few more triggers: nothing may arrive twice
    assert_exactly_once(clean_cassandra, producer.expected)

    assert job2.terminate() == 0
    text = job2.text()
    assert "SIGTERM received: stopping at the next batch boundary" in text
    assert "query stopped at a batch boundary" in text
    assert at_kill >= 3000


def test_cassandra_outage_recovers_or_fails_cleanly_and_resumes(
    kafka_topic, private_cassandra, tmp_path, streaming_jobs
):
    target = private_cassandra.settings
    checkpoint = tmp_path / "checkpoint"
    session = connect(target)
    try:
        # 1. An outage shorter than the retry window: the job rides it out, losing nothing.
        job = StreamingJob(target, kafka_topic, checkpoint, tmp_path / "run1.log", "--write-retry-seconds", "300")
        job.start()
        streaming_jobs.append(job)
        first = Producer(target, kafka_topic, "c1", 0, 4000, rate=500)
        first.start()
        wait_for(lambda: count(session) >= 500, 240, "the first rows")
        private_cassandra.stop()
        first.join(60)
        time.sleep(5)
        private_cassandra.start()
        wait_for(lambda: count(session) >= 4000, 300, "4,000 rows after Cassandra came back")
        assert job.proc.poll() is None, "the job must have recovered, not exited"
        # Which line it logs depends on when the outage hits: during a write ("unavailable",
        # then a retry) or between writes (the health check says "down" before writing).
        where = f"Cassandra at 127.0.0.1:{target.cassandra.port}"
        assert re.search(rf"batch \d+: {re.escape(where)} (unavailable|down) \(", job.text()), \
            "the job must have noticed the outage, not merely been idle through it"
        assert job.terminate() == 0

        # 2. An outage longer than the window: exit 1 with one clear line; a restart resumes.
        job = StreamingJob(target, kafka_topic, checkpoint, tmp_path / "run2.log", "--write-retry-seconds", "10")
        job.start()
        streaming_jobs.append(job)
        wait_for(lambda: "started (run" in job.text(), 180, "the query to start")
        private_cassandra.stop()
        second = Producer(target, kafka_topic, "c2", 4000, 6000, rate=1000)
        second.start()
        assert job.proc.wait(240) == 1
        errors = [line for line in job.text().splitlines() if line.startswith("streaming: error:")]
        assert errors and errors[-1].startswith(
            f"streaming: error: cannot write to Cassandra at 127.0.0.1:{target.cassandra.port} for 10 s"
        ), errors
        second.join(60)

        private_cassandra.start()
        job = StreamingJob(target, kafka_topic, checkpoint, tmp_path / "run3.log").start()
        streaming_jobs.append(job)
        wait_for(lambda: count(session) >= 6000, 300, "6,000 rows after the restart")
        time.sleep(3)
        assert first.error is None and second.error is None
        assert_exactly_once(session, {**first.expected, **second.expected})
        assert job.terminate() == 0
    finally:
        shutdown(session)
