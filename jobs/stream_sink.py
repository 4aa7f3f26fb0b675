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
import functools
import logging
import threading
import time
import uuid
from datetime import UTC, date, datetime
from typing import Any

from pyspark.sql import Column, DataFrame, Observation
from pyspark.sql import functions as F

from jobs.cassandra_health import CassandraHealth
from jobs.cassandra_io import CONCURRENT_WRITES, short_cause, write_table
from jobs.stream_counts import (
    DayCounts,
    batch_day_counts,
    counts_of_metrics,
    day_count_metrics,
    expected_dates,
    summed_day_counts,
    with_count_day,
)
from jobs.stream_transforms import (
    deferred_col,
    filter_rejected,
    filter_valid,
    natively_parsed,
    parsed_by_python,
    to_raw_orders,
    to_rejected_events,
    with_native_verdict,
)
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


@functools.cache  # built once, like the transformations' columns
def _deferred_count() -> Column:
    return F.count_if(deferred_col()).alias("deferred")


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
        self.write_options: dict[str, str] | None = None  # of the raw_orders writes, from the first batch

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
        # Cached: the batch is read from Kafka and judged natively once, by the first write;
        # its deferred records (rarely any) and, rarely, a grouping count read it again.
        judged = batch.coalesce(max(1, cores)).transform(with_native_verdict).persist()
        try:
            counts, retries, orders_s = self._write_with_retry(judged, batch_id, query_id)
        finally:
            judged.unpersist()
        rows = sum(n for _, _, n in counts)
        rejected = sum(n for _, kind, n in counts if kind == REJECTED)
        self.stats[batch_id] = {
            "retries": retries,
            "rows": rows,
            "valid": rows - rejected,
            "rejected": rejected,
            "orders_s": orders_s,
            "rest_s": time.monotonic() - started - orders_s,
        }

    def _write_with_retry(self, judged: DataFrame, batch_id: int, query_id: str) -> tuple[DayCounts, int, float]:
        """Writes the batch; returns its counts, how many times it was retried, and the
        seconds of its orders' writes (read, validate, write raw_orders) in the last attempt."""
        deadline = time.monotonic() + self.settings.stream.write_retry_seconds
        pause, cause, retries = FIRST_PAUSE_S, None, -1
        while True:
            retries += 1
            if cause is not None or not self.health.up() or self.health.outages != self.outages_seen:
                self._wait_for_cassandra(deadline, cause or "node down", batch_id)
            try:
                counts, orders_s = self._write(judged, batch_id, query_id)
                return counts, retries, orders_s
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

    def _write(self, judged: DataFrame, batch_id: int, query_id: str) -> tuple[DayCounts, float]:
        """One attempt: the natively judged orders into raw_orders (the job also counts the
        deferred records); only when a record was deferred, those records through
        parse_record, their orders and their rejected rows; then the per-date totals. Returns
        the counts and the seconds of the orders' writes.

        A batch of canonical records thus never starts a Python worker: the UDF's pass over
        every row cost about 0.4 s of a 1,000-record batch (docs/benchmarks.md)."""
        tz = self.settings.business.timezone
        started = time.monotonic()
        expected = expected_dates(business_date(datetime.now(UTC), tz), self.last_dates)
        if self.write_options is None:  # the session's conf does not change while it runs
            self.write_options = raw_orders_write_options(dict(judged.sparkSession.sparkContext.getConf().getAll()))
        options = self.write_options
        deferred_seen = Observation(f"stream-batch-{batch_id}-deferred-{uuid.uuid4().hex[:8]}")
        counted = judged.observe(deferred_seen, _deferred_count())
        counts = self._write_orders(counted.transform(natively_parsed), judged.transform(natively_parsed), expected,
                                    options, batch_id)
        deferred = observed_values(deferred_seen, OBSERVATION_WAIT_S)
        if deferred is None or deferred["deferred"]:  # no value came: judge the deferred ones, if any
            by_python = judged.transform(parsed_by_python).persist()
            try:
                python_counts = self._write_orders(by_python, by_python, expected, options, batch_id)
                orders_s = time.monotonic() - started
                if any(kind == REJECTED for _, kind, _ in python_counts):
                    rejected_rows = by_python.transform(filter_rejected).transform(to_rejected_events, tz)
                    # Rejected rows expire: a flood of bad records cannot fill the disk for good.
                    write_table(rejected_rows, self.settings, REJECTED_EVENTS,
                                ttl_seconds=self.settings.rejected.ttl_seconds, session_epoch=self.epoch)
            finally:
                by_python.unpersist()
            counts = summed_day_counts(counts, python_counts)
        else:
            orders_s = time.monotonic() - started
        self.last_dates = {day for day, _, _ in counts}
        # Only after the rows: a total never counts a record that is not in its table yet
        # (the aggregate relies on it to tell late orders). A record without a date cannot
        # be in either table's key: nothing to count it under.
        dated = [c for c in counts if c[0] is not None]
        if dated:
            if self.day_counts is None:
                self.day_counts = DayCountWriter(self.health.session, self.settings.cassandra.keyspace)
            self.day_counts.write(query_id, batch_id, dated)
        return counts, orders_s

    def _write_orders(
        self, parsed: DataFrame, regroup: DataFrame, expected: list[date], options: dict[str, str], batch_id: int
    ) -> DayCounts:
        """The valid rows of parsed into raw_orders; returns the (day, kind) counts of all its
        rows, observed by the same job, or (dates not expected, or no values came) grouped
        from ``regroup``, the same rows without the write's observations (one job more)."""
        tz = self.settings.business.timezone
        # A new observation per write: one of a failed write never gets its values.
        observation = Observation(f"stream-batch-{batch_id}-{uuid.uuid4().hex[:8]}")
        observed = parsed.transform(with_count_day, tz).observe(observation, *day_count_metrics(expected))
        write_table(observed.transform(filter_valid).transform(to_raw_orders, tz), self.settings, RAW_ORDERS,
                    session_epoch=self.epoch, options=options)
        metrics = observed_values(observation, OBSERVATION_WAIT_S)
        counts = counts_of_metrics(metrics, expected) if metrics is not None else None
        if counts is None:
            counts = [(r["day"], r["kind"], int(r["records"])) for r in batch_day_counts(regroup, tz).collect()]
        return counts

    def _give_up_after(self, deadline: float, cause: str, batch_id: int) -> None:
        if time.monotonic() < deadline:
            return
        self.failure = (
            f"cannot write to Cassandra at {self.settings.cassandra.address} for "
            f"{self.settings.stream.write_retry_seconds:.0f} s ({cause}); batch {batch_id} is not committed and will "
            f"be replayed from checkpoint {self.settings.stream.checkpoint_location} on restart"
        )
        raise CassandraUnavailable(self.failure)
