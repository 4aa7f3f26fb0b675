"""Late orders: orders that reach raw_orders after their business date was aggregated.

The streaming job keeps, per business date, how many records it has written
(``stream_day_counts``, one row per streaming query, no counters); each successful aggregate
run records the date's total as it read it *before* reading raw_orders
(``aggregated_dates.records_seen``). Because the streaming job writes raw_orders before the
totals, every record in ``records_seen`` was in raw_orders when the run read it: a date is
late exactly when its total has grown past that (no clock is compared across hosts).

The totals count records, not distinct orders: a client's retry of the same order, or a
replay of the topic from a new checkpoint, counts again. So a late figure is an upper bound,
and at worst a date is redone for nothing (the aggregate is idempotent).

Plain Python: the streaming job, the aggregate and the viewer all use these rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime

# The kinds of records stream_day_counts keeps apart.
ORDERS = "orders"
REJECTED = "rejected"

# Why the aggregate ran a date (aggregate_runs.trigger).
REQUESTED = "requested"  # --date / --from --to
NIGHTLY = "nightly"  # yesterday, in a run without dates
LATE = "late-orders"  # an earlier date that received orders after its last run
RECOVERY = "recovery"  # a date whose previous run did not finish


@dataclass(frozen=True)
class StreamCount:
    """A stream_day_counts row's figures for one (day, kind, query)."""

    records: int  # through batch_id
    records_before: int  # before batch_id
    batch_id: int


def merge_batch_count(stored: StreamCount | None, batch_id: int, count: int) -> StreamCount:
    """The row after batch ``batch_id`` wrote ``count`` more records of its day and kind.

    A batch that is replayed (it ran, but Spark did not commit it before a crash) is the
    batch the row was last written by: its total is recomputed from ``records_before``
    instead of added again. Only one streaming query writes a row (its id is in the key),
    so this read-modify-write has no concurrent writer."""
    if stored is None:
        return StreamCount(count, 0, batch_id)
    if stored.batch_id == batch_id:
        return StreamCount(stored.records_before + count, stored.records_before, batch_id)
    return StreamCount(stored.records + count, stored.records, batch_id)


def late_orders(stream_total: int, records_seen: int | None) -> int:
    """Records of a date that arrived after its last successful run (all of them when no
    run of it succeeded)."""
    return max(0, stream_total - (records_seen or 0))


@dataclass(frozen=True)
class LastRun:
    """An aggregated_dates row: the last successful run of a date and what it saw."""

    run_id: object
    started_at: datetime | None
    finished_at: datetime | None
    records_seen: int


@dataclass(frozen=True)
class PlannedDate:
    day: date
    trigger: str
    why: str


def utc_text(instant: datetime | None) -> str:
    """A driver timestamp (naive UTC) as log text."""
    return "an unknown time" if instant is None else f"{instant:%Y-%m-%d %H:%M:%S} UTC"


def nightly_dates(
    stream_totals: Mapping[date, int], last_runs: Mapping[date, LastRun], yesterday: date
) -> list[PlannedDate]:
    """The dates of a run without dates: every date before yesterday whose stream total
    exceeds what its last successful run saw (or that has records and no successful run),
    oldest first, then yesterday itself. Today and later dates are still receiving orders."""
    planned = []
    for day in sorted(d for d in stream_totals if d < yesterday):
        last = last_runs.get(day)
        late = late_orders(stream_totals[day], last.records_seen if last else None)
        if not late:
            continue
        if last is None:
            why = f"{late} orders arrived and no successful run of it is recorded"
        else:
            why = f"{late} orders arrived after its last run (started {utc_text(last.started_at)})"
        planned.append(PlannedDate(day, LATE, why))
    return planned + [PlannedDate(yesterday, NIGHTLY, "yesterday")]


def requested_dates(days: list[date]) -> list[PlannedDate]:
    return [PlannedDate(d, REQUESTED, "requested") for d in days]


def with_recovery(pending: Mapping[date, object], planned: list[PlannedDate]) -> list[PlannedDate]:
    """Dates a crashed run left unfinished come first, in date order, and are not run again
    after them."""
    first = [PlannedDate(d, RECOVERY, "its last run did not finish; redone first") for d in sorted(pending)]
    return first + [p for p in planned if p.day not in pending]
