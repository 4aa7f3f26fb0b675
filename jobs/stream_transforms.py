"""The pure transformations of the streaming job: Kafka records in, table rows out.

Every record is judged as ``orderlog.events.parse_record`` judges it, the same function the
ingest API's rules live in. A record in the ingest API's canonical form that the rules
accept is judged in Spark itself by that function's twin, ``with_canonical_event`` (the
common case, kept free of Python); every other record goes to ``parse_record`` itself,
through a vectorized (Arrow) pandas UDF: JSON type checks (a number where a string
belongs) cannot be expressed faithfully as Spark expressions in general, and the twin
never rejects, so every reason comes from the one rule (tests/test_streaming_native.py).

Any record at all becomes a raw_orders row or a rejected_events row: nothing a producer
can put in a key, a value, a header or a timestamp may fail a task (a failed task fails
the query, and every restart would replay the same record and fail again). Hence the UDF
only ever sees bounded inputs of plain types, returns only UTF-8-encodable text, and the
Spark expressions around it are total.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.functions import pandas_udf

from orderlog.business_day import business_date_col
from orderlog.events import (
    MAX_EVENT_BYTES,
    InvalidEvent,
    canonical_event_columns,
    derived_order_id,
    parse_record,
    printable,
    with_columns_in_turn,
)
from orderlog.layout import RAW_ORDER_BUCKETS, bucket_col, rejected_bucket_col
from orderlog.rejected import KEPT_PAYLOAD_BYTES, REPLAY_HEADER, REPLAY_HEADER_MAX_BYTES, parse_replay_header

# What the UDF returns for each record: the parsed fields, or the reason it is invalid,
# and, for a record replayed by tools.rejected, the coordinates of the original record.
# Times travel as epoch microseconds (int64), both ways: no dependence on pandas' timestamp
# resolution (datetime64[ns] cannot hold a received_at in the year 9999, which is valid)
# nor on time zone conversions, and one plain int per record is cheap.
PARSED_TYPE = T.StructType(
    [
        T.StructField("order_id", T.StringType()),
        T.StructField("user_id", T.StringType()),
        T.StructField("menu_type", T.StringType()),
        T.StructField("ordered_at_us", T.LongType()),
        T.StructField("ordered_at_text", T.StringType()),
        T.StructField("received_at_us", T.LongType()),
        T.StructField("reason", T.StringType()),
        T.StructField("replay_topic", T.StringType()),
        T.StructField("replay_partition", T.IntegerType()),
        T.StructField("replay_offset", T.LongType()),
        T.StructField("replay_timestamp_us", T.LongType()),
    ]
)
PARSED_FIELDS = [f.name for f in PARSED_TYPE.fields]
NO_REPLAY = (None, None, None, None)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# A record of MAX_EVENT_BYTES with a thousand unknown keys gets a long reason; keep it readable.
MAX_REASON_CHARS = 2000


def _micros(instant: datetime | None) -> int | None:
    if instant is None:
        return None
    delta = instant - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _from_micros(micros: int | None) -> datetime | None:
    """The instant of epoch microseconds; outside Python's years 1..9999, the nearest end."""
    if micros is None:
        return None
    try:
        return EPOCH + timedelta(microseconds=micros)
    except OverflowError:
        return datetime.min.replace(tzinfo=UTC) if micros < 0 else datetime.max.replace(tzinfo=UTC)


def parse_one(
    value: bytes | None, topic: str, partition: int, offset: int, kafka_ts: datetime | None
) -> tuple[object, ...]:
    """One record as the first seven PARSED_TYPE fields. Plain Python, so the unit tests call it too.

    ``topic``, ``partition`` and ``offset`` are the coordinates an order_id is derived from;
    ``kafka_ts`` is the record's own Kafka timestamp."""
    # "Now" for the future-skew rule is the record's Kafka timestamp (capped by the wall
    # clock), so a replay judges a record exactly as the first run did.
    wall = datetime.now(UTC)
    now = min(kafka_ts, wall) if kafka_ts is not None else wall
    try:
        event = parse_record(value, now=now)
        order_id = event.order_id or derived_order_id(topic, partition, offset)
        return (
            order_id,
            event.user_id,
            event.menu_type,
            _micros(event.timestamp),
            _timestamp_as_sent(value),
            _micros(event.received_at),
            None,
        )
    except InvalidEvent as exc:
        return (None, None, None, None, None, None, printable(str(exc), MAX_REASON_CHARS))
    except Exception as exc:  # noqa: BLE001  a rule's bug must not fail the task: reject, keep the stream going
        reason = f"internal validation error ({type(exc).__name__}); replay the record after the fix"
        return (None, None, None, None, None, None, reason)


