"""The streaming job: Kafka topic -> validated orders in raw_orders, the rest in
rejected_events, exactly once in effect (checkpoint + idempotent keys).

    ./spark-submit.sh streaming [--topic T] [--checkpoint DIR] [--trigger '1 second']
        [--max-offsets-per-trigger N] [--starting-offsets earliest|latest] [--master M]

Each flag overrides its ORDERLOG_* setting (orderlog.config). SIGTERM or Ctrl-C stops it at
a batch boundary (exit 0); a failure exits 1 with one line; a bad setting or flag exits 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading

from jobs import stream_io
from jobs.session import build_session
from jobs.stream_io import CassandraUnavailable
from orderlog.config import NON_EMPTY, POSITIVE, STARTING_OFFSETS, TOPIC, TRIGGER, Settings, flag, load_or_exit, seconds


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
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s streaming %(levelname)s %(message)s")
    stream_io.quiet_logs()
    settings = load_or_exit("streaming")
    args = parse_args(argv, settings)
    options = stream_io.StreamOptions(
        args.topic, args.checkpoint, args.trigger, args.max_offsets_per_trigger,
        args.starting_offsets, args.write_retry_seconds,
    )
    writer = stream_io.BatchWriter(settings, options)
    try:
        stream_io.check_cassandra(settings, options.write_retry_seconds)
        spark = build_session(settings, "orderlog-streaming", master=args.master)
        stop = threading.Event()
        _handler = stream_io.install_stop_signals(spark, stop)  # noqa: F841  (keeps the JVM callback alive)
        query = stream_io.start_query(spark, stream_io.read_kafka(spark, settings, options), writer)
        stream_io.run_until_stopped(spark, query, writer, stop)
    except CassandraUnavailable as exc:
        print(f"streaming: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # the query failed: one line, the cause first
        print(f"streaming: error: {writer.failure or stream_io.short_cause(exc)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
