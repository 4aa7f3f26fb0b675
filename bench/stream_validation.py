"""Benchmark of the streaming job's validation alone, on cached records (prints figures;
asserts nothing). No Kafka, no Cassandra: the CPU per record of ``with_parsed`` on the
ingest API's canonical records (judged in Spark) and on the same events as a client writes
them (judged by ``parse_record`` in the pandas UDF, and in Spark's Arrow-optimized
row-at-a-time UDF, ``useArrow=True``), against two floors: reading the cached
records, and the native twin alone.

    .venv/bin/python -m bench.stream_validation [--records 100000] [--rounds 3]

CPU is the JVM's and its Python workers' (user + system), so a loaded machine inflates the
wall time but much less the CPU per record; the first round warms the JIT and the workers,
and the figures are the best round of each case. The last line of the output is one JSON
object: {"bench": "stream_validation", "ratios": {...}, "figures": {...}}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime

import psutil
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.session import local_session
from jobs.stream_lifecycle import quiet_logs
from jobs.stream_source import KAFKA_SCHEMA
from jobs.stream_transforms import parse_records_arrow, with_parsed
from orderlog.config import load_or_exit
from orderlog.events import OrderEvent, with_canonical_event

ORDERED_AT = datetime.fromisoformat("2025-05-31T12:00:00+09:00")
RECEIVED_AT = datetime(2025, 5, 31, 3, tzinfo=UTC)
KAFKA_TIME = datetime(2025, 5, 31, 4)


def api_record(i: int) -> bytes:
    menu = "japanese" if i % 3 else "western"
    return OrderEvent(f"r-{i}", f"user-{i % 5000}", menu, ORDERED_AT, RECEIVED_AT).to_json_bytes()


def client_record(i: int) -> bytes:
    menu = "japanese" if i % 3 else "western"
    return json.dumps({"user_id": f"user-{i % 5000}", "timestamp": "2025-05-31T12:00:00+09:00",
                       "menu_type": menu, "order_id": f"r-{i}"}).encode()


def read_only(df: DataFrame) -> list:
    return df.agg(F.sum(F.length("value")), F.sum("offset"), F.count("topic")).collect()


def native_only(df: DataFrame) -> list:
    now = F.least(F.col("timestamp"), F.current_timestamp())
    judged = df.transform(with_canonical_event, "n", F.col("value"), now, F.lit(True))
    return judged.agg(F.sum(F.length("n.order_id")), F.sum(F.unix_micros("n.timestamp")),
                      F.count("n.user_id")).collect()


def validated(df: DataFrame) -> list:
    parsed = df.transform(with_parsed)
    return parsed.agg(F.sum(F.length("parsed.order_id")), F.sum("parsed.ordered_at_us"),
                      F.count("parsed.reason")).collect()


def validated_by_arrow_udf(df: DataFrame) -> list:
    """validated, with Spark's Arrow-optimized row-at-a-time UDF in place of the pandas UDF."""
    parsed = df.transform(with_parsed, parse_records_arrow)
    return parsed.agg(F.sum(F.length("parsed.order_id")), F.sum("parsed.ordered_at_us"),
                      F.count("parsed.reason")).collect()


def cpu_seconds(jvm: psutil.Process) -> float:
    """The JVM's CPU and its Python workers' (they may come and go)."""
    total = 0.0
    for process in [jvm, *jvm.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def main() -> None:
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # the workers need pandas and pyarrow
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    settings = load_or_exit("bench.stream_validation")
    spark = local_session(settings, "bench-stream-validation")
    quiet_logs()
    frames = {}
    for form, make in (("api", api_record), ("client", client_record)):
        rows = [(b"k", make(i), "orders", i % 2, i, KAFKA_TIME, None) for i in range(args.records)]
        frames[form] = spark.createDataFrame(rows, KAFKA_SCHEMA).repartition(2).cache()
        frames[form].count()
    jvm = next(p for p in psutil.Process().children(recursive=True) if "java" in p.name())
    cases: list[tuple[str, Callable[[DataFrame], list], DataFrame]] = [
        ("read", read_only, frames["api"]),
        ("native_twin", native_only, frames["api"]),
        ("api_records", validated, frames["api"]),
        ("client_records", validated, frames["client"]),
        ("client_records_arrow_udf", validated_by_arrow_udf, frames["client"]),
    ]
    best: dict[str, float] = {}
    for round_number in range(1, args.rounds + 1):
        for name, run, frame in cases:
            cpu, wall = cpu_seconds(jvm), time.monotonic()
            run(frame)
            cpu_us = (cpu_seconds(jvm) - cpu) / args.records * 1e6
            wall_us = (time.monotonic() - wall) / args.records * 1e6
            print(f"round {round_number} {name:>24}: {cpu_us:6.1f} CPU us/record, {wall_us:6.1f} wall us/record "
                  f"(load {os.getloadavg()[0]:.1f})", flush=True)
            if round_number > 1 or args.rounds == 1:
                best[name] = min(best.get(name, float("inf")), cpu_us)
    spark.stop()
    figures = {f"cpu_us_per_record_{name}": round(us, 2) for name, us in best.items()}
    figures["records"] = args.records
    figures["load_average_end"] = round(os.getloadavg()[0], 2)
    ratios = {"api_vs_client_records": round(best["api_records"] / best["client_records"], 3),
              "arrow_udf_vs_pandas_udf": round(best["client_records_arrow_udf"] / best["client_records"], 3)}
    print(json.dumps({"bench": "stream_validation", "ratios": ratios, "figures": figures}))


if __name__ == "__main__":
    main()
