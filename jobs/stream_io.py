"""The I/O of the streaming job: the Kafka source, the Cassandra sink (one foreachBatch
feeding raw_orders and rejected_events, then the per-date totals of stream_day_counts),
per-batch progress logging and a clean stop.

Exactly once in effect: Spark's checkpoint replays a micro-batch that was not committed
(at-least-once delivery), and every row is an upsert on a key derived from the record
(order_id, or the Kafka coordinates), so a replay rewrites the same rows. The per-date
totals are replay-safe too (orderlog.late_orders.merge_batch_count).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQuery, StreamingQueryListener

from jobs.stream_counts import batch_day_counts
from jobs.stream_transforms import filter_rejected, filter_valid, to_raw_orders, to_rejected_events, with_parsed
from orderlog.config import Settings
from orderlog.late_orders import REJECTED, StreamCount, merge_batch_count
from orderlog.rejected_migration import NEW_KEY as REJECTED_EVENTS_KEY
from orderlog.rejected_migration import STAGING as MIGRATION_STAGING

log = logging.getLogger("orderlog.streaming")

CASSANDRA_FORMAT = "org.apache.spark.sql.cassandra"
RAW_ORDERS = "raw_orders"
REJECTED_EVENTS = "rejected_events"
STREAM_DAY_COUNTS = "stream_day_counts"
# Set by Spark on the thread that runs a query's batches (and so foreachBatch): the query's id.
QUERY_ID_PROPERTY = "sql.streaming.queryId"
KAFKA_COLUMNS = ("key", "value", "topic", "partition", "offset", "timestamp", "headers")


@dataclass(frozen=True)
class StreamOptions:
    """How the query runs. Defaults suit one laptop; flags and ORDERLOG_STREAM_* override."""

    topic: str
    checkpoint: str
    trigger: str = "1 second"
    max_offsets_per_trigger: int = 50_000
    starting_offsets: str = "earliest"  # only for a new checkpoint
    # How long a batch keeps retrying Cassandra before the job gives up (exit 1).
    write_retry_seconds: float = 120.0


class CassandraUnavailable(RuntimeError):
    """Cassandra could not be written for longer than the retry window."""


def read_kafka(spark: SparkSession, settings: Settings, options: StreamOptions) -> DataFrame:
    return (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", settings.kafka.bootstrap_servers)
        .option("subscribe", options.topic)
        .option("startingOffsets", options.starting_offsets)
        .option("maxOffsetsPerTrigger", str(options.max_offsets_per_trigger))
        # The replay header of tools.rejected (orderlog/rejected.py) travels in the headers.
        .option("includeHeaders", "true")
        # Records deleted by retention before we read them are a loss: fail loudly.
        .option("failOnDataLoss", "true")
        .load()
        .select(*KAFKA_COLUMNS)
    )


# The connector's default; the session epoch is added to it (see BatchWriter).
KEEP_ALIVE_MS = 3_600_000


def write_table(
    df: DataFrame, settings: Settings, table: str, epoch: int = 0, ttl_seconds: int | None = None
) -> None:
    writer = (
        df.write.format(CASSANDRA_FORMAT)
        .mode("append")
        .options(keyspace=settings.cassandra.keyspace, table=table)
        # A different connector configuration gets a session of its own (see BatchWriter).
        .option("spark.cassandra.connection.keepAliveMS", str(KEEP_ALIVE_MS + epoch))
    )
    if ttl_seconds is not None:
        writer = writer.option("ttl", str(ttl_seconds))
    writer.save()


# Causes worth naming when a write fails, most specific first.
CASSANDRA_CAUSES = (
    "Failed to open native connection to Cassandra",
    "AllNodesFailedException",
    "NoNodeAvailableException",
    "Control channel not available",
    "WriteTimeoutException",
    "UnavailableException",
    "DriverTimeoutException",
    "Connection refused",
)
JAVA_EXCEPTION_LINE = re.compile(r"^:?\s*((?:[a-z]\w*\.)+[A-Z]\w*(?:Exception|Error)\b.*)$", re.MULTILINE)


def short_cause(exc: BaseException) -> str:
    """One line saying why a write failed, out of a Py4J error with a Java stack trace."""
    text = str(exc)
    for marker in CASSANDRA_CAUSES:
        if marker in text:
            return marker
    match = JAVA_EXCEPTION_LINE.search(text)
    line = match.group(1) if match else (text.strip().splitlines() or [type(exc).__name__])[0]
    return line[:200]


class CassandraHealth:
    """Whether Cassandra is up, as a Python driver session of our own sees it (it notices a
    node going away at once and, reconnecting every second, its return), and an epoch that
    changes after every outage."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.session: Any = None
        self.outages = 0  # node-down events seen

    def up(self) -> bool:
        from cassandra.policies import ConstantReconnectionPolicy, HostStateListener

        from orderlog.cassandra_session import connect

        health = self

        class Counter(HostStateListener):
            def on_down(self, host: Any) -> None:
                health.outages += 1

            def on_up(self, host: Any) -> None: ...
            def on_add(self, host: Any) -> None: ...
            def on_remove(self, host: Any) -> None: ...

        try:
            if self.session is None:
                self.session = connect(self.settings, keyspace="", timeout=3.0)
                self.session.cluster.reconnection_policy = ConstantReconnectionPolicy(1.0, None)
                self.session.cluster.register_listener(Counter())
            return any(host.is_up for host in self.session.cluster.metadata.all_hosts())
        except Exception:
            return False


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

    def write(self, query_id: str, batch_id: int, counts: list[tuple[Any, str, int]]) -> None:
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
    totals, retrying Cassandra."""

    def __init__(self, settings: Settings, options: StreamOptions):
        self.settings = settings
        self.options = options
        self.stats: dict[int, dict[str, Any]] = {}  # batch id -> counts, for ProgressLogger
        self.failure: str | None = None  # why the last batch gave up, for the exit message
        self.listener: StreamingQueryListener | None = None
        self.health = CassandraHealth(settings)
        self.outages_seen = 0
        self.epoch = 0  # bumped after each outage: the connector then opens a fresh session
        self.day_counts: DayCountWriter | None = None

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        started = time.monotonic()
        # One wave of tasks: a topic with more partitions than cores would otherwise make
        # every small (low-latency) batch pay for several task waves.
        cores = batch.sparkSession.sparkContext.defaultParallelism
        parsed = batch.coalesce(max(1, cores)).transform(with_parsed).persist()
        try:
            # The batch's one Spark job before the writes: validation, and the per-date counts
            # (a few rows) that the rows and rejected figures are the sums of.
            counts = [
                (r["day"], r["kind"], int(r["records"]))
                for r in batch_day_counts(parsed, self.settings.business.timezone).collect()
            ]
            rows = sum(n for _, _, n in counts)
            rejected = sum(n for _, kind, n in counts if kind == REJECTED)
            validated = time.monotonic()
            if rows:
                query_id = batch.sparkSession.sparkContext.getLocalProperty(QUERY_ID_PROPERTY)
                if not query_id:  # foreachBatch always runs on the query's thread
                    raise RuntimeError(f"no {QUERY_ID_PROPERTY} on the batch's thread: not run by a streaming query?")
                self._write_with_retry(parsed, rejected, batch_id, query_id, counts)
        finally:
            parsed.unpersist()
        self.stats[batch_id] = {
            "rows": rows,
            "valid": rows - rejected,
            "rejected": rejected,
            "validate_s": validated - started,
            "write_s": time.monotonic() - validated,
        }

    def _write_with_retry(
        self, parsed: DataFrame, rejected: int, batch_id: int, query_id: str, counts: list[tuple[Any, str, int]]
    ) -> None:
        tz = self.settings.business.timezone
        deadline = time.monotonic() + self.options.write_retry_seconds
        pause, cause = 1.0, None
        while True:
            if cause is not None or not self.health.up() or self.health.outages != self.outages_seen:
                # Never hand the connector a session that was cut off: its schema refresh can
                # then block forever (seen with Java driver 4.18 after a Cassandra restart).
                # Wait until Cassandra is back, then write through a new session (a new epoch
                # is a new connector configuration, hence a session of its own).
                cause = cause or "node down"
                while not self.health.up():
                    self._give_up_after(deadline, cause, batch_id)
                    log.warning("batch %d: Cassandra at %s down (%s); waiting", batch_id, self._where(), cause)
                    time.sleep(2)
                self.outages_seen = self.health.outages
                self.epoch += 1
            try:
                valid_rows = parsed.transform(filter_valid).transform(to_raw_orders, tz)
                write_table(valid_rows, self.settings, RAW_ORDERS, self.epoch)
                if rejected:
                    rejected_rows = parsed.transform(filter_rejected).transform(to_rejected_events, tz)
                    # Rejected rows expire: a flood of bad records cannot fill the disk for good.
                    write_table(rejected_rows, self.settings, REJECTED_EVENTS, self.epoch,
                                ttl_seconds=self.settings.rejected.ttl_seconds)
                # Only after the rows: a total never counts a record that is not in its table
                # yet (the aggregate relies on it to tell late orders).
                self._write_day_counts(query_id, batch_id, counts)
                return
            except Exception as exc:
                # Every write is an idempotent upsert, so retrying any failure is safe; the
                # usual one is Cassandra being down or restarting.
                cause = short_cause(exc)
                self._give_up_after(deadline, cause, batch_id)
                log.warning("batch %d: Cassandra at %s unavailable (%s); retrying in %.0f s",
                            batch_id, self._where(), cause, pause)
                time.sleep(pause)
                pause = min(pause * 2, 10.0)

    def _write_day_counts(self, query_id: str, batch_id: int, counts: list[tuple[Any, str, int]]) -> None:
        if self.day_counts is None:
            self.day_counts = DayCountWriter(self.health.session, self.settings.cassandra.keyspace)
        # A record without a date cannot be in either table's key: nothing to count it under.
        self.day_counts.write(query_id, batch_id, [c for c in counts if c[0] is not None])

    def _give_up_after(self, deadline: float, cause: str, batch_id: int) -> None:
        if time.monotonic() < deadline:
            return
        self.failure = (
            f"cannot write to Cassandra at {self._where()} for {self.options.write_retry_seconds:.0f} s "
            f"({cause}); batch {batch_id} is not committed and will be replayed from checkpoint "
            f"{self.options.checkpoint} on restart"
        )
        raise CassandraUnavailable(self.failure)

    def _where(self) -> str:
        return f"{self.settings.cassandra.hosts}:{self.settings.cassandra.port}"


def offsets_behind(latest_json: str | None, end_json: str | None) -> int | None:
    """Records in the topic not yet processed: sum over partitions of latest - end."""
    if not latest_json or not end_json:
        return None
    latest, end = json.loads(latest_json), json.loads(end_json)
    behind = 0
    for topic, partitions in latest.items():
        for partition, offset in partitions.items():
            behind += max(0, int(offset) - int(end.get(topic, {}).get(partition, 0)))
    return behind


class ProgressLogger(StreamingQueryListener):
    """One log line per micro-batch, after it is committed: Spark's progress (input rows,
    rows/s, duration, offsets behind) with the valid/rejected counts of the batch."""

    def __init__(self, stats: dict[int, dict[str, Any]]):
        self.stats = stats

    def onQueryStarted(self, event: Any) -> None:
        log.info("query %s started (run %s)", event.id, event.runId)

    def onQueryProgress(self, event: Any) -> None:
        p = event.progress
        batch = self.stats.pop(p.batchId, {})
        # Spark reports 0 input rows for a batch replayed after a crash; our own count is right.
        rows = max(p.numInputRows, batch.get("rows", 0))
        if rows == 0:
            return
        seconds = p.durationMs.get("triggerExecution", 0) / 1000
        source = p.sources[0] if p.sources else None
        behind = offsets_behind(source.latestOffset, source.endOffset) if source else None
        log.info(
            "batch %d: %d rows (%s valid, %s rejected) in %.2f s (read+validate %.2f s, write %.2f s), "
            "%.0f rows/s, %s offsets behind",
            p.batchId, rows, batch.get("valid", "?"), batch.get("rejected", "?"), seconds,
            batch.get("validate_s", 0.0), batch.get("write_s", 0.0), rows / seconds if seconds else 0.0, behind,
        )

    def onQueryIdle(self, event: Any) -> None:
        pass

    def onQueryTerminated(self, event: Any) -> None:
        pass


def start_query(spark: SparkSession, records: DataFrame, writer: BatchWriter) -> StreamingQuery:
    options = writer.options
    writer.listener = ProgressLogger(writer.stats)
    spark.streams.addListener(writer.listener)
    return (
        records.writeStream.foreachBatch(writer)
        .option("checkpointLocation", options.checkpoint)
        .trigger(processingTime=options.trigger)
        .queryName(f"orderlog-streaming-{options.topic}")
        .start()
    )


def quiet_logs() -> None:
    """Python-side chatter that says nothing to an operator of this job (py4j's callback
    server at INFO). Spark's own level is set by jobs/conf/log4j2.properties."""
    logging.getLogger("py4j").setLevel(logging.WARNING)
    # Our health probe's reconnection chatter; the job reports outages itself.
    logging.getLogger("cassandra").setLevel(logging.CRITICAL)


