"""Starting the streaming query, and stopping it cleanly: SIGTERM or Ctrl-C, to the Python
driver or to the spark-submit JVM, lets the running micro-batch commit, then stops the
query between batches."""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any

from pyspark.java_gateway import ensure_callback_server_started
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQuery

from jobs.stream_progress import ProgressLogger
from jobs.stream_progress_store import ProgressStore
from jobs.stream_sink import BatchWriter

log = logging.getLogger("orderlog.streaming")


def quiet_logs() -> None:
    """Python-side chatter that says nothing to an operator of this job (py4j's callback
    server at INFO). Spark's own level is set by jobs/conf/log4j2.properties."""
    logging.getLogger("py4j").setLevel(logging.WARNING)
    # Our health probe's reconnection chatter; the job reports outages itself.
    logging.getLogger("cassandra").setLevel(logging.CRITICAL)


class StreamingRun:
    """The query of one run of the job: its writer, its progress log and its checkpoint."""

    def __init__(self, spark: SparkSession, records: DataFrame, writer: BatchWriter):
        stream = writer.settings.stream
        self.spark = spark
        self.progress_store = ProgressStore(writer.settings)
        self.listener = ProgressLogger(writer.stats, self.progress_store)
        spark.streams.addListener(self.listener)
        self.query: StreamingQuery = (
            records.writeStream.foreachBatch(writer)
            .option("checkpointLocation", stream.checkpoint_location)
            .trigger(processingTime=stream.trigger)
            .queryName(f"orderlog-streaming-{writer.settings.kafka.topic}")
            .start()
        )

    def run_until_stopped(self, stop: threading.Event, boundary_timeout: float = 600.0) -> None:
        """Waits for the query; on ``stop``, lets the running micro-batch finish and commit,
        then stops the query between batches. Raises the query's exception if it failed.

        A trigger that starts in the instant between the check and the stop is interrupted;
        it was not committed, so the next run replays it onto the same keys."""
        query = self.query
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
            self.spark.streams.removeListener(self.listener)
            self.progress_store.close_quietly()


class _JvmSignalHandler:
    """sun.misc.SignalHandler implemented in Python (py4j callback): SIGTERM sent to the
    spark-submit JVM, not only to this Python driver, asks for a clean stop."""

    def __init__(self, stop: threading.Event):
        self.stop = stop

    def handle(self, jvm_signal: Any) -> None:
        log.info("SIG%s received: stopping at the next batch boundary", jvm_signal.getName())
        self.stop.set()

    class Java:
        implements = ["sun.misc.SignalHandler"]


def install_stop_signals(spark: SparkSession, stop: threading.Event) -> object:
    """SIGTERM/SIGINT to the Python driver or to the JVM set ``stop``. Returns the JVM
    handler, which the caller keeps referenced."""

    def on_signal(signum: int, _frame: object) -> None:
        log.info("%s received: stopping at the next batch boundary", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # Spark has no Python API for the JVM's signals: spark-submit's JVM receives SIGTERM
    # first (an operator, a container runtime), so the handler is registered there through
    # py4j's gateway (_gateway, _jvm), with a Python callback.
    gateway = spark.sparkContext._gateway  # type: ignore[attr-defined]
    jvm = spark.sparkContext._jvm  # type: ignore[attr-defined]
    ensure_callback_server_started(gateway)
    handler = _JvmSignalHandler(stop)
    for name in ("TERM", "INT"):
        jvm.sun.misc.Signal.handle(jvm.sun.misc.Signal(name), handler)
    return handler
