"""The pure transformations of the streaming job: Kafka records in, table rows out.

Every record is validated by ``orderlog.events.parse_record``, the same function the
ingest API's rules live in, applied through a vectorized (Arrow) pandas UDF: JSON type
checks (a number where a string belongs) cannot be expressed faithfully as Spark
expressions, and a rule written twice would drift.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.functions import pandas_udf

from orderlog.business_day import business_date_col
from orderlog.events import InvalidEvent, derived_order_id, parse_record, printable
from orderlog.layout import RAW_ORDER_BUCKETS, bucket_col

# What the UDF returns for each record: the parsed fields, or the reason it is invalid.
# Times travel as epoch microseconds (int64): pandas' datetime64[ns] cannot hold every
# instant the rules accept (a received_at in the year 9999 is valid).
PARSED_TYPE = T.StructType(
    [
        T.StructField("order_id", T.StringType()),
        T.StructField("user_id", T.StringType()),
        T.StructField("menu_type", T.StringType()),
        T.StructField("ordered_at_us", T.LongType()),
        T.StructField("ordered_at_text", T.StringType()),
        T.StructField("received_at_us", T.LongType()),
        T.StructField("reason", T.StringType()),
    ]
)
PARSED_FIELDS = [f.name for f in PARSED_TYPE.fields]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# A record of MAX_EVENT_BYTES with a thousand unknown keys gets a long reason; keep it readable.
MAX_REASON_CHARS = 2000


def _micros(instant: datetime | None) -> int | None:
    if instant is None:
        return None
    delta = instant - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def parse_one(
    value: bytes | None, topic: str, partition: int, offset: int, kafka_ts: datetime | None
) -> tuple[object, ...]:
    """One record as a PARSED_TYPE tuple. Plain Python, so the unit tests call it too."""
    # "Now" for the future-skew rule is the record's Kafka timestamp (capped by the wall
    # clock), so a replay judges a record exactly as the first run did.
    wall = datetime.now(UTC)
    now = min(kafka_ts, wall) if kafka_ts is not None else wall
    try:
        event = parse_record(value, now=now)
    except InvalidEvent as exc:
        return (None, None, None, None, None, None, printable(str(exc), MAX_REASON_CHARS))
    except Exception as exc:  # noqa: BLE001  a rule's bug must not fail the task: reject, keep the stream going
        reason = f"internal validation error ({type(exc).__name__}); replay the record after the fix"
        return (None, None, None, None, None, None, reason)
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


def _timestamp_as_sent(value: bytes | None) -> str:
    import json

    raw = json.loads(value)["timestamp"]  # type: ignore[arg-type]  # parse_record accepted it
    return raw if isinstance(raw, str) else json.dumps(raw)


def _to_utc(ts: pd.Timestamp) -> datetime | None:
    if pd.isna(ts):
        return None
    ts = ts.tz_localize(UTC) if ts.tzinfo is None else ts.tz_convert(UTC)
    return ts.to_pydatetime()


@pandas_udf(PARSED_TYPE)  # type: ignore[call-overload]
def parse_records(
    value: pd.Series, topic: pd.Series, partition: pd.Series, offset: pd.Series, ts: pd.Series
) -> pd.DataFrame:
    rows = [
        parse_one(v, t, int(p), int(o), _to_utc(k))
        for v, t, p, o, k in zip(value, topic, partition, offset, ts, strict=True)
    ]
    frame = pd.DataFrame.from_records(rows, columns=PARSED_FIELDS)
    # Nullable ints: a column of all-None must not turn into float or object.
    for name in ("ordered_at_us", "received_at_us"):
        frame[name] = frame[name].astype("Int64")
    return frame


def with_parsed(df: DataFrame) -> DataFrame:
    """Adds ``parsed`` (PARSED_TYPE) to Kafka records (value, topic, partition, offset, timestamp)."""
    return df.withColumn(
        "parsed",
        parse_records(F.col("value"), F.col("topic"), F.col("partition"), F.col("offset"), F.col("timestamp")),
    )


def filter_valid(df: DataFrame) -> DataFrame:
    return df.where(F.col("parsed.reason").isNull())


def filter_rejected(df: DataFrame) -> DataFrame:
    return df.where(F.col("parsed.reason").isNotNull())


def _micros_col(name: str) -> Column:
    return F.timestamp_micros(F.col(f"parsed.{name}"))


def to_raw_orders(df: DataFrame, tz: str, ingested_at: Column | None = None) -> DataFrame:
    """raw_orders rows of valid parsed records: keyed by (business date, bucket, order_id)."""
    ordered_at = _micros_col("ordered_at_us")
    return df.select(
        business_date_col(ordered_at, tz).alias("order_date"),
        bucket_col(F.col("parsed.order_id"), RAW_ORDER_BUCKETS).alias("bucket"),
        F.col("parsed.order_id").alias("order_id"),
        F.col("parsed.user_id").alias("user_id"),
        F.col("parsed.menu_type").alias("menu_type"),
        ordered_at.alias("ordered_at"),
        F.col("parsed.ordered_at_text").alias("ordered_at_text"),
        _micros_col("received_at_us").alias("received_at"),
        F.col("partition").cast("int").alias("kafka_partition"),
        F.col("offset").cast("long").alias("kafka_offset"),
        (ingested_at if ingested_at is not None else F.current_timestamp()).alias("ingested_at"),
    )


def to_rejected_events(df: DataFrame, tz: str, rejected_at: Column | None = None) -> DataFrame:
    """rejected_events rows: keyed by the record's Kafka coordinates, dated by its Kafka
    timestamp (not by the payload, which may have none), so a replay overwrites."""
    return df.select(
        business_date_col(F.col("timestamp"), tz).alias("reject_date"),
        F.col("partition").cast("int").alias("kafka_partition"),
        F.col("topic").alias("kafka_topic"),
        F.col("offset").cast("long").alias("kafka_offset"),
        F.col("key").cast("string").alias("kafka_key"),
        F.col("timestamp").alias("kafka_timestamp"),
        F.col("value").alias("raw_value"),
        F.col("parsed.reason").alias("reason"),
        (rejected_at if rejected_at is not None else F.current_timestamp()).alias("rejected_at"),
    )