class _JvmSignalHandler:
    """sun.misc.SignalHandler implemented in Python (py4j callback): SIGTERM sent to the
    spark-submit JVM, not only to this Python driver, asks for a clean stop."""

    def __init__(self, stop: threading.Event):
        self.stop = stop

    def handle(self, signal: Any) -> None:
        log.info("SIG%s received: stopping at the next batch boundary", signal.getName())
        self.stop.set()

    class Java:
        implements = ["sun.misc.SignalHandler"]


def install_stop_signals(spark: SparkSession, stop: threading.Event) -> object:
    """SIGTERM/SIGINT to the Python driver or to the JVM set ``stop``. Returns the JVM
    handler, which the caller keeps referenced."""
    import signal

    from pyspark.java_gateway import ensure_callback_server_started

    def on_signal(signum: int, _frame: object) -> None:
        log.info("%s received: stopping at the next batch boundary", signal.Signals(signum).name)
        stop.set()

    jvm = spark.sparkContext._jvm  # type: ignore[attr-defined]
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    gateway = spark.sparkContext._gateway  # type: ignore[attr-defined]
    ensure_callback_server_started(gateway)
    handler = _JvmSignalHandler(stop)
    for name in ("TERM", "INT"):
        jvm.sun.misc.Signal.handle(jvm.sun.misc.Signal(name), handler)
    return handler


