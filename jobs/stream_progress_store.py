"""The streaming job's latest progress in Cassandra (stream_progress, one row per query of
the topic), written by the driver after each micro-batch, so that the viewer's status page
sees whether the stream keeps up without scraping the job.

A write that fails here costs the row, never the stream: one warning line when it starts
failing, one when it works again, and the batches go on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from jobs.stream_metrics import behind_by_partition
from orderlog.cassandra_session import connect, shutdown
from orderlog.config import Settings

log = logging.getLogger("orderlog.streaming")

STREAM_PROGRESS = "stream_progress"
# The driver waits at most this long for a progress write: the listener's thread must not hang.
WRITE_TIMEOUT_SECONDS = 5.0
COLUMNS = (
    "topic", "query_id", "run_id", "batch_id", "batch_at", "batch_duration_ms", "input_rows",
    "input_rows_per_second", "processed_rows_per_second", "offsets_behind", "rows_valid", "rows_rejected",
    "written_at",
)  # fmt: skip


def spark_time(text: str | None) -> datetime | None:
    """Spark's progress timestamp ('2026-05-31T03:00:00.123Z') as an aware UTC datetime."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


def progress_values(topic: str, progress: Any, batch: dict[str, Any], now: datetime) -> tuple[Any, ...]:
    """The stream_progress row of one batch, in COLUMNS order: Spark's progress of the batch
    and the writer's own counts for it. Offsets behind are those of ``topic`` only."""
    behind: dict[int, int] = {}
    for source in progress.sources:
        for (source_topic, partition), records in behind_by_partition(source.latestOffset, source.endOffset).items():
            if source_topic == topic:
                behind[int(partition)] = records
    return (
        topic, str(progress.id), str(progress.runId), int(progress.batchId), spark_time(progress.timestamp),
        int(progress.durationMs.get("triggerExecution", 0)), max(int(progress.numInputRows), batch.get("rows", 0)),
        float(progress.inputRowsPerSecond or 0.0), float(progress.processedRowsPerSecond or 0.0), behind,
        int(batch.get("valid", 0)), int(batch.get("rejected", 0)), now,
    )  # fmt: skip


class ProgressStore:
    """Writes stream_progress rows through a Cassandra session of its own, opened at the
    first write (the writer's session has its own outage rules); the driver's session
    reconnects by itself after an outage."""

    def __init__(self, settings: Settings, connect_session: Callable[[], Any] | None = None):
        self.topic = settings.kafka.topic
        self.keyspace = settings.cassandra.keyspace
        self.connect_session = connect_session or (lambda: connect(settings, keyspace="", timeout=3.0))
        self.session: Any = None
        self.batch_insert: Any = None
        self.idle_update: Any = None
        self.failing = False

    def batch_done(self, progress: Any, batch: dict[str, Any]) -> None:
        self._run(lambda: self.session.execute(
            self.batch_insert, progress_values(self.topic, progress, batch, datetime.now(UTC)),
            timeout=WRITE_TIMEOUT_SECONDS))

    def idle(self, event: Any) -> None:
        """The query has no new records: says it is alive (idle_at), the last batch stays."""
        at = spark_time(getattr(event, "timestamp", None)) or datetime.now(UTC)
        self._run(lambda: self.session.execute(
            self.idle_update, (str(event.runId), at, self.topic, str(event.id)), timeout=WRITE_TIMEOUT_SECONDS))

    def close(self) -> None:
        if self.session is not None:
            shutdown(self.session)
            self.session = None

    def close_quietly(self) -> None:
        """close(), at the job's end: a failure there is no reason for a non-zero exit."""
        try:
            self.close()
        except Exception:  # noqa: BLE001
            self.session = None

    def _prepare(self) -> None:
        if self.session is None:
            self.session = self.connect_session()
        if self.batch_insert is None:  # a missing table fails here, and is tried again next batch
            table = f"{self.keyspace}.{STREAM_PROGRESS}"
            self.idle_update = self.session.prepare(
                f"UPDATE {table} SET run_id = ?, idle_at = ? WHERE topic = ? AND query_id = ?")
            self.batch_insert = self.session.prepare(
                f"INSERT INTO {table} ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})")

    def _run(self, write: Callable[[], Any]) -> None:
        try:
            self._prepare()
            write()
        except Exception as exc:  # noqa: BLE001  any failure: the stream goes on without the row
            if not self.failing:
                cause = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
                log.warning("stream progress not recorded in %s.%s (%s); the stream goes on",
                            self.keyspace, STREAM_PROGRESS, cause)
            self.failing = True
            return
        if self.failing:
            log.info("stream progress recorded again in %s.%s", self.keyspace, STREAM_PROGRESS)
            self.failing = False
