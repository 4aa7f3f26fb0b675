"""The viewer's one Cassandra session per process, and its prepared statements.

Every query the viewer makes is prepared here once, with bound parameters only (no
string-built CQL, no ALLOW FILTERING). The session is created lazily on first use in
each process: gunicorn forks its workers, and a driver session must never cross a fork.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from cassandra import InvalidRequest
from cassandra.cluster import ResponseFuture, ResultSet, Session
from cassandra.query import PreparedStatement
from flask import Flask, current_app

from orderlog.cassandra_session import connect, shutdown
from orderlog.config import Settings

EXTENSION = "viewer_db"

# name -> CQL. One statement per query the pages and the API make.
STATEMENTS: dict[str, str] = {
    "summary_of_date": (
        "SELECT order_date, japanese, western, total, users, aggregated_at "
        "FROM daily_order_summaries WHERE year = ? AND order_date = ?"
    ),
    "summaries_between": (
        "SELECT order_date, japanese, western, total, users, aggregated_at "
        "FROM daily_order_summaries WHERE year = ? AND order_date >= ? AND order_date <= ?"
    ),
    # The weekday x hour heatmap: 24 rows per date of a range within one year partition.
    "hourly_between": (
        "SELECT order_date, hour, japanese, western "
        "FROM hourly_order_counts WHERE year = ? AND order_date >= ? AND order_date <= ?"
    ),
    "latest_summary_of_year": (
        "SELECT order_date, aggregated_at FROM daily_order_summaries WHERE year = ? LIMIT 1"
    ),
    "sizes_of_date": (
        "SELECT as_of, segment, users, entered, exited FROM segment_sizes WHERE year = ? AND as_of = ?"
    ),
    "sizes_between": (
        "SELECT as_of, segment, users, entered, exited FROM segment_sizes "
        "WHERE year = ? AND as_of >= ? AND as_of <= ?"
    ),
    "latest_sizes_of_year": "SELECT as_of FROM segment_sizes WHERE year = ? LIMIT 1",
    # Late orders of a date: its stream totals (one row per streaming query) against what
    # its last successful aggregate run saw.
    "stream_totals_of_date": "SELECT records FROM stream_day_counts WHERE year = ? AND day = ? AND kind = ?",
    # Per-date stream totals of a range of one year (both kinds; a year partition holds
    # 366 days x 2 kinds x a few query ids, so reading the range whole is cheap).
    "stream_totals_between": (
        "SELECT day, kind, records FROM stream_day_counts WHERE year = ? AND day >= ? AND day <= ?"
    ),
    # A few rejected records of a date: one bucket partition, or a few of them, at most ? rows.
    "rejected_of_bucket": (
        "SELECT kafka_topic, kafka_partition, kafka_offset, kafka_timestamp, raw_value, raw_length, reason, "
        "replayed_at FROM rejected_events WHERE reject_date = ? AND bucket = ? LIMIT ?"
    ),
    "rejected_of_buckets": (
        "SELECT kafka_topic, kafka_partition, kafka_offset, kafka_timestamp, raw_value, raw_length, reason, "
        "replayed_at FROM rejected_events WHERE reject_date = ? AND bucket IN ? LIMIT ?"
    ),
    "last_run_of_date": (
        "SELECT run_id, started_at, finished_at, records_seen FROM aggregated_dates WHERE year = ? AND order_date = ?"
    ),
    # Every date's last run of a year (at most 366 rows): read once per aggregate run.
    "last_runs_of_year": (
        "SELECT order_date, run_id, started_at, finished_at, records_seen FROM aggregated_dates WHERE year = ?"
    ),
    "latest_finished_run": "SELECT run_id, status, finished_at FROM latest_aggregate_run WHERE scope = ?",
    "latest_run_of_year": (
        "SELECT order_date, run_id, status, trigger, orders_read, users_touched, started_at, finished_at, "
        "duration_ms, error FROM aggregate_runs WHERE year = ? LIMIT 1"
    ),
    # The status page (viewer/status_queries.py): the streaming job's progress, one row per
    # query of the topic; the last successful run and every run of a window's dates.
    "stream_progress_of_topic": (
        "SELECT query_id, run_id, batch_id, batch_at, batch_duration_ms, input_rows, input_rows_per_second, "
        "processed_rows_per_second, offsets_behind, rows_valid, rows_rejected, written_at, idle_at "
        "FROM stream_progress WHERE topic = ? LIMIT ?"
    ),
    "last_runs_between": (
        "SELECT order_date, started_at, records_seen FROM aggregated_dates "
        "WHERE year = ? AND order_date >= ? AND order_date <= ?"
    ),
    "runs_between": (
        "SELECT order_date, run_id, status, trigger, orders_read, users_touched, started_at, finished_at, "
        "duration_ms, error FROM aggregate_runs WHERE year = ? AND order_date >= ? AND order_date <= ? LIMIT ?"
    ),
    # Segment members: one bucket partition at a time, in user_id order, with the bounds
    # of a cursor (user_id > after) and/or a prefix (prefix <= user_id < upper).
    "members": "SELECT user_id, japanese, western, last_order_date FROM user_segments WHERE segment = ? AND bucket = ?",
    "members_gt": (
        "SELECT user_id, japanese, western, last_order_date FROM user_segments "
        "WHERE segment = ? AND bucket = ? AND user_id > ?"
    ),
    "members_ge": (
        "SELECT user_id, japanese, western, last_order_date FROM user_segments "
        "WHERE segment = ? AND bucket = ? AND user_id >= ?"
    ),
    "members_gt_lt": (
        "SELECT user_id, japanese, western, last_order_date FROM user_segments "
        "WHERE segment = ? AND bucket = ? AND user_id > ? AND user_id < ?"
    ),
    "members_ge_lt": (
        "SELECT user_id, japanese, western, last_order_date FROM user_segments "
        "WHERE segment = ? AND bucket = ? AND user_id >= ? AND user_id < ?"
    ),
    # The audience filters (viewer/audience.py) build their statements from a fixed set of
    # restrictions and prepare them on first use; this one, prepared with the rest, tells a
    # keyspace without the orders column or the indexes apart at start (SchemaOutOfDate).
    "audience_indexes": (
        "SELECT COUNT(*) FROM user_segments WHERE segment = ? AND bucket = ? AND orders >= ? AND last_order_date >= ?"
    ),
    "preference_of_user": (
        "SELECT user_id, japanese, western, preference, first_order_date, last_order_date, updated_at "
        "FROM user_preferences WHERE user_id = ?"
    ),
    "history_of_user_year": (
        "SELECT order_date, japanese, western FROM user_daily_history WHERE user_id = ? AND year = ?"
    ),
}


# The one row of latest_aggregate_run (jobs/aggregate_ledger.py writes it).
LATEST_RUN_SCOPE = "aggregate"
# How long the latest run is remembered: a finished run shows within about this long.
GENERATION_MEMO_S = 1.0


def stream_window(cache_seconds: float) -> int:
    """Which window of cache_seconds now falls in: what the streaming job writes is kept, in
    every cache of the viewer, only within one such window."""
    return int(time.time() // cache_seconds)


class SchemaOutOfDate(Exception):
    """The keyspace lacks a table or column this viewer reads: it was made by an older
    version, and `make schema` brings it up to date."""


class Store:
    """A driver session with the viewer's prepared statements, and the per-process cache of
    what the aggregate job wrote, kept until the next aggregate run finishes."""

    def __init__(self, session: Session, cache_seconds: float = 5.0):
        self.session = session
        self.cache_seconds = cache_seconds
        try:
            self.statements: dict[str, PreparedStatement] = {
                name: session.prepare(cql) for name, cql in STATEMENTS.items()
            }
        except InvalidRequest as exc:
            cause = " ".join(str(exc).split())[:200]
            raise SchemaOutOfDate(
                f"the tables of keyspace {session.keyspace} are older than this viewer ({cause}); run `make "
                "schema` (python -m orderlog.schema apply), which adds what is missing and keeps every row"
            ) from exc
        self._cache: dict[str, tuple[str, Any]] = {}
        self._composed: dict[str, PreparedStatement] = {}
        self._cache_lock = threading.Lock()
        self._generation: tuple[float, str] | None = None

    def execute(self, name: str, params: Sequence[Any]) -> ResultSet:
        return self.session.execute(self.statements[name].bind(params))

    def execute_async(self, name: str, params: Sequence[Any], fetch_size: int | None = None) -> ResponseFuture:
        return self._execute_async(self.statements[name], params, fetch_size)

    def execute_cql_async(self, cql: str, params: Sequence[Any], fetch_size: int | None = None) -> ResponseFuture:
        """A statement composed by the code from fixed parts (never from a request's text),
        prepared once per process on first use; values are bound parameters only."""
        statement = self._composed.get(cql)
        if statement is None:
            statement = self.session.prepare(cql)
            with self._cache_lock:
                self._composed[cql] = statement
        return self._execute_async(statement, params, fetch_size)

    def _execute_async(self, statement: PreparedStatement, params: Sequence[Any], fetch_size: int | None
                       ) -> ResponseFuture:
        bound = statement.bind(params)
        if fetch_size is not None:
            bound.fetch_size = fetch_size
        return self.session.execute_async(bound)

    @property
    def caching(self) -> bool:
        return self.cache_seconds > 0

    def generation(self) -> str:
        """Which aggregate run the data is from: the newest finished run (its id, status and
        end), read at most once per GENERATION_MEMO_S. It changes when a run finishes."""
        now = time.monotonic()
        memo = self._generation
        if memo is not None and now - memo[0] < GENERATION_MEMO_S:
            return memo[1]
        row = self.execute("latest_finished_run", (LATEST_RUN_SCOPE,)).one()
        generation = "none" if row is None else f"{row.run_id}:{row.status}:{row.finished_at.isoformat()}"
        self._generation = (now, generation)
        return generation

    def cached(self, key: str, compute: Callable[[], Any]) -> Any:
        """compute(), remembered until the next aggregate run finishes (a cache_seconds of
        0 turns the cache off). Only for what the aggregate job alone writes."""
        if not self.caching:
            return compute()
        return self._remembered(key, self.generation(), compute)

    def cached_live(self, key: str, compute: Callable[[], Any]) -> Any:
        """compute() for what the streaming job writes: remembered at most cache_seconds
        (the same windows as the response cache's stream-fed answers) and never past a run."""
        if not self.caching:
            return compute()
        return self._remembered(key, f"{self.generation()}@{stream_window(self.cache_seconds)}", compute)

    def _remembered(self, key: str, tag: str, compute: Callable[[], Any]) -> Any:
        # One entry per key, replaced when its tag changes: the cache holds no more keys
        # than the code asks for, however long the process runs.
        with self._cache_lock:
            hit = self._cache.get(key)
        if hit is not None and hit[0] == tag:
            return hit[1]
        value = compute()
        with self._cache_lock:
            self._cache[key] = (tag, value)
        return value

    def close(self) -> None:
        shutdown(self.session)


class _Holder:
    """Builds the Store on first use in this process (and again in a forked child)."""

    def __init__(self, settings: Settings, cache_seconds: float):
        self.settings = settings
        self.cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._store: Store | None = None
        self._pid = 0

    def get(self) -> Store:
        store, pid = self._store, os.getpid()
        if store is not None and self._pid == pid:
            return store
        with self._lock:
            if self._store is None or self._pid != pid:
                session = connect(self.settings)
                try:
                    self._store = Store(session, self.cache_seconds)
                except BaseException:
                    shutdown(session)  # the next request tries again (after `make schema`)
                    raise
                self._pid = pid
            return self._store

    def close(self) -> None:
        with self._lock:
            if self._store is not None and self._pid == os.getpid():
                self._store.close()
            self._store = None


def init_app(app: Flask) -> None:
    settings = app.config["SETTINGS"]
    app.extensions[EXTENSION] = _Holder(settings, settings.viewer.cache_seconds)


def get_store() -> Store:
    return current_app.extensions[EXTENSION].get()


def close_app(app: Flask) -> None:
    """Shut the process's session down (tests; a gunicorn worker's session ends with its process)."""
    holder = app.extensions.get(EXTENSION)
    if holder is not None:
        holder.close()
