"""Benchmark of the nightly aggregate on one day of generated orders.

    .venv/bin/python -m bench.aggregate_day --orders 100000 1000000 --users-per-order 0.1
    .venv/bin/python -m bench.aggregate_day --quick      # 20,000 orders, no Python aggregator

For each size, in a keyspace of its own (default orderlog_bench_aggregate, emptied first):
writes a day of orders into raw_orders with the Spark connector, then times
  (a) a bare connector scan of the day's partitions (the first floor: reading is unavoidable),
  (b) the scan plus a connector write of one row per touched user (the second floor: the
      least any nightly job must write), into a bench-only table,
  (c) the aggregate job, in-process on the same local[2] session (first run of the day),
      with the time of each of its steps and the number of Spark jobs it ran,
  (d) a straightforward single-threaded Python aggregator with cassandra-driver (what the
      original design did: read the day, then read-modify-write each user's preference),
and prints the times and the ratios. Not a test: nothing asserted. The last line of the
output is one JSON object: {"bench": "aggregate", "ratios": {...}, "figures": {...}}.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from jobs.aggregate import WRITE_OPTIONS, aggregate
from jobs.aggregate_io import read_day
from jobs.cassandra_io import write_table
from jobs.session import local_session
from local_stack.preflight import require_stack
from orderlog.cassandra_session import connect, shutdown
from orderlog.config import Settings, load_or_exit
from orderlog.layout import RAW_ORDER_BUCKETS, bucket_col
from orderlog.menu import JAPANESE, WESTERN, preference
from orderlog.schema import apply_cql
from orderlog.tables import table_names

DAY = date(2025, 5, 31)


def generate(spark: SparkSession, settings: Settings, orders: int, users: int, day: date = DAY) -> float:
    started = time.perf_counter()
    seed = day.toordinal()  # another spread of users (from the same pool) on each day
    df = spark.range(0, orders, numPartitions=8).select(
        F.lit(day).alias("order_date"),
        F.concat(F.lit(f"bench-{day}-"), F.col("id").cast("string")).alias("order_id"),
        # A skewed spread of users: a few order a lot, most order once or twice.
        F.concat(F.lit("user-"), (F.pow(F.rand(seed), 2) * users).cast("long").cast("string")).alias("user_id"),
        F.when(F.rand(seed + 1) < 0.55, F.lit(JAPANESE)).otherwise(F.lit(WESTERN)).alias("menu_type"),
        # Spread over the day, so the aggregate's hourly counts fill every hour.
        (F.lit(int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) - 9 * 3600)
         + (F.rand(seed + 2) * 86_400).cast("long")).cast("timestamp").alias("ordered_at"),
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


FLOOR_TABLE = "bench_floor_user_rows"


def scan_and_write_floor(spark: SparkSession, settings: Settings) -> tuple[float, int]:
    """The second floor: the day's scan, one row per user counted, written by the connector."""
    started = time.perf_counter()
    per_user = (
        read_day(spark, settings, "raw_orders", DAY, RAW_ORDER_BUCKETS)
        .groupBy("user_id")
        .agg(F.count("*").cast("int").alias("orders"))
    )
    write_table(per_user, settings, FLOOR_TABLE, options=WRITE_OPTIONS)
    elapsed = time.perf_counter() - started
    session = connect(settings)
    users = session.execute(f"SELECT COUNT(*) FROM {FLOOR_TABLE}", timeout=120).one()[0]
    shutdown(session)
    return elapsed, int(users)


def timed_job(spark: SparkSession, settings: Settings, day: date = DAY) -> tuple[float, dict[str, float], int]:
    """The aggregate of day: total seconds, seconds per step (from the job's own step hook)
    and the number of Spark jobs it ran."""
    steps: dict[str, float] = {}
    marks = [time.perf_counter()]

    def step_done(step: str) -> None:
        marks.append(time.perf_counter())
        steps[step] = marks[-1] - marks[-2]

    group = f"bench-aggregate-{time.monotonic_ns()}"
    spark.sparkContext.setJobGroup(group, "the aggregate job under benchmark")
    aggregate(spark, settings, [day], log=lambda line: None, after_step=step_done)
    job = time.perf_counter() - marks[0]
    steps["segment_sizes_and_ledger"] = time.perf_counter() - marks[-1]
    jobs = len(spark.sparkContext.statusTracker().getJobIdsForGroup(group))
    spark.sparkContext.setJobGroup("", "")
    return job, steps, jobs


