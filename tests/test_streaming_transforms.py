"""Unit tests of the streaming transforms: parsing and validation of Kafka records with the
shared rules, rejection reasons, business date, order-id derivation, bucket, row shape.

Needs only a local SparkSession (no Kafka, no Cassandra)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime

import pytest
from chispa import assert_df_equality
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs.cassandra_io import short_cause
from jobs.stream_progress import offsets_behind
from jobs.stream_sink import raw_orders_write_options
from jobs.stream_source import KAFKA_SCHEMA
from jobs.stream_transforms import (
    filter_rejected,
    filter_valid,
    parse_one,
    to_raw_orders,
    to_rejected_events,
    with_parsed,
)
from orderlog.events import derived_order_id
from orderlog.layout import RAW_ORDER_BUCKETS, bucket_of, rejected_bucket_of

TOKYO = "Asia/Tokyo"
TOPIC = "orders-t"
KAFKA_TS = datetime(2025, 6, 1, 0, 0, tzinfo=UTC)
JAPANESE_MENU = "menu_type: must be 'japanese' or 'western' (or 和食 / 洋食)"


@pytest.fixture(scope="module")
def spark() -> SparkSession:
    """The same local session as conftest's `spark` (connector jars on the classpath: a JVM
    started without them cannot get them later), but without starting any server."""
    from jobs.session import local_session
    from orderlog.config import load_settings

    session = local_session(load_settings(), "orderlog-tests")
    assert session.conf.get("spark.sql.session.timeZone") == "UTC"
    return session


def record(payload: object) -> bytes:
    return json.dumps(payload, ensure_ascii=False).encode()


def event(**fields: object) -> bytes:
    base = {"user_id": "u-1", "timestamp": "2025-05-31T12:00:00+09:00", "menu_type": "japanese"}
    base.update(fields)
    return record({k: v for k, v in base.items() if v is not ...})


def kafka_df(spark: SparkSession, values: list[bytes | None], ts: datetime = KAFKA_TS):
    rows = [(b"u-1", v, TOPIC, 0, offset, ts.replace(tzinfo=None), None) for offset, v in enumerate(values)]
    return spark.createDataFrame(rows, KAFKA_SCHEMA)


# --- parse_one: the shared rule applied to one record -------------------------------


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "record has no value"),
        (b"\xff\xfe{}", "record is not UTF-8"),
        (b"not json", "record is not JSON (Expecting value)"),
        (b"[1, 2]", "an event must be a JSON object"),
        (b"x" * 5000, "record is larger than 4096 bytes"),
        (event(user_id=...), "user_id: is required"),
        (event(menu_type=...), "menu_type: is required"),
        (event(coupon="x"), "coupon: unknown field"),
        (event(user_id=42), "user_id: must be a string"),
        (event(user_id=""), "user_id: must not be empty"),
        (event(menu_type="chinese"), JAPANESE_MENU),
        (event(menu_type=1), JAPANESE_MENU),
        (event(timestamp="2025-02-30T12:00:00+09:00"), "timestamp: is not a real date and time"),
        (event(timestamp="2025-05-31T12:00:00"), "timestamp: has no UTC offset (add Z or +09:00, for example)"),
        (event(timestamp=True),
         "timestamp: must be an ISO-8601 string with a UTC offset or epoch seconds/milliseconds"),
        (event(timestamp="1999-12-31T23:59:59Z"), "timestamp: is before 2000-01-01"),
        # Judged against the record's Kafka time (2025-06-01T00:00Z), not the wall clock.
        (event(timestamp="2025-06-02T00:00:01Z"), "timestamp: is more than a day in the future"),
        (event(order_id="has space"), "order_id: may contain only letters, digits and . _ : -"),
        (record({"user_id": 1, "menu_type": "x"}),
         f"timestamp: is required; user_id: must be a string; {JAPANESE_MENU}"),
        # Each of these once raised out of the UDF and killed the query for good.
        (event(timestamp=int("1" * 330)), "timestamp: is out of range"),  # OverflowError
        (event(timestamp="1" * 330), "timestamp: is out of range"),
        (b"[" * 3000, "record is not JSON (nested too deeply)"),  # RecursionError
        (b'{"\\ud800": 1}', "\\ud800: unknown field; user_id: is required; timestamp: is required; "
         "menu_type: is required"),  # a lone surrogate Arrow cannot encode
        (b'{"a\\u0007b": 1}', "a\\x07b: unknown field; user_id: is required; timestamp: is required; "
         "menu_type: is required"),
        (event(timestamp=1e308), "timestamp: is out of range"),
    ],
)
def test_invalid_records_get_the_shared_rules_reason(value: bytes | None, reason: str):
    assert parse_one(value, TOPIC, 0, 7, KAFKA_TS) == (None, None, None, None, None, None, reason)


def test_valid_record_keeps_its_order_id_and_canonical_menu():
    value = event(order_id="client-1", menu_type="洋食", received_at="2025-05-31T03:00:00.120+00:00")
    order_id, user, menu, ordered_us, text, received_us, reason = parse_one(value, TOPIC, 2, 9, KAFKA_TS)
    assert (order_id, user, menu, text, reason) == ("client-1", "u-1", "western", "2025-05-31T12:00:00+09:00", None)
    assert ordered_us == int(datetime(2025, 5, 31, 3, tzinfo=UTC).timestamp()) * 1_000_000
    assert received_us == int(datetime(2025, 5, 31, 3, tzinfo=UTC).timestamp()) * 1_000_000 + 120_000


def test_record_without_order_id_gets_the_id_of_its_kafka_coordinates():
    parsed = parse_one(event(), "order-logs", 2, 12345, KAFKA_TS)
    assert parsed[0] == derived_order_id("order-logs", 2, 12345) == "kafka:order-logs:2:12345"


def test_epoch_timestamp_is_kept_as_sent():
    parsed = parse_one(event(timestamp=1748703599), TOPIC, 0, 1, KAFKA_TS)
    assert parsed[3] == 1748703599 * 1_000_000
    assert parsed[4] == "1748703599"


def test_future_skew_uses_the_wall_clock_when_the_kafka_time_is_later():
    # A producer stamping records far ahead must not widen the window.
    far = datetime(2999, 1, 1, tzinfo=UTC)
    assert parse_one(event(timestamp="2998-01-01T00:00:00Z"), TOPIC, 0, 1, far)[6] == (
        "timestamp: is more than a day in the future"
    )


# --- the DataFrame transforms ------------------------------------------------------------


RAW_SCHEMA = T.StructType(
    [
        T.StructField("order_date", T.DateType()),
        T.StructField("bucket", T.ShortType()),
        T.StructField("order_id", T.StringType()),
        T.StructField("user_id", T.StringType()),
        T.StructField("menu_type", T.StringType()),
        T.StructField("ordered_at", T.TimestampType()),
        T.StructField("ordered_at_text", T.StringType()),
        T.StructField("received_at", T.TimestampType()),
        T.StructField("kafka_partition", T.IntegerType()),
        T.StructField("kafka_offset", T.LongType()),
        T.StructField("ingested_at", T.TimestampType()),
    ]
)
INGESTED = datetime(2025, 6, 1, 1, 0)


def test_raw_orders_rows_business_date_around_midnight_and_offsets(spark: SparkSession):
    values = [
        event(order_id="a", timestamp="2025-05-31T23:59:59+09:00"),  # Tokyo 05-31
        event(order_id="b", timestamp="2025-05-31T15:00:00Z"),  # Tokyo 06-01 00:00
        event(order_id="c", timestamp="2025-05-31T14:59:59.999Z"),  # Tokyo 05-31 23:59:59.999
        event(order_id="d", timestamp="2025-05-31T08:00:00-07:00"),  # Tokyo 06-01 00:00
        event(timestamp="2025-05-31T00:00:00+09:00", menu_type="和食"),  # derived id
        b"not json",  # the edge row: rejected, absent from raw_orders
    ]
    got = (
        kafka_df(spark, values)
        .transform(with_parsed)
        .transform(filter_valid)
        .transform(to_raw_orders, TOKYO, F.lit(INGESTED))
    )

    def row(order_id, day, at, text, offset):
        return (day, bucket_of(order_id, RAW_ORDER_BUCKETS), order_id, "u-1", "japanese", at, text, None, 0, offset,
                INGESTED)

    expected = spark.createDataFrame(
        [
            row("a", date(2025, 5, 31), datetime(2025, 5, 31, 14, 59, 59), "2025-05-31T23:59:59+09:00", 0),
            row("b", date(2025, 6, 1), datetime(2025, 5, 31, 15, 0, 0), "2025-05-31T15:00:00Z", 1),
            row("c", date(2025, 5, 31), datetime(2025, 5, 31, 14, 59, 59, 999000), "2025-05-31T14:59:59.999Z", 2),
            row("d", date(2025, 6, 1), datetime(2025, 5, 31, 15, 0, 0), "2025-05-31T08:00:00-07:00", 3),
            row(f"kafka:{TOPIC}:0:4", date(2025, 5, 31), datetime(2025, 5, 30, 15, 0, 0),
                "2025-05-31T00:00:00+09:00", 4),
        ],
        RAW_SCHEMA,
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_bucket_in_spark_equals_the_python_rule(spark: SparkSession):
    values = [event(order_id=i) for i in ("a", "b.c", "Z-9_x:1", "x" * 64)] + [event()]
    got = (
        kafka_df(spark, values)
        .transform(with_parsed)
        .transform(to_raw_orders, TOKYO)
        .select("order_id", "bucket")
        .collect()
    )
    assert len(got) == 5
    assert {r.order_id: r.bucket for r in got} == {r.order_id: bucket_of(r.order_id, RAW_ORDER_BUCKETS) for r in got}


REJECTED_SCHEMA = T.StructType(
    [
        T.StructField("reject_date", T.DateType()),
        T.StructField("bucket", T.ShortType()),
        T.StructField("kafka_topic", T.StringType()),
        T.StructField("kafka_partition", T.IntegerType()),
        T.StructField("kafka_offset", T.LongType()),
        T.StructField("kafka_key", T.BinaryType()),
        T.StructField("kafka_key_length", T.IntegerType()),
        T.StructField("kafka_timestamp", T.TimestampType()),
        T.StructField("raw_value", T.BinaryType()),
        T.StructField("raw_length", T.IntegerType()),
        T.StructField("raw_sha256", T.StringType()),
        T.StructField("reason", T.StringType()),
        T.StructField("rejected_at", T.TimestampType()),
    ]
)


def test_rejected_rows_are_dated_by_the_kafka_timestamp_in_the_business_zone(spark: SparkSession):
    # 2025-05-31T15:30Z is 2025-06-01 in Tokyo.
    kafka_ts = datetime(2025, 5, 31, 15, 30, tzinfo=UTC)
    values = [b"\xff", event(menu_type="chinese"), None, event()]
    got = (
        kafka_df(spark, values, kafka_ts)
        .transform(with_parsed)
        .transform(filter_rejected)
        .transform(to_rejected_events, TOKYO, F.lit(INGESTED))
    )
    naive = kafka_ts.replace(tzinfo=None)

    def row(offset, value, reason):
        length, digest = (None, None) if value is None else (len(value), hashlib.sha256(value).hexdigest())
        return (date(2025, 6, 1), rejected_bucket_of(offset), TOPIC, 0, offset, bytearray(b"u-1"), 3, naive,
                None if value is None else bytearray(value), length, digest, reason, INGESTED)

    expected = spark.createDataFrame(
        [row(0, b"\xff", "record is not UTF-8"), row(1, values[1], JAPANESE_MENU), row(2, None, "record has no value")],
        REJECTED_SCHEMA,
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_received_at_far_in_the_future_does_not_break_the_batch(spark: SparkSession):
    # received_at has no range rule; the year 9999 overflows pandas' nanosecond timestamps.
    rows = (
        kafka_df(spark, [event(received_at="9999-12-31T23:59:59Z")])
        .transform(with_parsed)
        .transform(to_raw_orders, TOKYO)
        .select("received_at")
        .collect()
    )
    assert rows[0].received_at == datetime(9999, 12, 31, 23, 59, 59)


def test_offsets_behind_sums_latest_minus_processed_per_partition():
    latest = json.dumps({"t": {"0": 100, "1": 50, "2": 7}})
    end = json.dumps({"t": {"0": 90, "1": 50, "2": 0}})
    assert offsets_behind(latest, end) == 17
    assert offsets_behind(None, end) is None


def test_a_bad_stream_variable_names_itself(monkeypatch, capsys):
    from jobs.streaming import main

    monkeypatch.setenv("ORDERLOG_STREAM_MAX_OFFSETS_PER_TRIGGER", "lots")
    with pytest.raises(SystemExit) as stopped:
        main([])
    assert stopped.value.code == 2
    assert capsys.readouterr().err == (
        "streaming: error: ORDERLOG_STREAM_MAX_OFFSETS_PER_TRIGGER='lots': expected a whole number of at least 1\n"
    )
    monkeypatch.setenv("ORDERLOG_STREAM_MAX_OFFSETS_PER_TRIGGER", "7")
    from jobs.streaming import parse_args
    from orderlog.config import load_settings

    assert parse_args([], load_settings()).max_offsets_per_trigger == 7
    assert parse_args(["--max-offsets-per-trigger", "9"], load_settings()).max_offsets_per_trigger == 9


def test_short_cause_picks_the_java_exception_out_of_a_py4j_error():
    trace = (
        "An error occurred while calling o208.save.\n"
        ": java.lang.IllegalStateException: Control channel not available, aborting schema refresh\n"
        "\tat com.datastax.oss.driver.internal.core.metadata.MetadataManager.refreshSchema(...)"
    )
    assert short_cause(Exception(trace)) == "Control channel not available"
    assert short_cause(Exception(trace.replace("Control channel not available", "Boom"))) == (
        "java.lang.IllegalStateException: Boom, aborting schema refresh"
    )
    assert short_cause(ValueError("plain")) == "plain"


def test_raw_orders_write_batches_by_partition_unless_the_session_says_otherwise():
    assert raw_orders_write_options({"spark.app.name": "x"}) == {
        "spark.cassandra.output.batch.size.bytes": "16384",
        "spark.cassandra.output.concurrent.writes": "16",
    }
    # An operator's --conf is the session's: a write option would silently override it.
    assert raw_orders_write_options({"spark.cassandra.output.concurrent.writes": "4"}) == {
        "spark.cassandra.output.batch.size.bytes": "16384",
    }
