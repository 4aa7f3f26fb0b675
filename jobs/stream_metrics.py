"""The streaming job's Prometheus metrics, served by its driver on 127.0.0.1
(``ORDERLOG_STREAM_METRICS_PORT``, 8082 by default, 0 = off), from each micro-batch's
progress (Spark's StreamingQueryListener) and the writer's own counts."""

from __future__ import annotations

import json
import logging
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

log = logging.getLogger("orderlog.streaming")

REGISTRY = CollectorRegistry()
INPUT_RATE = Gauge("orderlog_stream_input_rows_per_second",
                   "records per second arriving in Kafka during the last batch (Spark's inputRowsPerSecond)",
                   registry=REGISTRY)
PROCESSED_RATE = Gauge("orderlog_stream_processed_rows_per_second",
                       "records per second the last batch processed (Spark's processedRowsPerSecond)",
                       registry=REGISTRY)
BATCH_DURATION = Histogram("orderlog_stream_batch_duration_seconds", "time of each micro-batch, trigger to commit",
                           buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300), registry=REGISTRY)
OFFSETS_BEHIND = Gauge("orderlog_stream_offsets_behind",
                       "records in the partition not yet processed, after the last batch (latest - end offset)",
                       ["topic", "partition"], registry=REGISTRY)
ROWS = Counter("orderlog_stream_rows", "records written, by outcome: valid (raw_orders) or rejected (rejected_events)",
               ["outcome"], registry=REGISTRY)
RETRIES = Counter("orderlog_stream_cassandra_retries",
                  "times a batch's writes were retried because Cassandra was unavailable", registry=REGISTRY)
LAST_BATCH = Gauge("orderlog_stream_last_batch_timestamp_seconds", "when the last batch finished (Unix time)",
                   registry=REGISTRY)


def behind_by_partition(latest_json: str | None, end_json: str | None) -> dict[tuple[str, str], int]:
    """(topic, partition) -> records not yet processed (latest - end, never negative)."""
    if not latest_json or not end_json:
        return {}
    latest, end = json.loads(latest_json), json.loads(end_json)
    return {
        (topic, partition): max(0, int(offset) - int(end.get(topic, {}).get(partition, 0)))
        for topic, partitions in latest.items() for partition, offset in partitions.items()
    }


def record(progress: Any, batch: dict[str, Any]) -> None:
    """One batch's figures: Spark's progress and the writer's counts for it."""
    INPUT_RATE.set(progress.inputRowsPerSecond or 0.0)
    PROCESSED_RATE.set(progress.processedRowsPerSecond or 0.0)
    BATCH_DURATION.observe(progress.durationMs.get("triggerExecution", 0) / 1000)
    for source in progress.sources:
        for (topic, partition), behind in behind_by_partition(source.latestOffset, source.endOffset).items():
            OFFSETS_BEHIND.labels(topic, partition).set(behind)
    ROWS.labels("valid").inc(batch.get("valid", 0))
    ROWS.labels("rejected").inc(batch.get("rejected", 0))
    RETRIES.inc(batch.get("retries", 0))
    LAST_BATCH.set_to_current_time()


def serve(port: int) -> bool:
    """Serve /metrics on 127.0.0.1:port (0: not at all). A port in use costs the metrics,
    never the job: one warning line."""
    if not port:
        return False
    try:
        start_http_server(port, addr="127.0.0.1", registry=REGISTRY)
    except OSError as exc:
        log.warning("metrics not served: 127.0.0.1:%d (%s)", port, exc)
        return False
    log.info("metrics on http://127.0.0.1:%d/metrics", port)
    return True
