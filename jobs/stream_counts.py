"""The per-date counts of a streaming micro-batch (DataFrame -> DataFrame, no I/O).

How many valid orders of each business date, and rejected records of each reject date, a
batch holds: the rows of stream_day_counts are built from them (see orderlog.late_orders).
The dates are the very columns the batch writes (``order_date_col`` of to_raw_orders,
``reject_date_col`` of to_rejected_events), so the counts can never date a record differently.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.stream_transforms import order_date_col, reject_date_col
from orderlog.late_orders import ORDERS, REJECTED


def batch_day_counts(parsed: DataFrame, tz: str) -> DataFrame:
    """(day, kind, records) of parsed Kafka records (``with_parsed``'s output): kind is
    'orders' or 'rejected'. One pass over the parsed rows: a union of a valid and a rejected
    branch would run the validation UDF twice while the batch's cache is still filling."""
    valid = F.col("parsed.reason").isNull()
    return (
        parsed.select(
            F.when(valid, order_date_col(tz)).otherwise(reject_date_col(tz)).alias("day"),
            F.when(valid, F.lit(ORDERS)).otherwise(F.lit(REJECTED)).alias("kind"),
        )
        .groupBy("day", "kind")
        .agg(F.count(F.lit(1)).alias("records"))
    )
