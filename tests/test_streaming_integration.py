"""The streaming job's writer against the real Kafka and Cassandra: records produced to a
topic of the test's own arrive in raw_orders exactly (same set, same content); malformed
records land in rejected_events with their reasons while good ones around them arrive; a
replay (a fresh checkpoint over the same topic) changes nothing; a restart resumes."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from kafka import KafkaProducer

from jobs.stream_sink import QUERY_ID_PROPERTY, BatchWriter
from jobs.stream_source import KAFKA_SCHEMA, read_kafka
from orderlog.business_day import business_date
from orderlog.events import OrderEvent, derived_order_id, parse_record
from orderlog.layout import RAW_ORDER_BUCKETS, bucket_of

pytestmark = pytest.mark.integration

MENU_ERROR = "menu_type: must be 'japanese' or 'western' (or 和食 / 洋食)"


def produce(settings, topic: str, records: list[tuple[bytes | None, bytes | None]]) -> list[tuple[int, int]]:
    """Sends (key, value) records in order; returns their (partition, offset)."""
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_list, acks="all")
    try:
        futures = [producer.send(topic, key=key, value=value) for key, value in records]
        producer.flush()
        return [(m.partition, m.offset) for m in (f.get(timeout=30) for f in futures)]
    finally:
        producer.close()


def run_available(spark, settings, topic: str, checkpoint: str) -> None:
    """The job's own source and foreachBatch writer, run over what the topic holds now."""
    run_settings = settings.replace(kafka_topic=topic, stream_checkpoint_location=checkpoint,
                                    stream_max_offsets_per_trigger=40)
    query = (
        read_kafka(spark, run_settings)
        .writeStream.foreachBatch(BatchWriter(run_settings))
        .option("checkpointLocation", checkpoint)
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination(300)
    assert not query.isActive
    assert query.exception() is None


def raw_rows(cassandra) -> set[tuple]:
    rows = cassandra.execute(
        "SELECT order_date, bucket, order_id, user_id, menu_type, ordered_at, ordered_at_text, received_at, "
        "kafka_partition, kafka_offset FROM raw_orders"
    )
    return {(r[0].date(), *r[1:]) for r in rows}  # the driver's Date -> datetime.date


def rejected_rows(cassandra) -> dict[tuple[int, int], tuple]:
    rows = cassandra.execute(
        "SELECT kafka_partition, kafka_offset, kafka_topic, kafka_key, raw_value, reason FROM rejected_events"
    )
    return {(r.kafka_partition, r.kafka_offset): (r.kafka_topic, r.kafka_key, r.raw_value, r.reason) for r in rows}


def expected_raw(topic: str, value: bytes, partition: int, offset: int, tz) -> tuple:
    event = parse_record(value)
    order_id = event.order_id or derived_order_id(topic, partition, offset)
    ordered_at = event.timestamp.astimezone(UTC).replace(tzinfo=None)
    received = event.received_at.astimezone(UTC).replace(tzinfo=None) if event.received_at else None
    sent = json.loads(value)["timestamp"]
    return (
        business_date(event.timestamp, tz), bucket_of(order_id, RAW_ORDER_BUCKETS), order_id, event.user_id,
        event.menu_type, ordered_at, sent if isinstance(sent, str) else json.dumps(sent), received, partition, offset,
    )


def good_events(n: int, run: str) -> list[bytes]:
    """Valid events of every shape: client ids and none, aliases, offsets, epoch, received_at."""
    stamps = ["2025-05-31T23:59:59+09:00", "2025-05-31T15:00:00Z", "2025-05-31T14:59:59.999Z",
              "2025-06-01T00:00:00-07:00", 1748703600, "1748703599123"]
    events = []
    for i in range(n):
        event = {"user_id": f"user-{i % 13}", "timestamp": stamps[i % len(stamps)],
                 "menu_type": ["japanese", "western", "和食", "洋食"][i % 4]}
        if i % 3:
            event["order_id"] = f"{run}-{i}"
        if i % 5 == 0:
            event["received_at"] = "2025-05-31T15:00:01.250+00:00"
        events.append(json.dumps(event, ensure_ascii=False).encode())
    return events


# Malformed records that reach Kafka by other routes, with the reason each must get.
MALFORMED: list[tuple[bytes | None, str]] = [
    (b"{not json", "record is not JSON (Expecting property name enclosed in double quotes)"),
    (b"\xc3\x28 not utf-8", "record is not UTF-8"),
    (b'{"user_id": "u", "menu_type": "japanese"}', "timestamp: is required"),
    (b'{"user_id": "u", "timestamp": "2025-05-31T12:00:00Z", "menu_type": "japanese", "price": 3}',
     "price: unknown field"),
    (b'{"user_id": 7, "timestamp": "2025-05-31T12:00:00Z", "menu_type": "japanese"}', "user_id: must be a string"),
    (b'{"user_id": "u", "timestamp": "2025-05-31T12:00:00Z", "menu_type": "chinese"}', MENU_ERROR),
    (b'{"user_id": "u", "timestamp": "2025-13-45T12:00:00Z", "menu_type": "western"}',
     "timestamp: is not a real date and time"),
    (b"", "record is not JSON (Expecting value)"),
    (None, "record has no value"),
]


def test_valid_and_malformed_records_land_exactly_and_replay_changes_nothing(
    spark, settings, kafka_topic, clean_cassandra, tmp_path
):
    run = uuid.uuid4().hex[:8]
    good = good_events(60, run)
    # Interleave: a malformed record after every few good ones, on every partition.
    records: list[tuple[bytes | None, bytes | None, str | None]] = []
    bad = iter(MALFORMED)
    for i, value in enumerate(good):
        records.append((f"user-{i % 13}".encode(), value, None))
        if i % 6 == 5:
            value_bad, reason = next(bad, (None, None))  # type: ignore[arg-type]
            if reason is not None:
                records.append((f"bad-{i}".encode(), value_bad, reason))
    coords = produce(settings, kafka_topic, [(k, v) for k, v, _ in records])

    run_available(spark, settings, kafka_topic, str(tmp_path / "checkpoint"))

    tz = settings.business.tz
    expected_good = {
        expected_raw(kafka_topic, value, p, o, tz)
        for (key, value, reason), (p, o) in zip(records, coords, strict=True) if reason is None
    }
    expected_bad = {
        (p, o): (kafka_topic, key, value, reason)
        for (key, value, reason), (p, o) in zip(records, coords, strict=True) if reason is not None
    }
    assert len(expected_good) == 60 and len(expected_bad) == len(MALFORMED)
    assert raw_rows(clean_cassandra) == expected_good
    assert rejected_rows(clean_cassandra) == expected_bad

    # A full replay (new checkpoint, from the earliest offset) rewrites the same keys.
    run_available(spark, settings, kafka_topic, str(tmp_path / "checkpoint-replay"))
    assert raw_rows(clean_cassandra) == expected_good
    assert rejected_rows(clean_cassandra) == expected_bad
    assert clean_cassandra.execute("SELECT count(*) FROM raw_orders").one()[0] == 60


def test_restart_resumes_from_the_checkpoint(spark, settings, kafka_topic, clean_cassandra, tmp_path):
    checkpoint = str(tmp_path / "checkpoint")
    first = good_events(30, "first")
    coords = produce(settings, kafka_topic, [(None, v) for v in first])
    run_available(spark, settings, kafka_topic, checkpoint)
    assert clean_cassandra.execute("SELECT count(*) FROM raw_orders").one()[0] == 30

    # Rows written by the first run are not rewritten by the second: their ingested_at stays.
    ingested = "SELECT order_id, ingested_at FROM raw_orders"
    before = {r.order_id: r.ingested_at for r in clean_cassandra.execute(ingested)}
    second = [v.replace(b'"first-', b'"second-') for v in good_events(30, "first")]
    coords += produce(settings, kafka_topic, [(None, v) for v in second])
    run_available(spark, settings, kafka_topic, checkpoint)

    tz = settings.business.tz
    expected = {expected_raw(kafka_topic, v, p, o, tz) for v, (p, o) in zip(first + second, coords, strict=True)}
    assert raw_rows(clean_cassandra) == expected
    after = {r.order_id: r.ingested_at for r in clean_cassandra.execute(ingested)}
    assert {k: after[k] for k in before} == before


def test_business_date_of_the_seed_examples(spark, settings, kafka_topic, clean_cassandra, tmp_path):
    """The seed's two examples, through Kafka and Spark: 23:59:59+09:00 is 05-31, 15:00Z is 06-01."""
    values = [
        b'{"user_id":"a","timestamp":"2025-05-31T23:59:59+09:00","menu_type":"japanese","order_id":"late"}',
        b'{"user_id":"b","timestamp":"2025-05-31T15:00:00Z","menu_type":"western","order_id":"early"}',
    ]
    produce(settings, kafka_topic, [(None, v) for v in values])
    run_available(spark, settings, kafka_topic, str(tmp_path / "cp"))
    rows = clean_cassandra.execute("SELECT order_id, order_date FROM raw_orders")
    dates = {r.order_id: str(r.order_date) for r in rows}
    assert dates == {"late": "2025-05-31", "early": "2025-06-01"}


OLD_REJECTED_EVENTS = """CREATE TABLE rejected_events (reject_date date, kafka_partition int, kafka_topic text,
    kafka_offset bigint, kafka_key text, kafka_timestamp timestamp, raw_value blob, reason text,
    rejected_at timestamp, PRIMARY KEY ((reject_date, kafka_partition), kafka_topic, kafka_offset))"""


def test_the_job_refuses_to_start_on_rejected_events_of_the_older_layout(cassandra, settings):
    """A keyspace made before rejected_events was re-keyed keeps the old table (CREATE IF NOT
    EXISTS changes nothing): one clear line at start, not a failed write every batch."""
    from jobs.stream_preflight import check_cassandra
    from orderlog.cassandra_session import CassandraUnavailable
    from orderlog.tables import create_table_statement

    keyspace = f"orderlog_old_{uuid.uuid4().hex[:8]}"
    cassandra.execute(f"CREATE KEYSPACE {keyspace} WITH replication = {{'class': 'SimpleStrategy', "
                      "'replication_factor': 1}", timeout=60)
    try:
        # Every other table as it is now (the job checks raw_orders and stream_day_counts first).
        for table in ("raw_orders", "stream_day_counts"):
            cassandra.execute(create_table_statement(table, f"{keyspace}.{table}"), timeout=60)
        cassandra.execute(OLD_REJECTED_EVENTS.replace("rejected_events", f"{keyspace}.rejected_events", 1),
                          timeout=60)
        cassandra.cluster.control_connection.wait_for_schema_agreement()
        with pytest.raises(CassandraUnavailable) as failure:
            check_cassandra(settings.replace(cassandra_keyspace=keyspace), retry_seconds=0)
        assert str(failure.value) == (
            f"{keyspace}.rejected_events at 127.0.0.1:{settings.cassandra.port} has the layout of an older version "
            "(key ['reject_date', 'kafka_partition'], ['kafka_topic', 'kafka_offset']): run `make schema` "
            "(python -m orderlog.schema apply) to migrate it"
        )
        check_cassandra(settings, retry_seconds=0)  # the current layout passes
    finally:
        cassandra.execute(f"DROP KEYSPACE {keyspace}", timeout=60)


def stream_day_counts(cassandra) -> dict[tuple, tuple]:
    """(day, kind) -> (query ids, records summed over them, batch ids)."""
    found: dict[tuple, list] = {}
    for r in cassandra.execute("SELECT year, day, kind, query_id, records, batch_id, last_arrival_at FROM "
                               "stream_day_counts"):
        assert r.year == r.day.date().year
        entry = found.setdefault((r.day.date(), r.kind), [set(), 0, set(), None])
        entry[0].add(r.query_id)
        entry[1] += r.records
        entry[2].add(r.batch_id)
        entry[3] = max(entry[3] or r.last_arrival_at, r.last_arrival_at)
    return {k: (v[0], v[1], v[2], v[3]) for k, v in found.items()}


def table_dates(cassandra) -> dict[tuple, int]:
    """(day, kind) -> rows of raw_orders / rejected_events of that date."""
    counted: dict[tuple, int] = {}
    for r in cassandra.execute("SELECT order_date FROM raw_orders"):
        counted[(r.order_date.date(), "orders")] = counted.get((r.order_date.date(), "orders"), 0) + 1
    for r in cassandra.execute("SELECT reject_date FROM rejected_events"):
        counted[(r.reject_date.date(), "rejected")] = counted.get((r.reject_date.date(), "rejected"), 0) + 1
    return counted


def test_per_date_totals_are_written_and_a_replayed_batch_does_not_double_them(
    spark, settings, kafka_topic, clean_cassandra, tmp_path
):
    import pathlib

    run = uuid.uuid4().hex[:8]
    good = good_events(60, run)
    bad = [value for value, _ in MALFORMED[:5]]
    coords = produce(settings, kafka_topic, [(None, v) for v in good + bad])
    checkpoint = tmp_path / "checkpoint"
    run_available(spark, settings, kafka_topic, str(checkpoint))  # 65 records: batches 0 and 1 (40 a batch)

    query_id = json.loads((checkpoint / "metadata").read_text())["id"]
    counts = stream_day_counts(clean_cassandra)
    # Every record counted under the date of its row, by this query, once.
    assert {k: n for k, (_, n, _, _) in counts.items()} == table_dates(clean_cassandra)
    assert {k: ids for k, (ids, _, _, _) in counts.items()} == {k: {query_id} for k in counts}
    order_dates = [
        expected_raw(kafka_topic, v, p, o, settings.business.tz)[0] for v, (p, o) in zip(good, coords[:60], strict=True)
    ]
    assert {d: n for (d, kind), (_, n, _, _) in counts.items() if kind == "orders"} == {
        d: order_dates.count(d) for d in set(order_dates)
    }
    assert sum(n for (_, kind), (_, n, _, _) in counts.items() if kind == "rejected") == 5

    # The job died after batch 1's writes, before Spark committed it: the batch is replayed.
    commits = pathlib.Path(checkpoint / "commits")
    assert sorted(p.name for p in commits.iterdir() if not p.name.startswith(".")) == ["0", "1"]
    (commits / "1").unlink()
    (commits / ".1.crc").unlink(missing_ok=True)
    run_available(spark, settings, kafka_topic, str(checkpoint))
    replayed = stream_day_counts(clean_cassandra)
    assert {k: v[:3] for k, v in replayed.items()} == {k: v[:3] for k, v in counts.items()}  # not doubled
    assert any(replayed[k][3] > counts[k][3] for k in counts if 1 in counts[k][2])  # and it did run again

    # The next batch adds its records.
    more = [v.replace(f'"{run}-'.encode(), f'"{run}-more-'.encode()) for v in good_events(6, run)]
    produce(settings, kafka_topic, [(None, v) for v in more])
    run_available(spark, settings, kafka_topic, str(checkpoint))
    after = stream_day_counts(clean_cassandra)
    assert {k: n for k, (_, n, _, _) in after.items()} == table_dates(clean_cassandra)
    assert sum(n for _, n, _, _ in after.values()) == 65 + 6


def api_events(n: int, run: str) -> list[bytes]:
    """Events in the ingest API's canonical form (judged in Spark, no Python)."""
    sent = datetime(2025, 5, 31, 12, 0, 0, 120000, tzinfo=timezone(timedelta(hours=9)))
    return [
        OrderEvent(f"{run}-api-{i}", f"user-{i % 7}", ["japanese", "western"][i % 2], sent + timedelta(minutes=i),
                   sent + timedelta(minutes=i, seconds=1)).to_json_bytes()
        for i in range(n)
    ]


def test_api_client_and_malformed_records_in_one_batch_all_land_once(
    spark, settings, kafka_topic, clean_cassandra, tmp_path
):
    """The sink writes the natively judged records first, then the deferred ones: a batch
    mixing both (and rejected records) lands whole, and its totals count each record once."""
    run = uuid.uuid4().hex[:8]
    records = [(None, v, None) for v in api_events(20, run)]
    records += [(None, v, None) for v in good_events(8, run)] + [(None, v, r) for v, r in MALFORMED[:4]]
    records = records[::3] + records[1::3] + records[2::3]  # interleaved
    coords = produce(settings, kafka_topic, [(k, v) for k, v, _ in records])

    run_available(spark, settings, kafka_topic, str(tmp_path / "checkpoint"))  # 32 records: one batch

    tz = settings.business.tz
    good = [(v, c) for (_, v, reason), c in zip(records, coords, strict=True) if reason is None]
    assert raw_rows(clean_cassandra) == {expected_raw(kafka_topic, v, p, o, tz) for v, (p, o) in good}
    assert {k: v[3] for k, v in rejected_rows(clean_cassandra).items()} == {
        c: reason for (_, _, reason), c in zip(records, coords, strict=True) if reason is not None
    }
    counts = stream_day_counts(clean_cassandra)
    assert {k: n for k, (_, n, _, _) in counts.items()} == table_dates(clean_cassandra)
    assert sum(n for (_, kind), (_, n, _, _) in counts.items() if kind == "orders") == 28


def test_a_batch_of_api_records_is_one_spark_job_and_deferred_records_add_theirs(spark, settings, clean_cassandra):
    """A batch whose records are all in the canonical form skips the deferred records' step
    (its Python UDF): fewer Spark jobs than a batch with a deferred record, which has fewer
    than one with a rejected record (their own write)."""
    run = uuid.uuid4().hex[:8]
    context = spark.sparkContext
    kafka_time = datetime(2025, 5, 31, 3, 0)  # UTC, as Spark's Kafka source gives it

    def jobs_of_batch(batch_id: int, values: list[bytes]) -> int:
        frame = spark.createDataFrame(
            [(None, v, "orders", 0, batch_id * 1000 + i, kafka_time, None) for i, v in enumerate(values)], KAFKA_SCHEMA)
        group = f"test-batch-{run}-{batch_id}"
        context.setJobGroup(group, "one batch of the sink")
        try:
            writer(frame, batch_id)
        finally:
            context.setJobGroup("", "")
        return len(context.statusTracker().getJobIdsForGroup(group))

    writer = BatchWriter(settings)
    context.setLocalProperty(QUERY_ID_PROPERTY, f"test-{run}")
    try:
        canonical = jobs_of_batch(0, api_events(10, f"{run}-0"))
        deferred = jobs_of_batch(1, api_events(10, f"{run}-1") + good_events(3, f"{run}-1"))
        rejected = jobs_of_batch(2, api_events(10, f"{run}-2") + [MALFORMED[0][0]])
        assert canonical < deferred < rejected, (canonical, deferred, rejected)
        assert jobs_of_batch(3, api_events(10, f"{run}-3")) == canonical
    finally:
        context.setLocalProperty(QUERY_ID_PROPERTY, None)
    assert clean_cassandra.execute("SELECT count(*) FROM raw_orders").one()[0] == 10 + 13 + 10 + 10
    assert clean_cassandra.execute("SELECT count(*) FROM rejected_events").one()[0] == 1
