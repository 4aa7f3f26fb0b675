"""The streaming job: Kafka topic -> validated orders in raw_orders, the rest in
rejected_events, exactly once in effect (checkpoint + idempotent keys).

    ./spark-submit.sh streaming [--topic T] [--checkpoint DIR] [--trigger '1 second']
        [--max-offsets-per-trigger N] [--starting-offsets earliest|latest] [--master M]

Each flag overrides its ORDERLOG_* setting (orderlog.config). SIGTERM or Ctrl-C stops it at
a batch boundary (exit 0); a failure exits 1 with one line; a bad setting or flag exits 2.
"""

from __future__ import annotations

import argparse
import sys
import threading

from jobs.cassandra_io import short_cause
from jobs.session import build_session
from jobs.stream_lifecycle import StreamingRun, install_stop_signals, quiet_logs
from jobs.stream_metrics import serve as serve_metrics
from jobs.stream_preflight import check_cassandra
from jobs.stream_sink import BatchWriter
from jobs.stream_source import read_kafka
from orderlog.cassandra_session import CassandraUnavailable
from orderlog.config import NON_EMPTY, POSITIVE, STARTING_OFFSETS, TOPIC, TRIGGER, Settings, flag, load_or_exit, seconds
from orderlog.logs import configure, report


def parse_args(argv: list[str], settings: Settings) -> argparse.Namespace:
    stream = settings.stream
    p = argparse.ArgumentParser(prog="streaming", description=__doc__.split("\n\n")[0])
    p.add_argument("--topic", type=flag(TOPIC), default=settings.kafka.topic)
    p.add_argument("--checkpoint", type=flag(NON_EMPTY), default=stream.checkpoint_location)
    p.add_argument("--trigger", type=flag(TRIGGER), default=stream.trigger,
                   help="processing-time trigger interval")
    p.add_argument("--max-offsets-per-trigger", type=flag(POSITIVE), default=stream.max_offsets_per_trigger)
    p.add_argument("--starting-offsets", type=flag(STARTING_OFFSETS), default=stream.starting_offsets,
                   help="where a new checkpoint starts: earliest, latest or Kafka's JSON form")
    p.add_argument("--write-retry-seconds", type=flag(seconds(0)), default=stream.write_retry_seconds,
                   help="how long a batch retries an unreachable Cassandra before the job exits 1")
    p.add_argument("--master", default=None, help="Spark master (default: spark-submit's)")
    return p.parse_args(argv, argparse.Namespace(settings=settings))


def main(argv: list[str]) -> int:
    args = parse_args(argv, load_or_exit("streaming"))
    configure("streaming", args.settings.log.format, text_format="%(asctime)s streaming %(levelname)s %(message)s")
    quiet_logs()
    settings = args.settings.replace(
        kafka_topic=args.topic, stream_checkpoint_location=args.checkpoint, stream_trigger=args.trigger,
        stream_max_offsets_per_trigger=args.max_offsets_per_trigger, stream_starting_offsets=args.starting_offsets,
        stream_write_retry_seconds=args.write_retry_seconds,
    )
    writer = BatchWriter(settings)
    try:
        check_cassandra(settings, settings.stream.write_retry_seconds)
        spark = build_session(settings, "orderlog-streaming", master=args.master)
        serve_metrics(settings.stream.metrics_port)
        stop = threading.Event()
        _handler = install_stop_signals(spark, stop)  # noqa: F841  (keeps the JVM callback alive)
        StreamingRun(spark, read_kafka(spark, settings), writer).run_until_stopped(stop)
    except CassandraUnavailable as exc:
        report("streaming", f"error: {exc}", log_format=settings.log.format)
        return 1
    except Exception as exc:  # the query failed: one line, the cause first
        report("streaming", f"error: {writer.failure or short_cause(exc)}", log_format=settings.log.format)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
