"""The streaming job's sink: the foreachBatch function that validates a micro-batch and
writes raw_orders and rejected_events, then the batch's per-date totals in
stream_day_counts, retrying Cassandra while it is away.

Exactly once in effect: Spark's checkpoint replays a micro-batch that was not committed
(at-least-once delivery), and every row is an upsert on a key derived from the record
(order_id, or the Kafka coordinates), so a replay rewrites the same rows. The per-date
totals are replay-safe too (orderlog.late_orders.merge_batch_count).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from datetime import UTC, date, datetime
from typing import Any

from pyspark.sql import DataFrame, Observation

from jobs.cassandra_health import CassandraHealth
from jobs.cassandra_io import CONCURRENT_WRITES, short_cause, write_table
from jobs.stream_counts import (
    DayCounts,
    batch_day_counts,
    counts_of_metrics,
    day_count_metrics,
    expected_dates,
    with_count_day,
)
from jobs.stream_transforms import filter_rejected, filter_valid, to_raw_orders, to_rejected_events, with_parsed
from orderlog.business_day import business_date
from orderlog.cassandra_session import CassandraUnavailable
from orderlog.config import Settings
from orderlog.late_orders import REJECTED, StreamCount, merge_batch_count

log = logging.getLogger("orderlog.streaming")

RAW_ORDERS = "raw_orders"
REJECTED_EVENTS = "rejected_events"
STREAM_DAY_COUNTS = "stream_day_counts"
# Set by Spark on the thread that runs a query's batches (and so foreachBatch): the query's id.
QUERY_ID_PROPERTY = "sql.streaming.queryId"
# Between retries of a batch's writes: first pause, and the longest.
FIRST_PAUSE_S, LONGEST_PAUSE_S = 1.0, 10.0
# The connector's batching of the raw_orders write, unless the session sets its own
# (`--conf spark.cassandra.output.…`). A micro-batch's rows fall in few partitions (a few
# business dates x RAW_ORDER_BUCKETS), so unlogged batches of one partition can be much
# larger than the connector's default 1 KiB (~8 rows): 16 KiB (~100 rows, under Cassandra's
# default 50 KiB batch_size_fail_threshold, above its 5 KiB warn threshold) and 16 batches in
# flight per task wrote ~2x the rows/s of the defaults (bench.stream_write, docs/benchmarks.md).
RAW_ORDERS_WRITE_DEFAULTS = {
    "spark.cassandra.output.batch.size.bytes": "16384",
    CONCURRENT_WRITES: "16",
}
# How long to wait for a write's observed counts (Spark hands them to a listener right
# after the job); without them the batch groups its cached rows instead (one job more).
OBSERVATION_WAIT_S = 30.0


def raw_orders_write_options(session_conf: dict[str, str]) -> dict[str, str]:
    """RAW_ORDERS_WRITE_DEFAULTS, less the settings the session's conf gives (an operator's
    --conf wins: a write option would override it)."""
    return {key: value for key, value in RAW_ORDERS_WRITE_DEFAULTS.items() if key not in session_conf}


def observed_values(observation: Any, wait_s: float) -> dict[str, Any] | None:
    """An observation's values once its action has succeeded, or None when Spark has not
    handed them over within ``wait_s`` (its listener bus can drop events when flooded).
    ``Observation.get`` would wait for ever: it waits on a thread of its own, which is left
    behind in that rare case."""
    found: list[dict[str, Any]] = []

    def get() -> None:
        with contextlib.suppress(Exception):  # no values: the caller counts another way
            found.append(dict(observation.get))

    waiter = threading.Thread(target=get, name="observation-wait", daemon=True)
    waiter.start()
    waiter.join(wait_s)
    return found[0] if found else None


class DayCountWriter:
    """The rows of stream_day_counts of one batch, through a driver session: each (day,
    kind) row of the query is read, merged with the batch's count and upserted. Only this
    query writes these rows, so the read-modify-write has no concurrent writer."""

    def __init__(self, session: Any, keyspace: str):
        self.session = session
        table = f"{keyspace}.{STREAM_DAY_COUNTS}"
        self.select = session.prepare(
            f"SELECT records, records_before, batch_id FROM {table} WHERE year = ? AND day = ? AND kind = ? "
            "AND query_id = ?"
        )
        self.insert = session.prepare(
            f"INSERT INTO {table} (year, day, kind, query_id, records, records_before, batch_id, last_arrival_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        )

    def write(self, query_id: str, batch_id: int, counts: DayCounts) -> None:
        keys = [(day.year, day, kind, query_id) for day, kind, _ in counts]
        stored = [f.result().one() for f in [self.session.execute_async(self.select, k) for k in keys]]
        now = datetime.now(UTC)
        writes = []
        for key, row, (_, _, count) in zip(keys, stored, counts, strict=True):
            before = None if row is None else StreamCount(row.records or 0, row.records_before or 0, row.batch_id)
            merged = merge_batch_count(before, batch_id, count)
            values = (*key, merged.records, merged.records_before, merged.batch_id, now)
            writes.append(self.session.execute_async(self.insert, values))
        for f in writes:
            f.result()


class BatchWriter:
    """The foreachBatch function: validate, then write both tables and the batch's per-date
    totals, retrying Cassandra for settings.stream.write_retry_seconds."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.stats: dict[int, dict[str, Any]] = {}  # batch id -> counts, for the progress log
        self.failure: str | None = None  # why the last batch gave up, for the exit message
        self.health = CassandraHealth(settings)
        self.outages_seen = 0
        self.epoch = 0  # bumped after each outage: the connector then opens a fresh session
        self.day_counts: DayCountWriter | None = None
        self.last_dates: set[date | None] = set()  # of the previous batch: expected again

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        started = time.monotonic()
        # One wave of tasks: a topic with more partitions than cores would otherwise make
        # every small (low-latency) batch pay for several task waves.
        cores = batch.sparkSession.sparkContext.defaultParallelism
        # Cached: the rejected rows (and, rarely, a grouping count) are read again after the
        # raw_orders write, which parses the batch and fills the cache in the same job.
        # Read before the writes: a programming error, not a Cassandra outage to retry.
        query_id = batch.sparkSession.sparkContext.getLocalProperty(QUERY_ID_PROPERTY)
        if not query_id:  # foreachBatch always runs on the query's thread
            raise RuntimeError(f"no {QUERY_ID_PROPERTY} on the batch's thread: not run by a streaming query?")
        parsed = batch.coalesce(max(1, cores)).transform(with_parsed).persist()
        try:
            counts, retries, first_job_s = self._write_with_retry(parsed, batch_id, query_id)
        finally:
            parsed.unpersist()
        rows = sum(n for _, _, n in counts)
        rejected = sum(n for _, kind, n in counts if kind == REJECTED)
        self.stats[batch_id] = {
            "retries": retries,
            "rows": rows,
            "valid": rows - rejected,
            "rejected": rejected,
            "orders_s": first_job_s,
            "rest_s": time.monotonic() - started - first_job_s,
        }

    def _write_with_retry(self, parsed: DataFrame, batch_id: int, query_id: str) -> tuple[DayCounts, int, float]:
        """Writes the batch; returns its counts, how many times it was retried, and the
        seconds of its first job (read, validate, write raw_orders) in the last attempt."""
        deadline = time.monotonic() + self.settings.stream.write_retry_seconds
        pause, cause, retries = FIRST_PAUSE_S, None, -1
        while True:
            retries += 1
            if cause is not None or not self.health.up() or self.health.outages != self.outages_seen:
                self._wait_for_cassandra(deadline, cause or "node down", batch_id)
            try:
                counts, first_job_s = self._write(parsed, batch_id, query_id)
                return counts, retries, first_job_s
            except Exception as exc:  # noqa: BLE001
                # Every write is an idempotent upsert, so retrying any failure is safe; the
                # usual one is Cassandra being down or restarting.
                cause = short_cause(exc)
                self._give_up_after(deadline, cause, batch_id)
                log.warning("batch %d: Cassandra at %s unavailable (%s); retrying in %.0f s",
                            batch_id, self.settings.cassandra.address, cause, pause)
                time.sleep(pause)
                pause = min(pause * 2, LONGEST_PAUSE_S)

    def _wait_for_cassandra(self, deadline: float, cause: str, batch_id: int) -> None:
        """Never hands the connector a session that was cut off: its schema refresh can then
        block forever (seen with Java driver 4.18 after a Cassandra restart). Waits until
        Cassandra is back, then writes through a new session (a new epoch)."""
        while not self.health.up():
            self._give_up_after(deadline, cause, batch_id)
            log.warning("batch %d: Cassandra at %s down (%s); waiting", batch_id, self.settings.cassandra.address,
                        cause)
            time.sleep(2)
        self.outages_seen = self.health.outages
        self.epoch += 1

    def _write(self, parsed: DataFrame, batch_id: int, query_id: str) -> tuple[DayCounts, float]:
        """One attempt: raw_orders (the batch's counts observed by the same job), the
        rejected rows, then the per-date totals. Returns the counts and the first job's seconds."""
        tz = self.settings.business.timezone
        started = time.monotonic()
        # A new observation per attempt: one of a failed write never gets its values.
        observation = Observation(f"stream-batch-{batch_id}-{uuid.uuid4().hex[:8]}")
        expected = expected_dates(business_date(datetime.now(UTC), tz), self.last_dates)
        observed = parsed.transform(with_count_day, tz).observe(observation, *day_count_metrics(expected))
        valid_rows = observed.transform(filter_valid).transform(to_raw_orders, tz)
        session_conf = dict(parsed.sparkSession.sparkContext.getConf().getAll())
        write_table(valid_rows, self.settings, RAW_ORDERS, session_epoch=self.epoch,
                    options=raw_orders_write_options(session_conf))
        first_job_s = time.monotonic() - started
        metrics = observed_values(observation, OBSERVATION_WAIT_S)
        counts = counts_of_metrics(metrics, expected) if metrics is not None else None
        if counts is None:  # dates not expected (or no values came): group the cached rows
            counts = [(r["day"], r["kind"], int(r["records"])) for r in batch_day_counts(parsed, tz).collect()]
        self.last_dates = {day for day, _, _ in counts}
        if any(kind == REJECTED for _, kind, _ in counts):
            rejected_rows = parsed.transform(filter_rejected).transform(to_rejected_events, tz)
            # Rejected rows expire: a flood of bad records cannot fill the disk for good.
            write_table(rejected_rows, self.settings, REJECTED_EVENTS, ttl_seconds=self.settings.rejected.ttl_seconds,
                        session_epoch=self.epoch)
        # Only after the rows: a total never counts a record that is not in its table yet
        # (the aggregate relies on it to tell late orders). A record without a date cannot
        # be in either table's key: nothing to count it under.
        dated = [c for c in counts if c[0] is not None]
        if dated:
            if self.day_counts is None:
                self.day_counts = DayCountWriter(self.health.session, self.settings.cassandra.keyspace)
            self.day_counts.write(query_id, batch_id, dated)
        return counts, first_job_s

    def _give_up_after(self, deadline: float, cause: str, batch_id: int) -> None:
        if time.monotonic() < deadline:
            return
        self.failure = (
            f"cannot write to Cassandra at {self.settings.cassandra.address} for "
            f"{self.settings.stream.write_retry_seconds:.0f} s ({cause}); batch {batch_id} is not committed and will "
            f"be replayed from checkpoint {self.settings.stream.checkpoint_location} on restart"
        )
        raise CassandraUnavailable(self.failure)
