"""Benchmark of the nightly aggregate on one day of generated orders.

    .venv/bin/python -m bench.aggregate_day --orders 100000 1000000 --users-per-order 0.1

For each size, in a keyspace of its own (default orderlog_bench_aggregate, emptied first):
writes a day of orders into raw_orders with the Spark connector, then times
  (a) a bare connector scan of the day's partitions (the floor: reading is unavoidable),
  (b) the aggregate job, in-process on the same local[2] session (first run of the day),
  (c) a straightforward single-threaded Python aggregator with cassandra-driver (what the
      original design did: read the day, then read-modify-write each user's preference),
and prints the times and the ratios job/scan and python/job. Not a test: nothing asserted.
"""

from __future__ import annotations

import argparse
import os
import time
from collections import defaultdict
from datetime import UTC, date, datetime

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from bench.wrk import result_line
from jobs.aggregate import aggregate
from jobs.aggregate_io import read_day
from jobs.cassandra_io import write_table
from jobs.session import local_session
from orderlog.cassandra_session import connect, shutdown
from orderlog.config import Settings, load_or_exit
from orderlog.layout import RAW_ORDER_BUCKETS, bucket_col
from orderlog.menu import JAPANESE, WESTERN, preference
from orderlog.schema import apply_cql
from orderlog.tables import table_names

DAY = date(2025, 5, 31)


def generate(spark: SparkSession, settings: Settings, orders: int, users: int) -> float:
    started = time.perf_counter()
    df = spark.range(0, orders, numPartitions=8).select(
        F.lit(DAY).alias("order_date"),
        F.concat(F.lit("bench-"), F.col("id").cast("string")).alias("order_id"),
        # A skewed spread of users: a few order a lot, most order once or twice.
        F.concat(F.lit("user-"), (F.pow(F.rand(7), 2) * users).cast("long").cast("string")).alias("user_id"),
        F.when(F.rand(11) < 0.55, F.lit(JAPANESE)).otherwise(F.lit(WESTERN)).alias("menu_type"),
        F.lit(datetime(2025, 5, 31, 3, tzinfo=UTC)).alias("ordered_at"),
    )
    write_table(df.withColumn("bucket", bucket_col(F.col("order_id"), RAW_ORDER_BUCKETS)), settings, "raw_orders")
    return time.perf_counter() - started


def bare_scan(spark: SparkSession, settings: Settings) -> tuple[float, int]:
    started = time.perf_counter()
    # Summing a column forces every row to be read and decoded (a plain count might not).
    row = (
        read_day(spark, settings, "raw_orders", DAY, RAW_ORDER_BUCKETS)
        .agg(F.count("user_id").alias("n"), F.sum(F.length("menu_type")).alias("chars"))
        .first()
    )
    return time.perf_counter() - started, int(row["n"])


def python_aggregator(settings: Settings) -> tuple[float, int, int]:
    """One thread, one driver session: the day's partitions, then per user a read and a
    write of the cumulative preference (the original design's nightly loop)."""
    session = connect(settings)
    started = time.perf_counter()
    read = session.prepare("SELECT user_id, menu_type FROM raw_orders WHERE order_date = ? AND bucket = ?")
    read.fetch_size = 5000
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for bucket in range(RAW_ORDER_BUCKETS):
        for r in session.execute(read, (DAY, bucket)):
            counts[r.user_id][0 if r.menu_type == JAPANESE else 1] += 1
    japanese = sum(c[0] for c in counts.values())
    western = sum(c[1] for c in counts.values())
    session.execute(
        "INSERT INTO daily_order_summaries (year, order_date, japanese, western, total, users) "
        "VALUES (%s, %s, %s, %s, %s, %s)",
        (DAY.year, DAY, japanese, western, japanese + western, len(counts)),
    )
    get = session.prepare("SELECT japanese, western FROM user_preferences WHERE user_id = ?")
    put = session.prepare(
        "INSERT INTO user_preferences (user_id, japanese, western, preference) VALUES (?, ?, ?, ?)"
    )
    for user, (j, w) in counts.items():
        old = session.execute(get, (user,)).one()
        j, w = j + (old.japanese if old else 0), w + (old.western if old else 0)
        session.execute(put, (user, j, w, preference(j, w)))
    elapsed = time.perf_counter() - started
    shutdown(session)
    return elapsed, japanese + western, len(counts)


def empty_keyspace(settings: Settings) -> None:
    apply_cql(settings)
    session = connect(settings)
    for name in table_names():
        session.execute(f"TRUNCATE {name}", timeout=120)
    shutdown(session)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--users-per-order", type=float, default=0.1, help="distinct users = orders x this")
    parser.add_argument("--keyspace", default="orderlog_bench_aggregate")
    args = parser.parse_args()
    settings = load_or_exit("bench.aggregate_day").replace(cassandra_keyspace=args.keyspace)
    spark = local_session(settings, "bench-aggregate")
    results = []
    for orders in args.orders:
        users = max(1, int(orders * args.users_per_order))
        empty_keyspace(settings)
        gen = generate(spark, settings, orders, users)
        bare_scan(spark, settings)  # warm-up: JIT, connector metadata, Cassandra caches
        scan, scanned = bare_scan(spark, settings)
        started = time.perf_counter()
        aggregate(spark, settings, [DAY], log=lambda line: None)
        job = time.perf_counter() - started
        runs = list(connect(settings).execute("SELECT orders_read, users_touched FROM aggregate_runs"))
        python, py_orders, py_users = python_aggregator(settings)
        assert runs[0].orders_read == scanned == py_orders, (runs, scanned, py_orders)
        results.append((orders, runs[0].users_touched, gen, scan, job, python))
        print(
            f"{orders:>9,} orders {runs[0].users_touched:>8,} users | generate {gen:7.1f}s | "
            f"bare scan {scan:6.1f}s | job {job:6.1f}s | python 1-thread {python:7.1f}s | "
            f"job/scan {job / scan:4.1f}x | python/job {python / job:4.1f}x",
            flush=True,
        )
    spark.stop()
    print("\n| orders | users | bare scan | aggregate job | 1-thread Python | job / scan | Python / job |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for orders, users, _, scan, job, python in results:
        print(
            f"| {orders:,} | {users:,} | {scan:.1f} s | {job:.1f} s | {python:.1f} s | "
            f"{job / scan:.1f}x | {python / job:.1f}x |"
        )
    largest = max(results)
    orders, users, _, scan, job, python = largest
    print(result_line(
        "aggregate",
        ratios={"job_vs_bare_scan": job / scan, "python_vs_job": python / job},
        figures={"orders": orders, "users": users, "job_s": job, "bare_scan_s": scan, "python_s": python,
                 "load_average_1m": os.getloadavg()[0]},
    ))


if __name__ == "__main__":
    main()
