"""Benchmark of the streaming job's raw_orders write alone (prints figures; asserts nothing).

The same cached raw_orders rows (the bench's api-form events, as many tasks as cores, like
a micro-batch) are written by the Cassandra connector with each setting in turn, round
after round, so every setting sees the same load; the best and the median of the rounds
are reported. Writes are upserts of the same keys, so the table does not grow between
rounds.

    .venv/bin/python -m bench.stream_write --rows 20000 --rounds 3
    .venv/bin/python -m bench.stream_write --setting rows=64 --setting rows=64,writes=16

A setting is comma-separated key=value of: rows (spark.cassandra.output.batch.size.rows),
bytes (batch.size.bytes), writes (concurrent.writes), buffer (batch.grouping.buffer.size),
key (batch.grouping.key). "default" is the connector's defaults. The last line of the output
is one JSON object: {"bench": "stream_write", "ratios": {}, "figures": {...}}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid

from bench.streaming_throughput import KEYSPACE, RAW_COLUMNS, events, raw_rows
from jobs.cassandra_io import CONCURRENT_WRITES, write_table
from jobs.session import local_session
from jobs.stream_lifecycle import quiet_logs
from jobs.stream_sink import RAW_ORDERS
from local_stack.preflight import require_stack
from orderlog.config import load_or_exit
from orderlog.schema import apply_cql

OPTION_NAMES = {
    "rows": "spark.cassandra.output.batch.size.rows",
    "bytes": "spark.cassandra.output.batch.size.bytes",
    "writes": CONCURRENT_WRITES,
    "buffer": "spark.cassandra.output.batch.grouping.buffer.size",
    "key": "spark.cassandra.output.batch.grouping.key",
}
DEFAULT_SETTINGS = ["default", "bytes=16384", "writes=16", "bytes=16384,writes=16", "bytes=32768,writes=16"]


def options_of(setting: str) -> dict[str, str]:
    if setting == "default":
        return {}
    options = {}
    for part in setting.split(","):
        name, _, value = part.partition("=")
        if name not in OPTION_NAMES or not value:
            raise SystemExit(f"bench.stream_write: unknown setting {part!r} (use {', '.join(OPTION_NAMES)})")
        options[OPTION_NAMES[name]] = value
    return options


def main() -> None:
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=20_000, help="raw_orders rows written per setting and round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--setting", action="append", default=[], help="a setting to compare (repeatable)")
    args = p.parse_args()
    settings_list = args.setting or DEFAULT_SETTINGS
    for setting in settings_list:
        options_of(setting)

    settings = load_or_exit("bench.stream_write").replace(cassandra_keyspace=KEYSPACE)
    require_stack("bench.stream_write", settings, cassandra=True)
    apply_cql(settings)
    spark = local_session(settings, "bench-stream-write")
    quiet_logs()
    cores = spark.sparkContext.defaultParallelism
    rows = raw_rows(list(events(args.rows, uuid.uuid4().hex[:6], "api")), "bench", settings.business.tz)
    frame = spark.createDataFrame(rows, list(RAW_COLUMNS)).coalesce(2).cache()
    frame.count()
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start; {args.rows:,} rows, "
          f"{frame.rdd.getNumPartitions()} tasks (defaultParallelism {cores})")
    times: dict[str, list[float]] = {s: [] for s in settings_list}
    write_table(frame, settings, RAW_ORDERS)  # warm-up: the JIT, the connector's session
    for round_ in range(args.rounds):
        for setting in settings_list:
            started = time.monotonic()
            write_table(frame, settings, RAW_ORDERS, options=options_of(setting))
            times[setting].append(time.monotonic() - started)
        print(f"round {round_ + 1}: " + ", ".join(f"{s} {times[s][-1]:.2f} s" for s in settings_list)
              + f"; load average {os.getloadavg()[0]:.1f}")
    figures: dict[str, float] = {}
    for setting in settings_list:
        best, median = min(times[setting]), statistics.median(times[setting])
        figures[f"rows_per_s_best[{setting}]"] = round(args.rows / best)
        print(f"{setting:>24}: best {args.rows / best:,.0f} rows/s, median {args.rows / median:,.0f} rows/s")
    spark.stop()
    load = os.getloadavg()[0]
    print(f"load average {load:.1f} at end")
    print(json.dumps({"bench": "stream_write", "ratios": {}, "figures": {**figures, "load_average_end": load}}))


if __name__ == "__main__":
    main()
