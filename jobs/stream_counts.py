"""The per-date counts of a streaming micro-batch (DataFrame -> DataFrame, no I/O).

How many valid orders of each business date, and rejected records of each reject date, a
batch holds: the rows of stream_day_counts are built from them (see orderlog.late_orders).
The dates are taken from the very rows the batch writes (to_raw_orders' order_date,
to_rejected_events' reject_date), so the counts can never date a record differently.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.stream_transforms import filter_rejected, filter_valid, to_raw_orders, to_rejected_events
from orderlog.late_orders import ORDERS, REJECTED


def batch_day_counts(parsed: DataFrame, tz: str) -> DataFrame:
    """(day, kind, records) of parsed Kafka records (``with_parsed``'s output): kind is
    'orders' or 'rejected'. One small aggregate; both branches read the same parsed rows."""
    orders = (
        parsed.transform(filter_valid)
        .transform(to_raw_orders, tz)
        .select(F.col("order_date").alias("day"), F.lit(ORDERS).alias("kind"))
    )
    rejected = (
        parsed.transform(filter_rejected)
        .transform(to_rejected_events, tz)
        .select(F.col("reject_date").alias("day"), F.lit(REJECTED).alias("kind"))
    )
    return orders.unionByName(rejected).groupBy("day", "kind").agg(F.count(F.lit(1)).alias("records"))
