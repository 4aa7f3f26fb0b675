"""The aggregate job's bookkeeping, through the Python driver with bound parameters: the
run lock, the dates a run left unfinished, the run ledger, and what each date's last
successful run saw of the stream (to tell late orders). Every statement is prepared once."""

from __future__ import annotations

import socket
import uuid
from datetime import UTC, date, datetime
from typing import Any

from cassandra.cluster import Session
from cassandra.util import uuid_from_time

from jobs.aggregate_lock import LockLost, RunLock
from orderlog.late_orders import ORDERS, LastRun

PENDING_SCOPE = "aggregate"
STATEMENTS = {
    "pending": "SELECT order_date, run_id FROM aggregate_pending WHERE scope = ?",
    "mark_pending": "INSERT INTO aggregate_pending (scope, order_date, run_id, started_at) VALUES (?, ?, ?, ?)",
    "clear_pending": "DELETE FROM aggregate_pending WHERE scope = ? AND order_date = ?",
    "abandon_run": (
        "UPDATE aggregate_runs SET status = ?, error = ? WHERE year = ? AND order_date = ? AND run_id = ? "
        "IF status = ?"
    ),
    "start_run": (
        "INSERT INTO aggregate_runs (year, order_date, run_id, status, trigger, started_at) VALUES (?, ?, ?, ?, ?, ?)"
    ),
    "finish_run": (
        "UPDATE aggregate_runs SET status = ?, orders_read = ?, users_touched = ?, finished_at = ?, "
        "duration_ms = ?, error = ? WHERE year = ? AND order_date = ? AND run_id = ?"
    ),
    "note_latest_run": (
        "INSERT INTO latest_aggregate_run (scope, run_id, order_date, status, finished_at) VALUES (?, ?, ?, ?, ?)"
    ),
    "stream_total": "SELECT records FROM stream_day_counts WHERE year = ? AND day = ? AND kind = ?",
    "stream_totals_of_year": "SELECT day, kind, records FROM stream_day_counts WHERE year = ?",
    # DISTINCT over the partition key of a table with one partition per year: tiny.
    "stream_years": "SELECT DISTINCT year FROM stream_day_counts",
    "aggregated_years": "SELECT DISTINCT year FROM aggregated_dates",
    "last_runs_of_year": (
        "SELECT order_date, run_id, started_at, finished_at, records_seen FROM aggregated_dates WHERE year = ?"
    ),
    "record_aggregated": (
        "INSERT INTO aggregated_dates (year, order_date, run_id, started_at, finished_at, records_seen) "
        "VALUES (?, ?, ?, ?, ?, ?)"
    ),
}


class Ledger:
    """The lock, the unfinished dates, the ledger and the late-order bookkeeping of one run.
    Every write first renews the lock (``check_lock``): a run that lost it stops there."""

    def __init__(self, session: Session):
        self.session = session
        self.owner = f"{socket.gethostname()}:{uuid.uuid4()}"
        self.lock: RunLock | None = None
        self.unfinished: date | None = None  # the date this run marked pending and has not cleared
        self.statements = {name: session.prepare(cql) for name, cql in STATEMENTS.items()}

    def _execute(self, name: str, params: tuple = ()) -> Any:
        return self.session.execute(self.statements[name], params)

    # -- the lock -----------------------------------------------------------------------
    def acquire_lock(self, ttl_seconds: int) -> None:
        self.lock = RunLock(self.session, self.owner, ttl_seconds)
        self.lock.acquire()

    def release_lock(self) -> None:
        if self.lock is not None:
            self.lock.release()

    def check_lock(self, before: str) -> None:
        """Every write of a run comes after this: LockLost (naming the write) when the run
        no longer holds the lock. A ledger without a lock (tests of the bookkeeping) writes freely."""
        if self.lock is None:
            return
        try:
            self.lock.ensure_held()
        except LockLost as exc:
            raise LockLost(exc.reason, before=before) from None

    # -- unfinished dates ---------------------------------------------------------------
    def pending_runs(self) -> dict[date, uuid.UUID]:
        """The dates a run started but did not finish, with that run's id."""
        return {r.order_date.date(): r.run_id for r in self._execute("pending", (PENDING_SCOPE,))}

    def mark_pending(self, day: date, run_id: uuid.UUID) -> None:
        self.check_lock("the unfinished-run marker")
        self._execute("mark_pending", (PENDING_SCOPE, day, run_id, datetime.now(UTC)))
        self.unfinished = day

    def clear_pending(self, day: date) -> None:
        self.check_lock("the unfinished-run marker")
        self._execute("clear_pending", (PENDING_SCOPE, day))
        self.unfinished = None

    # -- the ledger ---------------------------------------------------------------------
    @staticmethod
    def new_run_id() -> tuple[uuid.UUID, datetime]:
        started = datetime.now(UTC)
        return uuid_from_time(started), started

    def abandon_run(self, day: date, run_id: uuid.UUID, redone_by: uuid.UUID) -> None:
        """A killed run never wrote its outcome: say so in the ledger instead of 'running'."""
        self.check_lock("the ledger")
        reason = f"did not finish (killed or lost); redone by run {redone_by}"
        self._execute("abandon_run", ("abandoned", reason, day.year, day, run_id, "running"))

    def start_run(self, day: date, run_id: uuid.UUID, started: datetime, trigger: str) -> None:
        self.check_lock("the ledger")
        self._execute("start_run", (day.year, day, run_id, "running", trigger, started))

    def finish_run(
        self,
        day: date,
        run_id: uuid.UUID,
        started: datetime,
        *,
        status: str,
        orders_read: int | None = None,
        users_touched: int | None = None,
        error: str | None = None,
    ) -> datetime:
        self.check_lock("the ledger")
        finished = datetime.now(UTC)
        duration_ms = int((finished - started).total_seconds() * 1000)
        self._execute(
            "finish_run", (status, orders_read, users_touched, finished, duration_ms, error, day.year, day, run_id)
        )
        # After the run's row: the viewer drops its caches when this row changes.
        self._execute("note_latest_run", (PENDING_SCOPE, run_id, day, status, finished))
        return finished

    # -- late orders --------------------------------------------------------------------
    def stream_total(self, day: date) -> int:
        """The records the streaming job has written for day, over every streaming query."""
        return sum(r.records or 0 for r in self._execute("stream_total", (day.year, day, ORDERS)))

    def stream_totals(self) -> dict[date, int]:
        """The same for every date (one small partition per year: 366 days x 2 kinds x a
        few query ids)."""
        totals: dict[date, int] = {}
        for year in sorted(r.year for r in self._execute("stream_years")):
            for r in self._execute("stream_totals_of_year", (year,)):
                if r.kind == ORDERS:
                    day = r.day.date()
                    totals[day] = totals.get(day, 0) + (r.records or 0)
        return totals

    def last_runs(self) -> dict[date, LastRun]:
        """What the last successful run of each aggregated date saw."""
        found: dict[date, LastRun] = {}
        for year in sorted(r.year for r in self._execute("aggregated_years")):
            for r in self._execute("last_runs_of_year", (year,)):
                found[r.order_date.date()] = LastRun(r.run_id, r.started_at, r.finished_at, r.records_seen or 0)
        return found

    def record_aggregated(
        self, day: date, run_id: uuid.UUID, started: datetime, finished: datetime, records_seen: int
    ) -> None:
        self.check_lock("the aggregated-dates record")
        self._execute("record_aggregated", (day.year, day, run_id, started, finished, records_seen))