def _timestamp_as_sent(value: bytes | None) -> str:
    raw = json.loads(value.decode("utf-8"))["timestamp"]  # type: ignore[union-attr]  # parse_record accepted it
    return raw if isinstance(raw, str) else json.dumps(raw)


def parse_kafka_record(
    value: bytes | None, topic: str, partition: int, offset: int, timestamp_us: int | None,
    replay_header: bytes | None,
) -> tuple[object, ...]:
    """One Kafka record as a PARSED_TYPE tuple: judged by its own timestamp, with the ids
    of the original record when it carries a well-formed REPLAY_HEADER."""
    origin = parse_replay_header(replay_header)
    if origin is None:
        return (*parse_one(value, topic, partition, offset, _from_micros(timestamp_us)), *NO_REPLAY)
    parsed = parse_one(value, origin.topic, origin.partition, origin.offset, _from_micros(timestamp_us))
    return (*parsed, origin.topic, origin.partition, origin.offset, origin.timestamp_ms * 1000)


def _int_or_none(value: object) -> int | None:
    return None if value is None or pd.isna(value) else int(value)  # type: ignore[call-overload]


@pandas_udf(PARSED_TYPE)  # type: ignore[call-overload]
def parse_records(
    value: pd.Series, topic: pd.Series, partition: pd.Series, offset: pd.Series, timestamp_us: pd.Series,
    replay_header: pd.Series, deferred: pd.Series,
) -> pd.DataFrame:
    """parse_kafka_record of each deferred record; a null row for the others (judged in
    Spark, their inputs sent as nulls: next to nothing to convert and carry, and no Python
    work but this one pass over the flags)."""
    columns: list[list[object]] = [[None] * len(deferred) for _ in PARSED_FIELDS]
    values, topics, partitions, offsets, times_us, replay_headers = (
        series.to_numpy(dtype=object) for series in (value, topic, partition, offset, timestamp_us, replay_header))
    for i in np.flatnonzero(deferred.to_numpy(dtype=bool)):
        row = parse_kafka_record(values[i], topics[i], int(partitions[i]), int(offsets[i]), _int_or_none(times_us[i]),
                                 replay_headers[i])
        for column, field in zip(columns, row, strict=True):
            column[i] = field
    # Nullable ints built as such: ints mixed with None would pass through float64 and lose
    # the last digits of a time far from 1970 (a received_at in the year 321, a replay's
    # Kafka time in 9999), and a column of all-None must not turn into float or object.
    return pd.DataFrame({
        name: pd.array(column, dtype="Int64") if name in _INT_FIELDS else pd.Series(column, dtype=object)
        for name, column in zip(PARSED_FIELDS, columns, strict=True)
    })


def _parse_deferred_record(
    value: bytes | None, topic: str, partition: int, offset: int, timestamp_us: int | None,
    replay_header: bytes | None, deferred: bool,
) -> tuple[object, ...] | None:
    """parse_kafka_record of a deferred record, null for the others: the row-at-a-time twin
    of parse_records, for Spark's Arrow-optimized Python UDF (``useArrow=True``)."""
    if not deferred:
        return None
    return parse_kafka_record(value, topic, partition, offset, timestamp_us, replay_header)


# The same rule as parse_records, called once per row with Arrow as the transport instead of
# pandas; measured against it by bench.stream_validation (docs/benchmarks.md).
parse_records_arrow = F.udf(_parse_deferred_record, PARSED_TYPE, useArrow=True)


_INT_FIELDS = frozenset(f.name for f in PARSED_TYPE.fields if isinstance(f.dataType, (T.IntegerType, T.LongType)))


# The column of with_native_verdict: the native verdict of a record, null when deferred.
_NATIVE = "_native_event"


def with_parsed(df: DataFrame, python_udf: Callable[..., Column] | None = None) -> DataFrame:
    """Adds ``parsed`` (PARSED_TYPE) to Kafka records (value, topic, partition, offset,
    timestamp, headers).

    Two paths, one verdict: a record in the ingest API's canonical form that the rules
    accept is judged in Spark itself (``orderlog.events.with_canonical_event``, no Python
    work); every other record (non-canonical, invalid, replayed) goes to ``parse_record``
    through the pandas UDF. One projection, not a split: a filter and its negation would
    read the batch twice and judge every record natively twice (Spark copies the column into
    both branches). The UDF sees every row but gets a deferred record's inputs only.
    ``python_udf`` is the deferred records' UDF (parse_records unless given).

    The streaming sink judges in two steps instead (``with_native_verdict`` on the batch,
    cached; then ``natively_parsed`` and, only when a record was deferred, ``parsed_by_python``):
    a batch of canonical records then never starts a Python worker."""
    return parsed_of_verdict(df.transform(with_native_verdict), python_udf)


