"""One log line per micro-batch of the streaming job, after Spark committed it, its
Prometheus figures (jobs/stream_metrics.py) and its stream_progress row
(jobs/stream_progress_store.py)."""

from __future__ import annotations

import logging
from typing import Any

from pyspark.sql.streaming import StreamingQueryListener

from jobs import stream_metrics
from jobs.stream_metrics import behind_by_partition
from jobs.stream_progress_store import ProgressStore

log = logging.getLogger("orderlog.streaming")


def offsets_behind(latest_json: str | None, end_json: str | None) -> int | None:
    """Records in the topic not yet processed: sum over partitions of latest - end."""
    if not latest_json or not end_json:
        return None
    return sum(behind_by_partition(latest_json, end_json).values())


class ProgressLogger(StreamingQueryListener):
    """Spark's progress of each batch (input rows, rows/s, duration, offsets behind) with
    the batch's own counts, which the writer leaves in ``stats`` (batch id -> counts).
    ``store`` records each batch's progress in Cassandra (none: not recorded)."""

    def __init__(self, stats: dict[int, dict[str, Any]], store: ProgressStore | None = None):
        self.stats = stats
        self.store = store

    def onQueryStarted(self, event: Any) -> None:
        log.info("query %s started (run %s)", event.id, event.runId)

    def onQueryProgress(self, event: Any) -> None:
        p = event.progress
        batch = self.stats.pop(p.batchId, {})
        stream_metrics.record(p, batch)
        if self.store is not None:
            self.store.batch_done(p, batch)
        # Spark reports 0 input rows for a batch replayed after a crash; our own count is right.
        rows = max(p.numInputRows, batch.get("rows", 0))
        if rows == 0:
            return
        seconds = p.durationMs.get("triggerExecution", 0) / 1000
        source = p.sources[0] if p.sources else None
        behind = offsets_behind(source.latestOffset, source.endOffset) if source else None
        log.info(
            "batch %d: %d rows (%s valid, %s rejected) in %.2f s (read+validate+write orders %.2f s, rejected "
            "and totals %.2f s), %.0f rows/s, %s offsets behind",
            p.batchId, rows, batch.get("valid", "?"), batch.get("rejected", "?"), seconds,
            batch.get("orders_s", 0.0), batch.get("rest_s", 0.0), rows / seconds if seconds else 0.0, behind,
        )

    def onQueryIdle(self, event: Any) -> None:
        if self.store is not None:
            self.store.idle(event)

    def onQueryTerminated(self, event: Any) -> None:
        pass
