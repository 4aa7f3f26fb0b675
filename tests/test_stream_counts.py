"""Unit test of the per-date counts of a streaming batch (jobs/stream_counts.py): the dates
are the business dates of the rows the batch writes. Needs only a local SparkSession."""

from __future__ import annotations

import json
import threading
from datetime import UTC, date, datetime

import hypothesis
import pytest
from chispa import assert_df_equality
from hypothesis import given
from hypothesis import strategies as st
from pyspark.sql import SparkSession
from pyspark.sql import types as T

from jobs.stream_counts import (
    MAX_EXPECTED_DATES,
    batch_day_counts,
    counts_of_metrics,
    day_count_metrics,
    expected_dates,
    with_count_day,
)
from jobs.stream_sink import observed_values
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



# --- the counts observed on the raw_orders write (day_count_metrics) ----------------------


def observed_counts(batch: object, expected: list[date] | None = None) -> list | None:
    """What the streaming sink gets from the write's observation: the same aggregates."""
    counted = batch.transform(with_count_day, TOKYO)  # type: ignore[attr-defined]
    metrics = counted.agg(*day_count_metrics(expected or [])).first().asDict()
    return counts_of_metrics(metrics, expected or [])


def grouped_counts(batch: object) -> set:
    return {(r["day"], r["kind"], r["records"]) for r in batch_day_counts(batch, TOKYO).collect()}  # type: ignore[arg-type]


def kafka_batch(spark: SparkSession, records: list[tuple[bytes | None, datetime]]) -> object:
    return spark.createDataFrame(
        [(b"k", value, "t", 0, offset, ts, None) for offset, (value, ts) in enumerate(records)], KAFKA_SCHEMA
    ).transform(with_parsed)


def test_observed_counts_of_a_one_date_batch_are_the_grouped_counts(spark: SparkSession) -> None:
    evening = datetime(2025, 5, 31, 10, 0, tzinfo=UTC)
    batch = kafka_batch(spark, [(order("2025-05-31T20:00:00+09:00"), evening)] * 3 + [(b"{not json", evening)] * 2)
    assert set(observed_counts(batch)) == grouped_counts(batch) == {
        (date(2025, 5, 31), "orders", 3), (date(2025, 5, 31), "rejected", 2)}
    assert observed_counts(kafka_batch(spark, [])) == []


# Orders of up to three dates (some not valid), rejected records of up to two Kafka dates.
ORDER_TIMES = st.sampled_from(["2025-05-31T20:00:00+09:00", "2025-05-31T15:00:00Z", "2025-05-20T12:00:00+09:00",
                               "2025-05-31T12:00:00"])
KAFKA_TIMES = st.sampled_from([datetime(2025, 5, 31, 10, 0, tzinfo=UTC), datetime(2025, 5, 31, 15, 30, tzinfo=UTC)])
RECORDS = st.lists(st.tuples(st.one_of(ORDER_TIMES.map(order), st.just(b"{not json"), st.none()), KAFKA_TIMES),
                   max_size=12)


DATES = [date(2025, 5, 20), date(2025, 5, 31), date(2025, 6, 1), date(2025, 6, 2)]


@hypothesis.settings(max_examples=25, deadline=None, suppress_health_check=[hypothesis.HealthCheck.too_slow])
@given(records=RECORDS, expected=st.lists(st.sampled_from(DATES), max_size=4))
def test_observed_counts_are_the_grouped_counts_or_defer_to_them(spark: SparkSession, records: list,
                                                                 expected: list) -> None:
    batch = kafka_batch(spark, records)
    grouped = grouped_counts(batch)
    observed = observed_counts(batch, expected)
    dates_per_kind = {kind: {day for day, k, _ in grouped if k == kind} for kind in ("orders", "rejected")}
    if observed is None:  # only when a kind spans several dates, not all of them expected
        assert any(len(days) > 1 and not days <= set(expected) for days in dates_per_kind.values()), grouped
    else:
        assert set(observed) == grouped and len(observed) == len(grouped)


def test_the_expected_dates_are_today_its_neighbours_and_the_last_batch_s() -> None:
    today = date(2025, 6, 1)
    assert expected_dates(today, []) == [date(2025, 6, 2), today, date(2025, 5, 31)]
    assert expected_dates(today, [date(2025, 5, 20), None]) == [
        date(2025, 6, 2), today, date(2025, 5, 31), date(2025, 5, 21), date(2025, 5, 20)]
    replayed_month = [date(2025, 4, d) for d in range(1, 31)]
    assert len(expected_dates(today, replayed_month)) == MAX_EXPECTED_DATES


class _Observation:
    def __init__(self, behaviour: str):
        self.behaviour = behaviour

    @property
    def get(self) -> dict:
        if self.behaviour == "hangs":
            threading.Event().wait()
        if self.behaviour == "fails":
            raise RuntimeError("py4j went away")
        return {"orders_records": 1}


def test_observed_values_never_wait_for_ever() -> None:
    assert observed_values(_Observation("answers"), 5.0) == {"orders_records": 1}
    assert observed_values(_Observation("fails"), 5.0) is None
    assert observed_values(_Observation("hangs"), 0.2) is None  # the sink then groups the cached rows