def with_native_verdict(df: DataFrame) -> DataFrame:
    """Adds the native verdict (``with_canonical_event``'s struct, null for a record left to
    ``parse_record``) under a column of its own; ``deferred_col`` tells the deferred ones."""
    stages, helpers = _native_verdict_columns()
    return with_columns_in_turn(df, stages, helpers)


# The columns of the sink's steps are built once per process, not once per micro-batch: each
# column is many calls into the JVM, and building a batch's plans took 0.3-0.6 s of it
# (docs/benchmarks.md). A Column is an unresolved expression: any frame can use it.
@functools.cache
def _native_verdict_columns() -> tuple[list[dict[str, Column]], list[str]]:
    # A replay is keyed by its header's coordinates: the UDF's job (parse_kafka_record). Not
    # F.exists: a lambda takes the projection out of whole-stage code generation.
    has_replay_header = F.coalesce(F.array_contains(F.col("headers.key"), REPLAY_HEADER), F.lit(False))
    now = F.least(F.col("timestamp"), F.current_timestamp())
    return canonical_event_columns(_NATIVE, F.col("value"), now, eligible=~has_replay_header)


@functools.cache
def deferred_col() -> Column:
    """True for a record of ``with_native_verdict``'s output that only parse_record can judge."""
    return F.col(_NATIVE).isNull()


def parsed_of_verdict(judged: DataFrame, python_udf: Callable[..., Column] | None = None) -> DataFrame:
    """``with_native_verdict``'s rows with ``parsed``: the native verdict, or parse_record's
    through the UDF for a deferred record (every row passes through the UDF)."""
    deferred = deferred_col()
    by_python = _parsed_by_python(deferred, python_udf or parse_records)
    return judged.withColumn("parsed", F.when(deferred, by_python).otherwise(_native_parsed_col())).drop(_NATIVE)


def natively_parsed(judged: DataFrame) -> DataFrame:
    """The records of ``with_native_verdict``'s output that Spark judged (all accepted), with
    ``parsed``: no Python UDF in the plan."""
    return judged.where(~deferred_col()).withColumn("parsed", _native_parsed_col()).drop(_NATIVE)


@functools.cache
def _native_parsed_col() -> Column:
    return _parsed_of_native(F.col(_NATIVE))


def parsed_by_python(judged: DataFrame, python_udf: Callable[..., Column] | None = None) -> DataFrame:
    """The deferred records of ``with_native_verdict``'s output, with parse_record's ``parsed``."""
    return judged.where(deferred_col()).transform(parsed_of_verdict, python_udf)


def _is_replay_header(header: Column) -> Column:
    return header["key"] == F.lit(REPLAY_HEADER)


def _parsed_of_native(event: Column) -> Column:
    """with_canonical_event's struct as PARSED_TYPE: what parse_kafka_record returns for it."""
    return F.struct(
        event["order_id"].alias("order_id"),
        event["user_id"].alias("user_id"),
        event["menu_type"].alias("menu_type"),
        F.unix_micros(event["timestamp"]).alias("ordered_at_us"),
        event["timestamp_text"].alias("ordered_at_text"),
        F.unix_micros(event["received_at"]).alias("received_at_us"),
        *(F.lit(None).cast(field.dataType).alias(field.name) for field in PARSED_TYPE.fields[6:]),
    )


def _parsed_by_python(deferred: Column, python_udf: Callable[..., Column]) -> Column:
    replay_headers = F.filter(F.col("headers"), _is_replay_header)

    def only_deferred(column: Column) -> Column:
        return F.when(deferred, column)

    return python_udf(
        # A value longer than MAX_EVENT_BYTES is rejected for its length alone, and its
        # first MAX_EVENT_BYTES + 1 bytes get the same verdict: whatever producers send,
        # the UDF's input stays a few KiB a record (10,000 records of 1 MB would not fit
        # an Arrow batch, nor the Python worker's memory).
        only_deferred(F.substring(F.col("value"), 1, MAX_EVENT_BYTES + 1)),
        only_deferred(F.col("topic")),
        F.col("partition"),
        F.col("offset"),
        only_deferred(F.unix_micros(F.col("timestamp"))),
        # Two replay headers are as malformed as a bad one: the record is judged as itself.
        only_deferred(F.when(
            F.size(replay_headers) == 1,
            F.substring(replay_headers[0]["value"], 1, REPLAY_HEADER_MAX_BYTES + 1),
        )),
        deferred,
    )


