"""Cassandra reads of the nightly aggregate through the connector (each reads only the
partitions it needs), and the deletes the connector cannot do, through the Python driver
with bound parameters. The bookkeeping is jobs/aggregate_ledger.py and
jobs/aggregate_summaries.py; the writes go through jobs/cassandra_io.py."""

from __future__ import annotations

from datetime import date

from cassandra.cluster import Session
from cassandra.concurrent import execute_concurrent_with_args
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.cassandra_io import read_table
from orderlog.business_day import business_hour_col
from orderlog.config import Settings
from orderlog.layout import RAW_ORDER_BUCKETS, USER_DAY_BUCKETS

DELETE_CHUNK = 5000


def read_day(spark: SparkSession, settings: Settings, name: str, day: date, buckets: int) -> DataFrame:
    """The partitions (day, 0..buckets-1) of a table keyed ((date, bucket), ...): the
    predicates cover the whole partition key, so the connector reads just them."""
    return read_table(spark, settings, name).filter(
        (F.col("order_date") == F.lit(day)) & F.col("bucket").isin(list(range(buckets)))
    )


def read_orders(spark: SparkSession, settings: Settings, day: date) -> DataFrame:
    """The day's orders: user, menu type and the business hour of the order's timestamp."""
    return read_day(spark, settings, "raw_orders", day, RAW_ORDER_BUCKETS).select(
        "user_id", "menu_type", business_hour_col(F.col("ordered_at"), settings.business.timezone).alias("hour")
    )


def read_stored_counts(spark: SparkSession, settings: Settings, day: date) -> DataFrame:
    return read_day(spark, settings, "user_daily_counts", day, USER_DAY_BUCKETS).select(
        "user_id", "japanese", "western"
    )


def read_transitions(spark: SparkSession, settings: Settings, days: list[date]) -> DataFrame:
    return (
        read_table(spark, settings, "user_segment_transitions")
        .filter(F.col("order_date").isin(days) & F.col("bucket").isin(list(range(USER_DAY_BUCKETS))))
        .select("order_date", "user_id", "segment_before", "segment_after")
    )


def read_history(spark: SparkSession, settings: Settings, users: DataFrame, years: list[int]) -> DataFrame:
    """Every stored daily count of the given users: a direct join on the partition key
    (user_id, year) of user_daily_history, one partition read per user and year."""
    keys = users.select("user_id", F.explode(F.array(*[F.lit(y) for y in years])).alias("year"))
    history = read_table(spark, settings, "user_daily_history", directJoinSetting="on")
    return keys.join(history, on=["user_id", "year"], how="inner").select(
        "user_id", "order_date", "japanese", "western"
    )


def delete_rows(session: Session, df: DataFrame, name: str, key_columns: list[str]) -> int:
    """Deletes the rows whose full primary keys are the rows of df, from the driver (the
    connector's DataFrame API cannot delete, and executors need no Python driver). The
    rows are few: the users who changed segment (every touched user only on recovery)."""
    return delete_keys(session, [tuple(r) for r in df.select(*key_columns).collect()], name, key_columns)


def delete_keys(session: Session, keys: list[tuple], name: str, key_columns: list[str]) -> int:
    if not keys:
        return 0
    where = " AND ".join(f"{c} = ?" for c in key_columns)
    statement = session.prepare(f"DELETE FROM {name} WHERE {where}")
    for first in range(0, len(keys), DELETE_CHUNK):
        execute_concurrent_with_args(session, statement, keys[first : first + DELETE_CHUNK], concurrency=64)
    return len(keys)
