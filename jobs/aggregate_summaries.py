"""The aggregate's daily summaries, hourly counts and segment sizes, through the Python
driver: the summary and the 24 hourly counts of a date are written here, and segment
sizes are chained from the sizes of the aggregated date before (a few rows per date).
Every statement is prepared once; every write first renews the run's lock (``guard``, the
ledger's check_lock)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime
from typing import Any

from cassandra.cluster import Session
from cassandra.concurrent import execute_concurrent_with_args

STATEMENTS = {
    "write_summary": (
        "INSERT INTO daily_order_summaries (year, order_date, japanese, western, total, users, aggregated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)"
    ),
    "write_hour": (
        "INSERT INTO hourly_order_counts (year, order_date, hour, japanese, western) VALUES (?, ?, ?, ?, ?)"
    ),
    # DISTINCT over the partition key of a table with one partition per year: tiny.
    "summary_years": "SELECT DISTINCT year FROM daily_order_summaries",
    "summary_dates_from": "SELECT order_date FROM daily_order_summaries WHERE year = ? AND order_date >= ?",
    "sizes_date_before": "SELECT as_of FROM segment_sizes WHERE year = ? AND as_of < ? LIMIT 1",
    "sizes_of_date": "SELECT segment, users FROM segment_sizes WHERE year = ? AND as_of = ?",
    "movements_of_date": "SELECT segment, entered, exited FROM segment_sizes WHERE year = ? AND as_of = ?",
    "write_sizes": (
        "INSERT INTO segment_sizes (year, as_of, segment, users, entered, exited) VALUES (?, ?, ?, ?, ?, ?)"
    ),
}


class Summaries:
    """daily_order_summaries and segment_sizes, as the aggregate writes and reads them back."""

    def __init__(self, session: Session, guard: Callable[[str], None] = lambda before: None):
        self.session = session
        self.guard = guard
        self.statements = {name: session.prepare(cql) for name, cql in STATEMENTS.items()}

    def _execute(self, name: str, params: tuple = ()) -> Any:
        return self.session.execute(self.statements[name], params)

    def aggregated_years(self) -> list[int]:
        return sorted(r.year for r in self._execute("summary_years"))

    def write_summary(self, row: dict) -> None:
        self.guard("the daily summary")
        self._execute("write_summary", (row["year"], row["order_date"], row["japanese"], row["western"],
                                        row["total"], row["users"], datetime.now(UTC)))

    def write_hourly(self, rows: list[dict]) -> None:
        """The 24 hourly counts of a date (jobs.aggregate_transforms.hourly_rows)."""
        self.guard("the hourly counts")
        params = [(r["year"], r["order_date"], r["hour"], r["japanese"], r["western"]) for r in rows]
        execute_concurrent_with_args(self.session, self.statements["write_hour"], params, raise_on_first_error=True)

    def aggregated_dates_from(self, day: date) -> list[date]:
        dates: list[date] = []
        for year in (y for y in self.aggregated_years() if y >= day.year):
            dates += [r.order_date.date() for r in self._execute("summary_dates_from", (year, day))]
        return sorted(dates)

    def sizes_before(self, day: date) -> dict[str, int]:
        """Segment sizes after the latest aggregated date before day (empty: none)."""
        for year in sorted((y for y in self.aggregated_years() if y <= day.year), reverse=True):
            latest = self._execute("sizes_date_before", (year, day)).one()
            if latest is not None:
                return {r.segment: r.users for r in self._execute("sizes_of_date", (year, latest.as_of.date()))}
        return {}

    def stored_movements(self, days: Iterable[date]) -> dict[tuple[date, str], tuple[int, int]]:
        found: dict[tuple[date, str], tuple[int, int]] = {}
        for day in days:
            for r in self._execute("movements_of_date", (day.year, day)):
                found[(day, r.segment)] = (r.entered or 0, r.exited or 0)
        return found

    def write_segment_sizes(self, rows: list[dict]) -> None:
        self.guard("the segment sizes")
        for r in rows:
            self._execute("write_sizes", (r["year"], r["as_of"], r["segment"], r["users"], r["entered"], r["exited"]))
