"""The streaming job's judgement is a total function of the Kafka record: whatever the bytes,
JSON, encoding, key or headers, a record becomes a raw_orders row or a rejected_events row
with a printable reason, and never fails a task (a failed task kills the query, and every
restart replays the same record into the same failure).

Property tests (hypothesis) of ``parse_one`` / ``parse_kafka_record`` and of the replay
header, and one seeded batch of a few hundred hostile records through the real local Spark
session. Needs no server."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from jobs.stream_source import KAFKA_SCHEMA
from jobs.stream_transforms import (
    MAX_REASON_CHARS,
    PARSED_FIELDS,
    filter_rejected,
    filter_valid,
    parse_kafka_record,
    parse_one,
    parse_records_arrow,
    to_raw_orders,
    to_rejected_events,
    with_parsed,
)
from orderlog.events import InvalidEvent, derived_order_id, parse_record, printable
from orderlog.layout import rejected_bucket_of
from orderlog.rejected import (
    KEPT_PAYLOAD_BYTES,
    REPLAY_HEADER,
    KafkaCoordinates,
    parse_replay_header,
    replay_header_value,
)
from tests.hostile import HOSTILE, header_values, hostile_batch, record_values

TOPIC = "orders-t"
KAFKA_TS = datetime(2025, 6, 1, 0, 0, tzinfo=UTC)
KAFKA_US = 1_748_736_000_000_000  # KAFKA_TS in epoch microseconds
TOKYO = "Asia/Tokyo"
PROPERTY = hsettings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


def micros(instant: datetime | None) -> int | None:
    return None if instant is None else round((instant - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() * 1e6)


def assert_judged_like_parse_record(value: bytes | None, result: tuple, topic: str, partition: int, offset: int):
    """parse_one's verdict is parse_record's: the same event, or its reason made printable."""
    assert isinstance(result, tuple) and len(result) == 7
    try:
        event = parse_record(value, now=KAFKA_TS)
    except InvalidEvent as exc:
        reason = result[6]
        assert result[:6] == (None,) * 6
        assert reason == printable(str(exc), MAX_REASON_CHARS)
        assert reason and reason.isprintable(), reason
        reason.encode("utf-8")  # storable as Cassandra text (Arrow would fail on a lone surrogate)
        return
    order_id, user_id, menu_type, ordered_us, text, received_us, reason = result
    assert reason is None
    assert order_id == (event.order_id or derived_order_id(topic, partition, offset))
    assert (user_id, menu_type) == (event.user_id, event.menu_type)
    assert ordered_us is not None and abs(ordered_us - micros(event.timestamp)) <= 1
    assert received_us is None if event.received_at is None else abs(received_us - micros(event.received_at)) <= 1
    assert isinstance(text, str) and text
    for field in (order_id, user_id, menu_type, text):
        field.encode("utf-8")


# --- properties of parse_one -----------------------------------------------------------------


@PROPERTY
@given(value=record_values())
def test_any_record_value_is_judged_exactly_as_parse_record_judges_it(value):
    assert_judged_like_parse_record(value, parse_one(value, TOPIC, 3, 77, KAFKA_TS), TOPIC, 3, 77)


@PROPERTY
@given(value=st.binary(max_size=6000))
def test_any_bytes_are_judged_exactly_as_parse_record_judges_them(value):
    assert_judged_like_parse_record(value, parse_one(value, TOPIC, 0, 1, KAFKA_TS), TOPIC, 0, 1)


@pytest.mark.parametrize("hostile", HOSTILE, ids=[h.name for h in HOSTILE])
def test_each_hostile_record_is_rejected_with_its_reason(hostile):
    result = parse_one(hostile.value, TOPIC, 0, 7, KAFKA_TS)
    assert result == (None, None, None, None, None, None, hostile.reason)
    assert_judged_like_parse_record(hostile.value, result, TOPIC, 0, 7)


def test_a_rule_that_raises_rejects_the_record_instead_of_failing_the_task(monkeypatch):
    import jobs.stream_transforms as transforms

    def broken(value, now=None):
        raise KeyError("bug")

    monkeypatch.setattr(transforms, "parse_record", broken)
    assert parse_one(b"{}", TOPIC, 0, 1, KAFKA_TS)[6] == (
        "internal validation error (KeyError); replay the record after the fix"
    )


# --- the replay header --------------------------------------------------------------------


@PROPERTY
@given(value=header_values())
def test_any_replay_header_is_either_well_formed_coordinates_or_ignored(value):
    origin = parse_replay_header(value)
    if origin is not None:
        topic, *numbers = value.decode("ascii").split(":")
        assert (topic, *map(int, numbers)) == (origin.topic, origin.partition, origin.offset, origin.timestamp_ms)
        assert parse_replay_header(replay_header_value(origin)) == origin


@given(
    topic=st.from_regex(r"[A-Za-z0-9._-]{1,249}", fullmatch=True).filter(lambda t: t not in (".", "..")),
    partition=st.integers(0, 2**31 - 1), offset=st.integers(0, 2**63 - 1),
    timestamp_ms=st.integers(-62_135_510_400_000, 253_402_214_399_999),
)
def test_replay_header_round_trips(topic, partition, offset, timestamp_ms):
    origin = KafkaCoordinates(topic, partition, offset, timestamp_ms)
    assert parse_replay_header(replay_header_value(origin)) == origin


@pytest.mark.parametrize(
    "value",
    [None, b"", b"t:0:0", b"t:0:0:0:0", b"t::0:0", b"t:-1:0:0", b"t:0:-1:0", b"t:2147483648:0:0",
     b"t:0:9223372036854775808:0", b"t:0:0:253402300800000", b"t:0:0:-62135596800001", b"a b:0:0:0", b"..:0:0:0",
     "t\u00e9:0:0:0".encode(), b"t:0:0:0\n", b"t:0:0:1e3", b"t:\xef\xbc\x91:0:0", b"x" * 250 + b":0:0:0"],
)
def test_malformed_replay_headers_are_ignored(value):
    assert parse_replay_header(value) is None


@PROPERTY
@given(value=record_values(), header=header_values(), timestamp_us=st.none() | st.integers(-(2**63), 2**63 - 1))
def test_a_replayed_record_is_judged_by_its_own_time_and_keyed_by_the_original(value, header, timestamp_us):
    result = parse_kafka_record(value, TOPIC, 1, 5, timestamp_us, header)
    assert len(result) == len(PARSED_FIELDS)
    origin = parse_replay_header(header)
    replay = result[7:]
    if origin is None:
        assert replay == (None, None, None, None)
        derived_from = (TOPIC, 1, 5)
    else:
        assert replay == (origin.topic, origin.partition, origin.offset, origin.timestamp_ms * 1000)
        derived_from = (origin.topic, origin.partition, origin.offset)
    if timestamp_us == KAFKA_US:
        assert_judged_like_parse_record(value, result[:7], *derived_from)
    assert result[6] is None or (result[6].isprintable() and result[6].encode("utf-8"))


# --- one hostile batch through Spark -------------------------------------------------------


@pytest.fixture(scope="module")
def spark() -> SparkSession:
    """The connector-enabled local session of the other unit tests, without any server."""
    from jobs.session import local_session
    from orderlog.config import load_settings

    return local_session(load_settings(), "orderlog-tests")


def expected_origin(headers, own: KafkaCoordinates) -> KafkaCoordinates:
    values = [v for k, v in headers or [] if k == REPLAY_HEADER]
    origin = parse_replay_header(values[0]) if len(values) == 1 else None
    return origin or own


# Kafka timestamps outside pandas' nanosecond range (before 1677, after 2262) among them:
# the topic refuses them (orderlog.schema.TOPIC_TIMESTAMP_CONFIGS), the job copes anyway.
KAFKA_TIMES = [KAFKA_TS, datetime(1600, 1, 1, tzinfo=UTC), datetime(2300, 1, 1, tzinfo=UTC),
               datetime(1970, 1, 1, tzinfo=UTC), datetime(2025, 5, 1, 23, 59, 59, 999000, tzinfo=UTC)]


def test_a_batch_of_hostile_records_becomes_rows_of_both_tables_without_a_failed_task(spark: SparkSession):
    batch = hostile_batch(seed=20261125, size=400, topic=TOPIC)
    times = [KAFKA_TIMES[offset % len(KAFKA_TIMES)] for offset in range(len(batch))]
    rows = [
        (key, value, TOPIC, offset % 3, offset, times[offset].replace(tzinfo=None), headers)
        for offset, (key, value, headers) in enumerate(batch)
    ]
    parsed = spark.createDataFrame(rows, KAFKA_SCHEMA).transform(with_parsed)
    # Two Spark jobs: everything the job writes, collected.
    raw = {
        r.kafka_offset: r
        for r in parsed.transform(filter_valid).transform(to_raw_orders, TOKYO)
        .select("order_id", "user_id", "menu_type", "kafka_partition", "kafka_offset").collect()
    }
    rejected = {
        (r.kafka_partition, r.kafka_offset, r.reason): r
        for r in parsed.transform(filter_rejected).transform(to_rejected_events, TOKYO)
        .withColumn("kafka_timestamp_us", F.unix_micros("kafka_timestamp"))
        .drop("reject_date", "rejected_at", "kafka_timestamp").collect()
    }

    assert len(raw) + len(rejected) == len(batch)
    assert raw and len(rejected) > len(batch) // 2  # both kinds are well represented
    for offset, (key, value, headers) in enumerate(batch):
        own = KafkaCoordinates(TOPIC, offset % 3, offset, micros(times[offset]) // 1000)
        origin = expected_origin(headers, own)
        verdict = parse_one(value, origin.topic, origin.partition, origin.offset, times[offset])
        if verdict[6] is None:
            row = raw.pop(origin.offset)
            assert (row.order_id, row.user_id, row.menu_type, row.kafka_partition) == (
                *verdict[:3], origin.partition)
            continue
        row = rejected.pop((origin.partition, origin.offset, verdict[6]))
        assert row.kafka_topic == origin.topic
        assert row.bucket == rejected_bucket_of(origin.offset)
        assert row.kafka_timestamp_us == origin.timestamp_ms * 1000
        assert row.kafka_key == (None if key is None else key[:KEPT_PAYLOAD_BYTES])
        assert row.kafka_key_length == (None if key is None else len(key))
        assert row.raw_value == (None if value is None else value[:KEPT_PAYLOAD_BYTES])
        assert row.raw_length == (None if value is None else len(value))
        assert row.raw_sha256 == (None if value is None else hashlib.sha256(value).hexdigest())
    assert raw == {} and rejected == {}


def test_rejected_rows_keep_at_most_64_kib_of_a_value_with_its_length_and_digest(spark: SparkSession):
    big = b"\x00\xff" * 600_000
    rows = [(b"k" * 100_000, big, TOPIC, 0, 9, KAFKA_TS.replace(tzinfo=None), None)]
    got = (
        spark.createDataFrame(rows, KAFKA_SCHEMA).transform(with_parsed).transform(to_rejected_events, TOKYO)
        .select(F.length("raw_value").alias("kept"), "raw_length", "raw_sha256", F.length("kafka_key").alias("key"),
                "kafka_key_length", "reason")
        .collect()
    )
    assert [tuple(r) for r in got] == [
        (65536, 1_200_000, hashlib.sha256(big).hexdigest(), 65536, 100_000, "record is larger than 4096 bytes")
    ]


def test_the_udf_keeps_every_microsecond_of_times_far_from_1970(spark: SparkSession):
    # Ints beside a None went through float64 in the UDF's frame: 0321-07-19T11:55:13.003999Z
    # came out one microsecond off, and so could a replay header's Kafka time in 9999.
    far = (b'{"user_id": "u", "menu_type": "western", "timestamp": "2025-05-31T12:00:00Z", '
           b'"received_at": "0321-07-19T11:55:13.003999+00:00"}')
    rows = [(None, far, TOPIC, 0, 0, KAFKA_TS.replace(tzinfo=None), [(REPLAY_HEADER, b"t:0:0:253402214399999")]),
            (None, b"{}", TOPIC, 0, 1, KAFKA_TS.replace(tzinfo=None), None)]
    parsed = {row.offset: row.parsed for row in
              spark.createDataFrame(rows, KAFKA_SCHEMA).coalesce(1)  # one UDF call sees both
              .transform(with_parsed).select("offset", "parsed").collect()}
    assert parsed[0].reason is None and parsed[0].received_at_us == -52_020_187_486_996_001
    assert parsed[0].replay_timestamp_us == 253_402_214_399_999_000
    assert parsed[1].reason is not None and parsed[1].received_at_us is None


def test_the_arrow_udf_judges_a_hostile_batch_exactly_as_the_pandas_udf(spark: SparkSession):
    # bench.stream_validation measures parse_records_arrow against the job's pandas UDF: both
    # must be the same rule, field by field, on hostile records and far Kafka times too.
    batch = hostile_batch(seed=20261126, size=300, topic=TOPIC)
    rows = [
        (key, value, TOPIC, offset % 3, offset, KAFKA_TIMES[offset % len(KAFKA_TIMES)].replace(tzinfo=None), headers)
        for offset, (key, value, headers) in enumerate(batch)
    ]
    frame = spark.createDataFrame(rows, KAFKA_SCHEMA)

    def parsed_by(*udf) -> dict:
        return {r.offset: r.parsed for r in frame.transform(with_parsed, *udf).select("offset", "parsed").collect()}

    by_pandas, by_arrow = parsed_by(), parsed_by(parse_records_arrow)
    assert len(by_pandas) == len(batch)
    assert by_arrow == by_pandas
