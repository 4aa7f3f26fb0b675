"""The per-date counts of a streaming micro-batch (DataFrame -> DataFrame, no I/O).

How many valid orders of each business date, and rejected records of each reject date, a
batch holds: the rows of stream_day_counts are built from them (see orderlog.late_orders).
The dates are the very columns the batch writes (``order_date_col`` of to_raw_orders,
``reject_date_col`` of to_rejected_events), so the counts can never date a record differently.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, timedelta
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.stream_transforms import order_date_col, reject_date_col
from orderlog.late_orders import ORDERS, REJECTED


def counted_day_col(tz: str) -> Column:
    """The date a parsed record is counted under: an order's business date, else (rejected)
    the business date of its Kafka time."""
    return F.when(F.col("parsed.reason").isNull(), order_date_col(tz)).otherwise(reject_date_col(tz))


def batch_day_counts(parsed: DataFrame, tz: str) -> DataFrame:
    """(day, kind, records) of parsed Kafka records (``with_parsed``'s output): kind is
    'orders' or 'rejected'. One pass over the parsed rows: a union of a valid and a rejected
    branch would run the validation UDF twice while the batch's cache is still filling."""
    valid = F.col("parsed.reason").isNull()
    return (
        parsed.select(
            counted_day_col(tz).alias("day"),
            F.when(valid, F.lit(ORDERS)).otherwise(F.lit(REJECTED)).alias("kind"),
        )
        .groupBy("day", "kind")
        .agg(F.count(F.lit(1)).alias("records"))
    )


EPOCH = date(1970, 1, 1)
# (day, kind, records) of a batch: what stream_day_counts is written from.
DayCounts = list[tuple[date | None, str, int]]


COUNT_DAY, COUNT_VALID = "count_day", "count_valid"


def with_count_day(parsed: DataFrame, tz: str) -> DataFrame:
    """Parsed records with the day each is counted under, as days since 1970 (an observed
    value reaches Python as a plain number), and whether it is an order: computed once per
    record, not once per aggregate of ``day_count_metrics``."""
    return parsed.withColumns(_count_day_columns(tz))


# Built once, not once per micro-batch (like the sink's other columns: jobs/stream_transforms.py).
@functools.lru_cache(maxsize=8)
def _count_day_columns(tz: str) -> dict[str, Column]:
    return {COUNT_VALID: F.col("parsed.reason").isNull(), COUNT_DAY: F.datediff(counted_day_col(tz), F.lit(EPOCH))}


def day_count_metrics(expected: Sequence[date] = ()) -> list[Column]:
    """The batch's counts as aggregates of ``with_count_day``'s columns that ride on its
    write (``DataFrame.observe``: no Spark job of their own): per kind, its records, those
    without a date, those of each ``expected`` date, and its first and last date.
    ``counts_of_metrics`` turns them into ``batch_day_counts``' rows when they account for
    every record: a kind of one date, or of expected dates only (the usual micro-batch:
    today's and yesterday's orders)."""
    return list(_day_count_metrics(tuple(dict.fromkeys(expected))))


@functools.lru_cache(maxsize=32)  # the expected dates change once a day, or when a stream catches up
def _day_count_metrics(expected: tuple[date, ...]) -> list[Column]:
    day = F.col(COUNT_DAY)
    metrics = []
    for kind, of_kind in ((ORDERS, F.col(COUNT_VALID)), (REJECTED, ~F.col(COUNT_VALID))):
        metrics += [
            F.count_if(of_kind).alias(f"{kind}_records"),
            F.count_if(of_kind & day.isNull()).alias(f"{kind}_undated"),
            F.min(F.when(of_kind, day)).alias(f"{kind}_first"),
            F.max(F.when(of_kind, day)).alias(f"{kind}_last"),
            *(F.count_if(of_kind & (day == F.lit((d - EPOCH).days))).alias(f"{kind}_on_{d.isoformat()}")
              for d in expected),
        ]
    return metrics


def counts_of_metrics(metrics: Mapping[str, Any], expected: Sequence[date] = ()) -> DayCounts | None:
    """``batch_day_counts``' rows from ``day_count_metrics``' values, or None when they do
    not account for every record (a kind over several dates not all expected)."""
    counts: DayCounts = []
    for kind in (ORDERS, REJECTED):
        first, last = metrics[f"{kind}_first"], metrics[f"{kind}_last"]
        records, undated = int(metrics[f"{kind}_records"] or 0), int(metrics[f"{kind}_undated"] or 0)
        if undated:
            counts.append((None, kind, undated))
        if first == last:
            if records > undated:
                counts.append((EPOCH + timedelta(days=int(first)), kind, records - undated))
            continue
        on_expected = [(d, int(metrics[f"{kind}_on_{d.isoformat()}"] or 0)) for d in dict.fromkeys(expected)]
        if sum(n for _, n in on_expected) != records - undated:
            return None
        counts += [(d, kind, n) for d, n in on_expected if n]
    return counts


def summed_day_counts(*parts: DayCounts) -> DayCounts:
    """The counts of a batch written in parts (its natively judged records, then its
    deferred ones): one row per (day, kind), the records of every part added up."""
    total: dict[tuple[date | None, str], int] = {}
    for counts in parts:
        for day, kind, records in counts:
            total[(day, kind)] = total.get((day, kind), 0) + records
    return [(day, kind, records) for (day, kind), records in total.items()]


# Expected dates of a batch's counts at most (each adds two aggregates to the write).
MAX_EXPECTED_DATES = 8


def expected_dates(today: date, previous: Iterable[date | None]) -> list[date]:
    """The dates a batch's records most likely fall on: the business day, the days around
    it (midnight, clocks of the clients), the previous batch's dates and the day after its
    last (a stream that runs behind moves on one date at a time); the newest first, at most
    MAX_EXPECTED_DATES."""
    seen = [d for d in previous if d is not None]
    candidates = {today, today - timedelta(days=1), today + timedelta(days=1), *seen}
    if seen:
        candidates.add(max(seen) + timedelta(days=1))
    return sorted(candidates, reverse=True)[:MAX_EXPECTED_DATES]
