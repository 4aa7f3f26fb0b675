"""Unit test of the per-date counts of a streaming batch (jobs/stream_counts.py): the dates
are the business dates of the rows the batch writes. Needs only a local SparkSession."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest
from chispa import assert_df_equality
from pyspark.sql import SparkSession
from pyspark.sql import types as T

from jobs.stream_counts import batch_day_counts
from jobs.stream_source import KAFKA_SCHEMA
from jobs.stream_transforms import with_parsed

TOKYO = "Asia/Tokyo"
COUNTS_SCHEMA = T.StructType(
    [
        T.StructField("day", T.DateType()),
        T.StructField("kind", T.StringType()),
        T.StructField("records", T.LongType()),
    ]
)


@pytest.fixture(scope="module")
def spark() -> SparkSession:
    """The connector-enabled local session of the other tests, without starting a server."""
    from jobs.session import local_session
    from orderlog.config import load_settings

    return local_session(load_settings(), "orderlog-tests")


def order(timestamp: str) -> bytes:
    return json.dumps({"user_id": "u-1", "timestamp": timestamp, "menu_type": "japanese"}).encode()


def test_a_batch_is_counted_per_business_date_and_kind(spark: SparkSession) -> None:
    # Kafka times: 2025-05-31T15:30Z is already 2025-06-01 in Tokyo.
    late_evening = datetime(2025, 5, 31, 10, 0, tzinfo=UTC)
    next_morning = datetime(2025, 5, 31, 15, 30, tzinfo=UTC)
    records = [
        (order("2025-05-31T23:59:59+09:00"), late_evening),  # 05-31
        (order("2025-05-31T14:59:59Z"), late_evening),  # 05-31 in Tokyo
        (order("2025-05-31T15:00:00Z"), next_morning),  # 06-01 in Tokyo
        (order("2025-05-20T12:00:00+09:00"), next_morning),  # a late order for 05-20
        (b"{not json", late_evening),  # rejected, dated by its Kafka time: 05-31
        (None, next_morning),  # rejected: 06-01
        (order("2025-05-31T12:00:00"), next_morning),  # no UTC offset: rejected, 06-01
    ]
    batch = spark.createDataFrame(
        [(b"k", value, "t", 0, offset, ts, None) for offset, (value, ts) in enumerate(records)], KAFKA_SCHEMA
    ).transform(with_parsed)

    expected = spark.createDataFrame(
        [
            (date(2025, 5, 31), "orders", 2),
            (date(2025, 6, 1), "orders", 1),
            (date(2025, 5, 20), "orders", 1),
            (date(2025, 5, 31), "rejected", 1),
            (date(2025, 6, 1), "rejected", 2),
        ],
        COUNTS_SCHEMA,
    )
    assert_df_equality(batch_day_counts(batch, TOKYO), expected, ignore_row_order=True, ignore_nullable=True)


def test_an_empty_batch_has_no_counts(spark: SparkSession) -> None:
    empty = spark.createDataFrame([], KAFKA_SCHEMA).transform(with_parsed)
    assert batch_day_counts(empty, TOKYO).collect() == []