def run_until_stopped(
    spark: SparkSession, query: StreamingQuery, writer: BatchWriter, stop: threading.Event,
    boundary_timeout: float = 600.0,
) -> None:
    """Waits for the query; on ``stop``, lets the running micro-batch finish and commit,
    then stops the query between batches. Raises the query's exception if it failed.

    A trigger that starts in the instant between the check and the stop is interrupted;
    it was not committed, so the next run replays it onto the same keys."""
    try:
        while not stop.is_set():
            if query.awaitTermination(0.5):  # raises if the query failed
                return
        deadline = time.monotonic() + boundary_timeout
        while query.isActive and query.status["isTriggerActive"] and time.monotonic() < deadline:
            time.sleep(0.02)
        query.stop()
        log.info("query stopped at a batch boundary; the checkpoint holds every committed batch")
    finally:
        # Our Python process is about to exit: the JVM must not call back into it.
        if writer.listener is not None:
            spark.streams.removeListener(writer.listener)


def check_cassandra(settings: Settings, retry_seconds: float) -> None:
    """Fails fast, with one clear line, when Cassandra or our tables are not there (retrying
    for ``retry_seconds`` first: in a compose file the job may start before Cassandra)."""
    from cassandra.cluster import NoHostAvailable

    from orderlog.cassandra_session import connect, shutdown

    where = f"{settings.cassandra.hosts}:{settings.cassandra.port}"
    deadline = time.monotonic() + retry_seconds
    while True:
        try:
            session = connect(settings, keyspace="", timeout=5.0)
            break
        except NoHostAvailable:
            if time.monotonic() >= deadline:
                raise CassandraUnavailable(f"Cassandra is unreachable at {where}") from None
            log.warning("Cassandra at %s unreachable; retrying", where)
            time.sleep(2)
    try:
        keyspace = session.cluster.metadata.keyspaces.get(settings.cassandra.keyspace)
        wanted = (RAW_ORDERS, REJECTED_EVENTS, STREAM_DAY_COUNTS)
        missing = [t for t in wanted if keyspace is None or t not in keyspace.tables]
        if missing:
            raise CassandraUnavailable(
                f"{settings.cassandra.keyspace}.{missing[0]} does not exist at {where}: "
                "run `python -m orderlog.schema apply`"
            )
        table = keyspace.tables[REJECTED_EVENTS]
        key = ([c.name for c in table.partition_key], [c.name for c in table.clustering_key])
        if key != REJECTED_EVENTS_KEY:
            # Writes would fail batch after batch; say it once, at start.
            raise CassandraUnavailable(
                f"{settings.cassandra.keyspace}.{REJECTED_EVENTS} at {where} has the layout of an older version "
                f"(key {key[0]}, {key[1]}): run `make schema` (python -m orderlog.schema apply) to migrate it"
            )
        if MIGRATION_STAGING in keyspace.tables:
            # Its rows are not all back in rejected_events yet: list and replay would miss them.
            raise CassandraUnavailable(
                f"{settings.cassandra.keyspace}.{REJECTED_EVENTS} at {where} is half migrated ({MIGRATION_STAGING} "
                "still exists): run `make schema` (python -m orderlog.schema apply) to finish the migration"
            )
    finally:
        shutdown(session)

