"""Prometheus metrics of the HTTP apps: the multiprocess plumbing gunicorn needs, and the
``/metrics`` answer.

Under gunicorn each worker is a process of its own, so prometheus-client's multiprocess
mode is on: every worker writes its figures to files in ``PROMETHEUS_MULTIPROC_DIR`` and
``/metrics``, whichever worker answers it, adds up all of them. The folder must be fresh
and empty at each server start and exist before a worker imports prometheus_client, so
the gunicorn configs call ``start_multiprocess`` (a new temporary folder per start),
``worker_exited`` from their ``child_exit`` hook and ``stop_multiprocess`` on exit. Without
gunicorn (tests with Flask's client) the figures live in the process's default registry.

Nothing here imports prometheus_client at module level: a gunicorn config imports this
module before the folder is set.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from typing import Any

# Request latency buckets, seconds: a single event takes milliseconds, a 10,000-event batch
# or a whole-segment page up to seconds; Kafka's acknowledgement waits up to the ack timeout.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def start_multiprocess(server: str) -> str:
    """A fresh empty folder for this server start's figures, set in the environment the
    workers inherit. Returns its path."""
    path = tempfile.mkdtemp(prefix=f"orderlog-{server}-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    return path


def worker_exited(pid: int) -> None:
    """A dead worker's live figures (gauges of its own) no longer count."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


def stop_multiprocess(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


class _Collected:
    """Collectors made at scrape time (figures read from Cassandra, say)."""

    def __init__(self, collectors: Iterable[Any]):
        self.collectors = list(collectors)

    def collect(self) -> Iterable[Any]:
        for collector in self.collectors:
            yield from collector.collect()


def exposition(extra: Iterable[Any] = ()) -> tuple[bytes, str]:
    """The body and content type of ``/metrics``: every worker's figures (or this process's),
    and those of the ``extra`` collectors."""
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess

    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_Collected([REGISTRY]))
    registry.register(_Collected(extra))
    return generate_latest(registry), CONTENT_TYPE_LATEST