def history_run(spark: SparkSession, settings: Settings, days: int, orders: int, users: int) -> list[dict]:
    """Days 1..days of orders from one pool of users, each aggregated in order: the time of
    each day's run, to see whether a day gets slower as the history behind it grows."""
    empty_keyspace(settings)
    first = DAY - timedelta(days=days - 1)
    rows = []
    for n in range(days):
        day = first + timedelta(days=n)
        generate(spark, settings, orders, users, day)
        job, _, spark_jobs = timed_job(spark, settings, day)
        rows.append({"day": n + 1, "date": str(day), "orders": orders, "job_s": round(job, 3),
                     "spark_jobs": spark_jobs})
        print(f"history day {n + 1:>2} ({day}): {orders:,} orders, job {job:5.1f}s ({spark_jobs} Spark jobs)",
              flush=True)
    return rows


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
    session.execute(
        f"CREATE TABLE IF NOT EXISTS {FLOOR_TABLE} (user_id text PRIMARY KEY, orders int)", timeout=120
    )
    for name in [*table_names(), FLOOR_TABLE]:
        session.execute(f"TRUNCATE {name}", timeout=120)
    shutdown(session)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--users-per-order", type=float, default=0.1, help="distinct users = orders x this")
    parser.add_argument("--keyspace", default="orderlog_bench_aggregate")
    parser.add_argument("--skip-python", action="store_true", help="do not run the 1-thread Python aggregator")
    parser.add_argument("--quick", action="store_true", help="one small day (20,000 orders), no Python aggregator")
    parser.add_argument("--history-days", type=int, default=0,
                        help="also aggregate this many consecutive days in order (day 1 vs the last day)")
    parser.add_argument("--history-orders", type=int, default=20_000, help="orders per day of the history run")
    parser.add_argument("--plot", help="write the cost curves to this PNG")
    args = parser.parse_args()
    if args.quick:
        args.orders, args.skip_python = [20_000], True
    settings = load_or_exit("bench.aggregate_day").replace(cassandra_keyspace=args.keyspace)
    require_stack("bench.aggregate_day", settings, cassandra=True)
    spark = local_session(settings, "bench-aggregate")
    results = []
    for orders in args.orders:
        users = max(1, int(orders * args.users_per_order))
        empty_keyspace(settings)
        gen = generate(spark, settings, orders, users)
        bare_scan(spark, settings)  # warm-up: JIT, connector metadata, Cassandra caches
        scan, scanned = bare_scan(spark, settings)
        floor, floor_users = scan_and_write_floor(spark, settings)
        job, steps, spark_jobs = timed_job(spark, settings)
        runs = list(connect(settings).execute("SELECT orders_read, users_touched FROM aggregate_runs"))
        python, py_orders = (None, scanned) if args.skip_python else python_aggregator(settings)[:2]
        assert runs[0].orders_read == scanned == py_orders, (runs, scanned, py_orders)
        assert runs[0].users_touched == floor_users, (runs, floor_users)
        result = {
            "orders": orders, "users": runs[0].users_touched, "generate_s": gen, "scan_s": scan,
            "floor_s": floor, "job_s": job, "python_s": python, "spark_jobs": spark_jobs, "steps_s": steps,
        }
        results.append(result)
        print(
            f"{orders:>9,} orders {result['users']:>8,} users | bare scan {scan:6.1f}s | "
            f"scan+write floor {floor:6.1f}s | job {job:6.1f}s ({spark_jobs} Spark jobs) | "
            f"python 1-thread {_seconds(python)} | job/floor {job / floor:4.1f}x | job/scan {job / scan:4.1f}x",
            flush=True,
        )
        print("    steps: " + ", ".join(f"{k} {v:.1f}s" for k, v in steps.items()), flush=True)
    history = []
    if args.history_days:
        pool = max(1, int(args.history_orders * args.users_per_order))
        history = history_run(spark, settings, args.history_days, args.history_orders, pool)
    spark.stop()
    print("\n| orders | users | bare scan | scan + write floor | aggregate job | Spark jobs | 1-thread Python "
          "| job / floor | job / scan | Python / job |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['orders']:,} | {r['users']:,} | {r['scan_s']:.1f} s | {r['floor_s']:.1f} s | {r['job_s']:.1f} s | "
            f"{r['spark_jobs']} | {_seconds(r['python_s'])} | {r['job_s'] / r['floor_s']:.1f}x | "
            f"{r['job_s'] / r['scan_s']:.1f}x | {_ratio(r['python_s'], r['job_s'])} |"
        )
    line = summary_line(results)
    if history:
        line["figures"]["history"] = history
        line["ratios"][f"history_day_{len(history)}_vs_day_1"] = round(history[-1]["job_s"] / history[0]["job_s"], 2)
    if args.plot:
        plot(results, history, args.plot)
    print(json.dumps(line))


def plot(results: list[dict], history: list[dict], path: str) -> None:
    """Time per order against the day's size, and the job's time against the day in a history."""
    import matplotlib  # only when a plot is asked for

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, axes = plt.subplots(1, 2 if history else 1, figsize=(11 if history else 6, 4), squeeze=False)
    ax = axes[0][0]
    sizes = [r["orders"] for r in results]
    for key, label in (("job_s", "aggregate job"), ("floor_s", "scan + write one row per user"),
                       ("scan_s", "bare scan")):
        ax.plot(sizes, [r[key] / r["orders"] * 1e6 for r in results], marker="o", label=label)
    ax.set(xscale="log", yscale="log", xlabel="orders in the day", ylabel="µs per order",
           title="Aggregate: cost per order")
    ax.legend()
    if history:
        ax = axes[0][1]
        ax.plot([h["day"] for h in history], [h["job_s"] for h in history], marker="o")
        ax.set(xlabel="day of the history", ylabel="job seconds", ylim=(0, None),
               title=f"Aggregate: a day of {history[0]['orders']:,} orders as history grows")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def _ratio(value: float | None, base: float) -> str:
    return "-" if value is None else f"{value / base:.1f}x"


def summary_line(results: list[dict]) -> dict:
    """The one JSON line a script reads: ratios at 1M orders when that size ran."""
    ratios: dict[str, float] = {}
    for r in results:
        label = f"{r['orders'] // 1_000_000}m" if r["orders"] % 1_000_000 == 0 else f"{r['orders'] // 1000}k"
        ratios[f"job_vs_floor_{label}"] = round(r["job_s"] / r["floor_s"], 2)
        ratios[f"job_vs_scan_{label}"] = round(r["job_s"] / r["scan_s"], 2)
    figures = {
        f"orders_{r['orders']}": {
            **{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items() if k != "steps_s"},
            "job_us_per_order": round(r["job_s"] / r["orders"] * 1e6, 2),
            "steps_s": {k: round(v, 3) for k, v in r["steps_s"].items()},
        }
        for r in results
    }
    return {"bench": "aggregate", "ratios": ratios, "figures": figures}


if __name__ == "__main__":
    main()
