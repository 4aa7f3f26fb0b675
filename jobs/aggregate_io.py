"""Cassandra I/O of the nightly aggregate: Spark reads and writes through the connector,
and the small bookkeeping (lock, pending dates, ledger, segment sizes) through the
Python driver with bound parameters."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterable
from datetime import UTC, date, datetime

from cassandra.cluster import Session
from cassandra.util import uuid_from_time
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.aggregate_lock import LockLost, RunLock
from jobs.cassandra_io import read_table
from orderlog.config import Settings
from orderlog.late_orders import ORDERS, LastRun
from orderlog.layout import RAW_ORDER_BUCKETS, USER_DAY_BUCKETS

PENDING_SCOPE = "aggregate"
DELETE_CHUNK = 5000


def read_day(spark: SparkSession, settings: Settings, name: str, day: date, buckets: int) -> DataFrame:
    """The partitions (day, 0..buckets-1) of a table keyed ((date, bucket), ...): the
    predicates cover the whole partition key, so the connector reads just them."""
    return read_table(spark, settings, name).filter(
        (F.col("order_date") == F.lit(day)) & F.col("bucket").isin(list(range(buckets)))
    )


def read_orders(spark: SparkSession, settings: Settings, day: date) -> DataFrame:
    return read_day(spark, settings, "raw_orders", day, RAW_ORDER_BUCKETS).select("user_id", "menu_type")


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
    from cassandra.concurrent import execute_concurrent_with_args

    if not keys:
        return 0
    where = " AND ".join(f"{c} = ?" for c in key_columns)
    statement = session.prepare(f"DELETE FROM {name} WHERE {where}")
    for first in range(0, len(keys), DELETE_CHUNK):
        execute_concurrent_with_args(session, statement, keys[first : first + DELETE_CHUNK], concurrency=64)
    return len(keys)


class AggregateState:
    """The job's bookkeeping tables, through one driver session."""

    def __init__(self, session: Session):
        self.session = session
        self.owner = f"{socket.gethostname()}:{uuid.uuid4()}"
        self.lock: RunLock | None = None
        self.unfinished: date | None = None  # the date this run marked pending and has not cleared

    def _rows(self, cql: str, params: tuple = ()) -> list[dict]:
        statement = self.session.prepare(cql)
        result = self.session.execute(statement, params)
        columns = result.column_names or []
        return [dict(zip(columns, row, strict=True)) for row in result]

    # -- the lock -----------------------------------------------------------------------
    def acquire_lock(self, ttl_seconds: int) -> None:
        self.lock = RunLock(self.session, self.owner, ttl_seconds)
        self.lock.acquire()

    def release_lock(self) -> None:
        if self.lock is not None:
            self.lock.release()

    def check_lock(self, before: str) -> None:
        """Every write of a run comes after this: LockLost (naming the write) when the run
        no longer holds the lock. A state without a lock (tests of the bookkeeping) writes freely."""
        if self.lock is None:
            return
        try:
            self.lock.ensure_held()
        except LockLost as exc:
            raise LockLost(exc.reason, before=before) from None

    # -- pending dates ------------------------------------------------------------------
    def pending_dates(self) -> list[date]:
        return sorted(self.pending_runs())

    def pending_runs(self) -> dict[date, uuid.UUID]:
        """The dates a run started but did not finish, with that run's id."""
        rows = self._rows("SELECT order_date, run_id FROM aggregate_pending WHERE scope = ?", (PENDING_SCOPE,))
        return {r["order_date"].date(): r["run_id"] for r in rows}

    def abandon_run(self, day: date, run_id: uuid.UUID, redone_by: uuid.UUID) -> None:
        """A killed run never wrote its outcome: say so in the ledger instead of 'running'."""
        self.check_lock("the ledger")
        statement = self.session.prepare(
            "UPDATE aggregate_runs SET status = ?, error = ? WHERE year = ? AND order_date = ? AND run_id = ? "
            "IF status = ?"
        )
        reason = f"did not finish (killed or lost); redone by run {redone_by}"
        self.session.execute(statement, ("abandoned", reason, day.year, day, run_id, "running"))

    def mark_pending(self, day: date, run_id: uuid.UUID) -> None:
        self.check_lock("the unfinished-run marker")
        statement = self.session.prepare(
            "INSERT INTO aggregate_pending (scope, order_date, run_id, started_at) VALUES (?, ?, ?, ?)"
        )
        self.session.execute(statement, (PENDING_SCOPE, day, run_id, datetime.now(UTC)))
        self.unfinished = day

    def clear_pending(self, day: date) -> None:
        self.check_lock("the unfinished-run marker")
        statement = self.session.prepare("DELETE FROM aggregate_pending WHERE scope = ? AND order_date = ?")
        self.session.execute(statement, (PENDING_SCOPE, day))
        self.unfinished = None

    # -- the ledger ---------------------------------------------------------------------
    @staticmethod
    def new_run_id() -> tuple[uuid.UUID, datetime]:
        started = datetime.now(UTC)
        return uuid_from_time(started), started

    def start_run(self, day: date, run_id: uuid.UUID, started: datetime, trigger: str) -> None:
        self.check_lock("the ledger")
        statement = self.session.prepare(
            "INSERT INTO aggregate_runs (year, order_date, run_id, status, trigger, started_at) "
            "VALUES (?, ?, ?, ?, ?, ?)"
        )
        self.session.execute(statement, (day.year, day, run_id, "running", trigger, started))

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
        statement = self.session.prepare(
            "UPDATE aggregate_runs SET status = ?, orders_read = ?, users_touched = ?, finished_at = ?, "
            "duration_ms = ?, error = ? WHERE year = ? AND order_date = ? AND run_id = ?"
        )
        duration_ms = int((finished - started).total_seconds() * 1000)
        self.session.execute(
            statement,
            (status, orders_read, users_touched, finished, duration_ms, error, day.year, day, run_id),
        )
        return finished

    # -- late orders --------------------------------------------------------------------
    def stream_total(self, day: date) -> int:
        """The records the streaming job has written for day, over every streaming query."""
        rows = self._rows(
            "SELECT records FROM stream_day_counts WHERE year = ? AND day = ? AND kind = ?", (day.year, day, ORDERS)
        )
        return sum(r["records"] or 0 for r in rows)

    def stream_totals(self) -> dict[date, int]:
        """The same for every date (one small partition per year: 366 days x 2 kinds x a
        few query ids)."""
        totals: dict[date, int] = {}
        for year in self._years("stream_day_counts"):
            for r in self._rows("SELECT day, kind, records FROM stream_day_counts WHERE year = ?", (year,)):
                if r["kind"] == ORDERS:
                    day = r["day"].date()
                    totals[day] = totals.get(day, 0) + (r["records"] or 0)
        return totals

    def last_runs(self) -> dict[date, LastRun]:
        """What the last successful run of each aggregated date saw."""
        found: dict[date, LastRun] = {}
        for year in self._years("aggregated_dates"):
            rows = self._rows(
                "SELECT order_date, run_id, started_at, finished_at, records_seen FROM aggregated_dates "
                "WHERE year = ?",
                (year,),
            )
            for r in rows:
                found[r["order_date"].date()] = LastRun(
                    r["run_id"], r["started_at"], r["finished_at"], r["records_seen"] or 0
                )
        return found

    def record_aggregated(
        self, day: date, run_id: uuid.UUID, started: datetime, finished: datetime, records_seen: int
    ) -> None:
        self.check_lock("the aggregated-dates record")
        statement = self.session.prepare(
            "INSERT INTO aggregated_dates (year, order_date, run_id, started_at, finished_at, records_seen) "
            "VALUES (?, ?, ?, ?, ?, ?)"
        )
        self.session.execute(statement, (day.year, day, run_id, started, finished, records_seen))

    def _years(self, table: str) -> list[int]:
        # DISTINCT over the partition key of a table with one partition per year: tiny.
        return sorted(r["year"] for r in self._rows(f"SELECT DISTINCT year FROM {table}"))

    # -- aggregated dates and segment sizes --------------------------------------------
    def aggregated_years(self) -> list[int]:
        return self._years("daily_order_summaries")

    def write_summary(self, row: dict) -> None:
        self.check_lock("the daily summary")
        statement = self.session.prepare(
            "INSERT INTO daily_order_summaries (year, order_date, japanese, western, total, users, "
            "aggregated_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
        )
        self.session.execute(
            statement,
            (
                row["year"],
                row["order_date"],
                row["japanese"],
                row["western"],
                row["total"],
                row["users"],
                datetime.now(UTC),
            ),
        )

    def aggregated_dates_from(self, day: date) -> list[date]:
        dates: list[date] = []
        for year in (y for y in self.aggregated_years() if y >= day.year):
            rows = self._rows(
                "SELECT order_date FROM daily_order_summaries WHERE year = ? AND order_date >= ?",
                (year, day),
            )
            dates += [r["order_date"].date() for r in rows]
        return sorted(dates)

    def sizes_before(self, day: date) -> dict[str, int]:
        """Segment sizes after the latest aggregated date before day (empty: none)."""
        for year in sorted((y for y in self.aggregated_years() if y <= day.year), reverse=True):
            rows = self._rows(
                "SELECT as_of FROM segment_sizes WHERE year = ? AND as_of < ? LIMIT 1", (year, day)
            )
            if rows:
                as_of = rows[0]["as_of"].date()
                sized = self._rows(
                    "SELECT segment, users FROM segment_sizes WHERE year = ? AND as_of = ?", (year, as_of)
                )
                return {r["segment"]: r["users"] for r in sized}
        return {}

    def stored_movements(self, days: Iterable[date]) -> dict[tuple[date, str], tuple[int, int]]:
        found: dict[tuple[date, str], tuple[int, int]] = {}
        for day in days:
            rows = self._rows(
                "SELECT segment, entered, exited FROM segment_sizes WHERE year = ? AND as_of = ?",
                (day.year, day),
            )
            for r in rows:
                found[(day, r["segment"])] = (r["entered"] or 0, r["exited"] or 0)
        return found

    def write_segment_sizes(self, rows: list[dict]) -> None:
        self.check_lock("the segment sizes")
        statement = self.session.prepare(
            "INSERT INTO segment_sizes (year, as_of, segment, users, entered, exited) VALUES (?, ?, ?, ?, ?, ?)"
        )
        for r in rows:
            self.session.execute(
                statement, (r["year"], r["as_of"], r["segment"], r["users"], r["entered"], r["exited"])
            )

