"""What the status page (/status, /api/status_overview) reads, as plain values: the stream's
progress as the streaming job persists it (stream_progress), and a fixed window of days of
stream totals, daily summaries, late orders, rejected records and aggregate runs.

Every read is bounded: one stream_progress partition with a LIMIT, the year partitions of
STATUS_DAYS dates, a few rejected samples of a few dates, and a LIMIT on the run ledger.
The late-order rule is orderlog.late_orders' own (the nightly run's plan), not restated.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from orderlog.business_day import date_range, shift_days
from orderlog.late_orders import LATE, ORDERS, REJECTED, LastRun, late_orders, nightly_dates
from viewer import queries
from viewer.db import Store

# The window of days the page shows, up to its last date (today by default).
STATUS_DAYS = 14
# Streaming queries of the topic shown (a new checkpoint is a new query; the newest first).
STREAM_QUERIES = 10
# Aggregate runs of the window's dates read from the ledger, and shown (the newest first).
RUNS_READ, RUNS_SHOWN = 100, 10
# Dates of the window with rejected records that get sample reasons (the newest), and how many.
REJECTED_SAMPLE_DAYS, REJECTED_SAMPLES = 3, 3
# No word from the streaming job for this long (no batch, not even an idle report, which
# Spark sends about every 10 s): the page says the job may not be running.
SILENT_AFTER_SECONDS = 300

# What the page says of the stream, from its newest query's row.
NO_PROGRESS, SILENT, BEHIND, CAUGHT_UP = "no_progress", "silent", "behind", "caught_up"
STREAM_STATES = (NO_PROGRESS, SILENT, BEHIND, CAUGHT_UP)


@dataclass(frozen=True)
class StreamQueryProgress:
    """One stream_progress row: the last batch of a streaming query."""

    query_id: str
    run_id: str | None
    batch_id: int | None
    batch_at: datetime | None
    batch_duration_ms: int | None
    input_rows: int | None
    input_rows_per_second: float | None
    processed_rows_per_second: float | None
    offsets_behind: dict[int, int]
    rows_valid: int | None
    rows_rejected: int | None
    written_at: datetime | None
    idle_at: datetime | None

    @property
    def behind(self) -> int:
        return sum(self.offsets_behind.values())

    @property
    def last_heard_at(self) -> datetime | None:
        """When the job last said anything of this query: a batch, or an idle report."""
        instants = [t for t in (self.written_at, self.idle_at) if t is not None]
        return max(instants) if instants else None

    def seconds_since(self, now: datetime) -> float | None:
        heard = self.last_heard_at
        return None if heard is None else max(0.0, (now - heard).total_seconds())

    def to_json(self, now: datetime) -> dict[str, Any]:
        since = self.seconds_since(now)
        return {
            "query_id": self.query_id,
            "run_id": self.run_id,
            "batch_id": self.batch_id,
            "batch_at": queries.iso(self.batch_at),
            "batch_duration_ms": self.batch_duration_ms,
            "input_rows": self.input_rows,
            "input_rows_per_second": self.input_rows_per_second,
            "processed_rows_per_second": self.processed_rows_per_second,
            "offsets_behind": {str(p): n for p, n in sorted(self.offsets_behind.items())},
            "offsets_behind_total": self.behind,
            "rows_valid": self.rows_valid,
            "rows_rejected": self.rows_rejected,
            "idle_at": queries.iso(self.idle_at),
            "last_heard_at": queries.iso(self.last_heard_at),
            "seconds_since_last_heard": None if since is None else round(since, 1),
        }


@dataclass(frozen=True)
class DayStatus:
    date: date
    ingested: int  # valid records the streaming job wrote for the date (an upper bound of orders)
    aggregated: int | None  # the daily summary's total; None: not aggregated
    late: int  # records that arrived after the date's last successful run (0 when none ran)
    rejected: int
    reasons: list[str]  # a few sample reasons (escaped), for the newest dates with rejections

    def to_json(self) -> dict[str, Any]:
        return {"date": self.date.isoformat(), "ingested": self.ingested, "aggregated": self.aggregated,
                "late_orders": self.late, "rejected": self.rejected, "rejected_reasons": self.reasons}


@dataclass(frozen=True)
class WaitingDate:
    date: date
    late: int
    why: str  # the job's own words (its logs, the JSON); the page says it in its language
    last_run_started: datetime | None  # None: no successful run of the date is recorded
    has_run: bool

    def to_json(self) -> dict[str, Any]:
        return {"date": self.date.isoformat(), "late_orders": self.late, "why": self.why}


@dataclass(frozen=True)
class StatusOverview:
    first: date
    last: date
    now: datetime
    stream: list[StreamQueryProgress]  # newest first
    days: list[DayStatus]  # newest first
    waiting: list[WaitingDate]  # oldest first
    runs: list[dict[str, Any]]  # newest first

    @property
    def stream_state(self) -> str:
        return stream_state(self.stream, self.now)


def stream_state(stream: list[StreamQueryProgress], now: datetime) -> str:
    """What the page says first: no progress recorded, the job silent, behind, or caught up
    (from the query the job last heard from)."""
    if not stream:
        return NO_PROGRESS
    newest = stream[0]
    since = newest.seconds_since(now)
    if since is None or since > SILENT_AFTER_SECONDS:
        return SILENT
    return BEHIND if newest.behind else CAUGHT_UP


def _progress(row: Any) -> StreamQueryProgress:
    return StreamQueryProgress(
        query_id=row.query_id, run_id=row.run_id, batch_id=row.batch_id, batch_at=queries._utc(row.batch_at),
        batch_duration_ms=row.batch_duration_ms, input_rows=row.input_rows,
        input_rows_per_second=row.input_rows_per_second, processed_rows_per_second=row.processed_rows_per_second,
        offsets_behind={int(p): int(n) for p, n in (row.offsets_behind or {}).items()},
        rows_valid=row.rows_valid, rows_rejected=row.rows_rejected, written_at=queries._utc(row.written_at),
        idle_at=queries._utc(row.idle_at),
    )


def stream_progress(store: Store, topic: str) -> list[StreamQueryProgress]:
    rows = [_progress(r) for r in store.execute("stream_progress_of_topic", (topic, STREAM_QUERIES))]
    epoch = datetime.min.replace(tzinfo=UTC)
    return sorted(rows, key=lambda p: p.last_heard_at or epoch, reverse=True)


def status_overview(store: Store, topic: str, last: date, now: datetime) -> StatusOverview:
    """The page's figures for the STATUS_DAYS dates up to ``last``; ``now`` is the present
    (for "how long ago"), and ``last`` is also the dates' "today" for the nightly plan."""
    first = shift_days(last, -(STATUS_DAYS - 1))
    years = list(range(first.year, last.year + 1))
    totals = [store.execute_async("stream_totals_between", (y, first, last)) for y in years]
    summaries = [store.execute_async("summaries_between", (y, first, last)) for y in years]
    last_runs = [store.execute_async("last_runs_between", (y, first, last)) for y in years]
    runs = [store.execute_async("runs_between", (y, first, last, RUNS_READ)) for y in years]
    stream = stream_progress(store, topic)

    stream_totals = {kind: dict.fromkeys(date_range(first, last), 0) for kind in (ORDERS, REJECTED)}
    for f in totals:
        for row in f.result():
            if row.kind in stream_totals:
                stream_totals[row.kind][queries._date(row.day)] += queries._int(row.records)  # type: ignore[index]
    aggregated = {s.date: s.total for f in summaries for s in map(queries._summary, f.result())}
    seen = {
        queries._date(r.order_date): LastRun(None, queries._utc(r.started_at), None, queries._int(r.records_seen))
        for f in last_runs for r in f.result()
    }
    ordered_runs = [queries._run(r) for f in runs for r in f.result()]
    ordered_runs.sort(key=lambda r: r["started_at"] or datetime.min.replace(tzinfo=UTC), reverse=True)

    with_orders = {d: n for d, n in stream_totals[ORDERS].items() if n}
    plan = nightly_dates(with_orders, seen, shift_days(last, -1))  # type: ignore[arg-type]
    waiting = [
        WaitingDate(p.day, late_orders(with_orders[p.day], seen[p.day].records_seen if p.day in seen else None),
                    p.why, seen[p.day].started_at if p.day in seen else None, p.day in seen)
        for p in plan if p.trigger == LATE
    ]

    rejected_days = [d for d in sorted(stream_totals[REJECTED], reverse=True) if stream_totals[REJECTED][d]]
    reasons = {d: _reasons(store, d) for d in rejected_days[:REJECTED_SAMPLE_DAYS]}
    days = [
        DayStatus(
            date=d, ingested=stream_totals[ORDERS][d], aggregated=aggregated.get(d),
            late=late_orders(stream_totals[ORDERS][d], seen[d].records_seen) if d in seen else 0,
            rejected=stream_totals[REJECTED][d], reasons=reasons.get(d, []),
        )
        for d in reversed(date_range(first, last))
    ]
    return StatusOverview(first, last, now, stream, days, waiting, ordered_runs[:RUNS_SHOWN])


def _reasons(store: Store, day: date) -> list[str]:
    """A few distinct reasons among the date's first rejected samples (already escaped)."""
    found = queries.rejected_of(store, day, REJECTED_SAMPLES)
    return list(dict.fromkeys(s.reason for s in found.samples))