def filter_valid(df: DataFrame) -> DataFrame:
    return df.where(_valid_col())


@functools.cache
def _valid_col() -> Column:
    return F.col("parsed.reason").isNull()


def filter_rejected(df: DataFrame) -> DataFrame:
    return df.where(F.col("parsed.reason").isNotNull())


def _micros_col(name: str) -> Column:
    return F.timestamp_micros(F.col(f"parsed.{name}"))


def _origin_col(name: str, own: str) -> Column:
    """A coordinate of the original record: the replay header's, else the record's own."""
    return F.coalesce(F.col(f"parsed.replay_{name}"), F.col(own))


def order_date_col(tz: str) -> Column:
    """The business date of a valid parsed record: raw_orders' order_date."""
    return business_date_col(_micros_col("ordered_at_us"), tz)


def _kafka_timestamp_col() -> Column:
    """The original record's Kafka time (a replay's header), else the record's own."""
    return F.coalesce(_micros_col("replay_timestamp_us"), F.col("timestamp"))


def reject_date_col(tz: str) -> Column:
    """The date of a rejected record: the business date of its Kafka time (the payload may
    have no usable time)."""
    return business_date_col(_kafka_timestamp_col(), tz)


def to_raw_orders(df: DataFrame, tz: str, ingested_at: Column | None = None) -> DataFrame:
    """raw_orders rows of valid parsed records: keyed by (business date, bucket, order_id)."""
    if ingested_at is None:
        return df.select(*_raw_order_columns(tz))
    return df.select(*_raw_order_columns_at(tz, ingested_at))


@functools.lru_cache(maxsize=8)
def _raw_order_columns(tz: str) -> list[Column]:
    return _raw_order_columns_at(tz, F.current_timestamp())


def _raw_order_columns_at(tz: str, ingested_at: Column) -> list[Column]:
    ordered_at = _micros_col("ordered_at_us")
    return [
        order_date_col(tz).alias("order_date"),
        bucket_col(F.col("parsed.order_id"), RAW_ORDER_BUCKETS).alias("bucket"),
        F.col("parsed.order_id").alias("order_id"),
        F.col("parsed.user_id").alias("user_id"),
        F.col("parsed.menu_type").alias("menu_type"),
        ordered_at.alias("ordered_at"),
        F.col("parsed.ordered_at_text").alias("ordered_at_text"),
        _micros_col("received_at_us").alias("received_at"),
        _origin_col("partition", "partition").cast("int").alias("kafka_partition"),
        _origin_col("offset", "offset").cast("long").alias("kafka_offset"),
        ingested_at.alias("ingested_at"),
    ]


def to_rejected_events(df: DataFrame, tz: str, rejected_at: Column | None = None) -> DataFrame:
    """rejected_events rows: keyed by the record's Kafka coordinates (the original record's,
    for a replay), dated by its Kafka timestamp (not by the payload, which may have none),
    so a replay overwrites. At most KEPT_PAYLOAD_BYTES of the key and of the value are kept,
    with their full lengths and the value's SHA-256."""
    kafka_timestamp = _kafka_timestamp_col()
    offset = _origin_col("offset", "offset").cast("long")
    return df.select(
        reject_date_col(tz).alias("reject_date"),
        rejected_bucket_col(offset).alias("bucket"),
        _origin_col("topic", "topic").alias("kafka_topic"),
        _origin_col("partition", "partition").cast("int").alias("kafka_partition"),
        offset.alias("kafka_offset"),
        F.substring(F.col("key"), 1, KEPT_PAYLOAD_BYTES).alias("kafka_key"),
        F.length(F.col("key")).alias("kafka_key_length"),
        kafka_timestamp.alias("kafka_timestamp"),
        F.substring(F.col("value"), 1, KEPT_PAYLOAD_BYTES).alias("raw_value"),
        F.length(F.col("value")).alias("raw_length"),
        F.sha2(F.col("value"), 256).alias("raw_sha256"),
        F.col("parsed.reason").alias("reason"),
        (rejected_at if rejected_at is not None else F.current_timestamp()).alias("rejected_at"),
    )
