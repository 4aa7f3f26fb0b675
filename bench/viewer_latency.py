"""Viewer API latency and throughput at N concurrent connections of wrk (bench/wrk.py),
against the real gunicorn server and the real Cassandra, with a year of daily summaries and
a million users in segments. Prints p50/p95/p99 and requests/s per call, the same figures
for the bare driver query under the same concurrency, and for the framework's floor: a
constant-JSON Flask endpoint of the summary answer's size under the viewer's gunicorn
configuration, measured in turns with the summary call (``--floor-rounds``, median ratio).
Ends with one JSON line (`{"bench": ..., "ratios": ..., "figures": ...}`).

    .venv/bin/python -m bench.viewer_latency                 # load (once) and measure
    .venv/bin/python -m bench.viewer_latency --skip-load     # measure only
    .venv/bin/python -m bench.viewer_latency --skip-load --audience   # the audience filters, cold and warm

Data goes to its own keyspace (orderlog_bench_viewer by default); the demo is untouched.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
from datetime import date, timedelta
from pathlib import Path

from cassandra.concurrent import execute_concurrent, execute_concurrent_with_args
from cassandra.query import BatchStatement, BatchType

from bench.wrk import floor_app, gunicorn, rounded, wrk
from local_stack.preflight import require_stack
from local_stack.supervisor import free_ports
from orderlog.cassandra_session import connect, shutdown
from orderlog.config import Settings, child_environment, load_or_exit
from orderlog.layout import SEGMENT_BUCKETS, bucket_of
from orderlog.menu import SEGMENTS, preference
from orderlog.schema import apply_cql

ROOT = Path(__file__).resolve().parent.parent

LATEST = date(2025, 5, 31)


def load(settings: Settings, users: int, days: int) -> None:
    apply_cql(settings)
    session = connect(settings)
    for table in ("daily_order_summaries", "segment_sizes", "user_segments", "hourly_order_counts"):
        session.execute(f"TRUNCATE {table}", timeout=120)
    rnd = random.Random(7)
    summary = session.prepare(
        "INSERT INTO daily_order_summaries (year, order_date, japanese, western, total, users, aggregated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, toTimestamp(now()))"
    )
    rows = []
    for n in range(days):
        d = LATEST - timedelta(days=n)
        j, w = rnd.randint(50_000, 70_000), rnd.randint(40_000, 60_000)
        rows.append((d.year, d, j, w, j + w, rnd.randint(60_000, 90_000)))
    execute_concurrent_with_args(session, summary, rows, concurrency=64, raise_on_first_error=True)
    # The 24 hourly counts of each date (what the heatmap reads), shaped like lunch and dinner.
    hour = session.prepare(
        "INSERT INTO hourly_order_counts (year, order_date, hour, japanese, western) VALUES (?, ?, ?, ?, ?)"
    )
    shape = [1, 0, 0, 0, 0, 0, 1, 2, 3, 3, 4, 8, 14, 10, 5, 3, 3, 5, 9, 12, 8, 4, 2, 1]
    hour_rows = [(y, d, h, rnd.randint(0, 600) * shape[h], rnd.randint(0, 500) * shape[h])
                 for y, d, *_ in rows for h in range(24)]
    execute_concurrent_with_args(session, hour, hour_rows, concurrency=64, raise_on_first_error=True)

    member = session.prepare(
        "INSERT INTO user_segments (segment, bucket, user_id, japanese, western, orders, last_order_date) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)"
    )
    counts = dict.fromkeys(SEGMENTS, 0)
    started, pending = time.monotonic(), {}
    # Unlogged batches of one partition each: one request writes 100 rows of a bucket,
    # which spares the Python driver most of its per-request cost.
    batches = []
    for n in range(users):
        user_id = f"u{n:07d}"
        j, w = rnd.randint(0, 20), rnd.randint(0, 20)
        seg = preference(j, w)
        counts[seg] += 1
        key = (seg, bucket_of(user_id, SEGMENT_BUCKETS))
        rows_of = pending.setdefault(key, [])
        rows_of.append((*key, user_id, j, w, j + w, LATEST - timedelta(days=rnd.randrange(days))))
        if len(rows_of) == 100:
            batches.append(_batch(member, pending.pop(key)))
        if len(batches) == 200 or n == users - 1:
            if n == users - 1:
                batches += [_batch(member, r) for r in pending.values()]
            execute_concurrent(session, [(b, ()) for b in batches], concurrency=32, raise_on_first_error=True)
            batches = []
            rate = (n + 1) / (time.monotonic() - started)
            print(f"\r  loaded {n + 1:,} users ({rate:,.0f} rows/s)", end="", flush=True)
    print()
    size = session.prepare(
        "INSERT INTO segment_sizes (year, as_of, segment, users, entered, exited) VALUES (?, ?, ?, ?, ?, ?)"
    )
    size_rows = []
    for n in range(days):
        d = LATEST - timedelta(days=n)
        for seg in SEGMENTS:
            size_rows.append((d.year, d, seg, max(0, counts[seg] - n * 500), 600, 100))
    execute_concurrent_with_args(session, size, size_rows, concurrency=64, raise_on_first_error=True)
    shutdown(session)
    print(f"  segments: {counts}")


def _batch(statement: object, rows: list[tuple]) -> object:
    batch = BatchStatement(batch_type=BatchType.UNLOGGED)
    for row in rows:
        batch.add(statement, row)
    return batch


def start_server(settings: Settings, port: int, workers: int, threads: int, cache: float) -> subprocess.Popen:
    env = child_environment(settings.replace(
        viewer_host="127.0.0.1", viewer_port=port, viewer_workers=workers, viewer_threads=threads,
        viewer_log_level="warning", viewer_cache_seconds=cache, viewer_user="", viewer_password="",
    ))
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "viewer/gunicorn.conf.py", "--access-logfile", "/dev/null",
         "viewer:create_app()"],
        cwd=ROOT, env=env,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("the viewer did not start")


def measure_wrk(port: int, paths: list[str], clients: int, seconds: float) -> dict:
    r = wrk(f"http://127.0.0.1:{port}", paths, seconds=seconds, connections=clients)
    return {"n": r["requests"], "p50": r["p50_ms"], "p95": r["p95_ms"], "p99": r["p99_ms"],
            "rps": r["requests_per_s"], "errors": r["failed"]}


def answer_size(port: int, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", path)
    return len(conn.getresponse().read())


def check_answers(port: int, calls: dict[str, list[str]]) -> None:
    """Every call answers 200 before it is timed: a keyspace loaded by an older version (a
    table missing) or not loaded at all would otherwise be measured as fast errors."""
    for name, paths in calls.items():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        conn.request("GET", paths[0])
        response = conn.getresponse()
        body = response.read()[:300].decode("utf-8", "replace")
        if response.status != 200:
            raise SystemExit(f"bench.viewer_latency: {name}: GET {paths[0]} answered {response.status} ({body}); "
                             "load the data again (run without --skip-load)")


def summarize(latencies: list[float], seconds: float, errors: int = 0) -> dict:
    ms = sorted(x * 1000 for x in latencies)
    q = statistics.quantiles(ms, n=100)
    return {"n": len(ms), "p50": q[49], "p95": q[94], "p99": q[98], "rps": len(ms) / seconds, "errors": errors}


def measure_driver(settings: Settings, clients: int, seconds: float) -> dict:
    """The bare prepared query of the summary call from one process at the same concurrency."""
    session = connect(settings)
    stmt = session.prepare(
        "SELECT order_date, japanese, western, total, users, aggregated_at "
        "FROM daily_order_summaries WHERE year = ? AND order_date = ?"
    )
    latencies: list[float] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def run(seed: int) -> None:
        rnd = random.Random(seed)
        mine = []
        while time.monotonic() < stop_at:
            d = LATEST - timedelta(days=rnd.randrange(365))
            t0 = time.perf_counter()
            session.execute(stmt, (d.year, d)).one()
            mine.append(time.perf_counter() - t0)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    shutdown(session)
    return summarize(latencies, seconds)


def measure_csv(port: int, segment: str) -> tuple[int, float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    t0 = time.perf_counter()
    conn.request("GET", f"/api/user_segments/{segment}.csv")
    response = conn.getresponse()
    lines = 0
    while chunk := response.read(1 << 16):
        lines += chunk.count(b"\n")
    return lines - 1, time.perf_counter() - t0


def measure_audience(port: int, segment: str, repeats: int = 3) -> dict[str, float]:
    """The audience filters on the whole segment, one request at a time on one worker: the
    first request of each call (cold: it computes the counts and bands it needs, except
    those an earlier call already cached), then the median of ``repeats`` more, each with
    another per_page (warm: the per-run cache answers the counts, the page itself is read;
    the same URL again would be answered whole by the response cache), and the ranked
    CSV's rows/s."""
    calls = {
        "count + first page, min_orders=30": f"/api/user_segments/{segment}?min_orders=30",
        "count + first page, min_orders=10": f"/api/user_segments/{segment}?min_orders=10",
        "count + first page, active_within_days=7": f"/api/user_segments/{segment}?active_within_days=7",
        "first page sorted by orders": f"/api/user_segments/{segment}?sort=orders",
        "page 50 sorted by orders": f"/api/user_segments/{segment}?sort=orders&page=50",
        "page 50 sorted by orders, min_orders=10": f"/api/user_segments/{segment}?sort=orders&page=50&min_orders=10",
    }
    figures: dict[str, float] = {}
    for name, path in calls.items():
        times, matching = [], None
        for n in range(1 + repeats):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
            t0 = time.perf_counter()
            conn.request("GET", f"{path}&per_page={100 - n}")
            body = json.loads(conn.getresponse().read())
            times.append(time.perf_counter() - t0)
            matching = body.get("matching")
        figures[f"{name} (cold)"], figures[name] = times[0], statistics.median(times[1:])
        print(f"{name:44} cold {times[0] * 1000:>7.0f} ms   warm {figures[name] * 1000:>6.0f} ms   "
              f"matching {matching:,}")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3600)
    t0 = time.perf_counter()
    conn.request("GET", f"/api/user_segments/{segment}.csv?sort=orders")
    response, rows = conn.getresponse(), -1
    while chunk := response.read(1 << 16):
        rows += chunk.count(b"\n")
    secs = time.perf_counter() - t0
    figures["sorted CSV rows/s"] = rows / secs
    print(f"{'CSV sorted by orders':44} {rows:,} rows in {secs:.1f} s ({rows / secs:,.0f} rows/s)")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keyspace", default="orderlog_bench_viewer")
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--skip-load", action="store_true")
    parser.add_argument("--floor-rounds", type=int, default=3,
                        help="rounds of (constant-JSON floor, summary call) whose median ratio is reported")
    parser.add_argument("--cache-seconds", type=float, default=5.0, help="ORDERLOG_VIEWER_CACHE_SECONDS of the server")
    parser.add_argument("--skip-baseline", action="store_true", help="no bare-driver run, no CSV export")
    parser.add_argument("--calls", default="", help="only the calls whose name contains one of these (comma-separated)")
    parser.add_argument("--audience", action="store_true",
                        help="only the audience filters on the biggest segment, one request at a time, cold and warm")
    args = parser.parse_args()
    settings = load_or_exit("bench.viewer_latency").replace(cassandra_keyspace=args.keyspace)
    require_stack("bench.viewer_latency", settings, cassandra=True)

    if not args.skip_load:
        print(f"loading {args.days} days of summaries and {args.users:,} users into {args.keyspace} ...")
        t0 = time.monotonic()
        load(settings, args.users, args.days)
        print(f"  loaded in {time.monotonic() - t0:.0f} s")

    if args.audience:
        session = connect(settings)
        sizes = {s: sum(session.execute("SELECT COUNT(*) FROM user_segments WHERE segment = %s AND bucket = %s",
                                        (s, b), timeout=120).one()[0] for b in range(SEGMENT_BUCKETS))
                 for s in SEGMENTS}
        shutdown(session)
        biggest = max(sizes, key=sizes.__getitem__)
        (port,) = free_ports(1)
        server = start_server(settings, port, 1, args.threads, 3600)
        try:
            print(f"\naudience filters of segment {biggest} ({sizes[biggest]:,} members), one worker\n")
            figures = measure_audience(port, biggest)
            print(f"load average at the end: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)")
            # How much of a cold call the per-run cache saves the next ones (warm / cold).
            ratios = {f"{name} warm/cold": figures[name] / figures[f"{name} (cold)"]
                      for name in figures if f"{name} (cold)" in figures}
            print(json.dumps({"bench": "viewer_audience", "ratios": rounded(ratios),
                              "figures": {**rounded(figures), "segment_members": sizes[biggest]}}))
        finally:
            server.terminate()
            server.wait(timeout=30)
        return

    rnd = random.Random(1)
    dates = [LATEST - timedelta(days=n) for n in range(args.days)]
    calls = {
        "summary of a date": [f"/api/daily_order_summaries?date={rnd.choice(dates)}" for _ in range(500)],
        "range of 30 days": [
            f"/api/daily_order_summaries?from={d - timedelta(days=29)}&to={d}"
            for d in (rnd.choice(dates) for _ in range(500))
        ],
        "segment first page (100)": [f"/api/user_segments/{s}?per_page=100" for s in SEGMENTS],
        "user_segments (3 first pages)": ["/api/user_segments"],
        "segment page 50 (by number)": [f"/api/user_segments/{s}?page=50&per_page=100" for s in SEGMENTS],
        "segment prefix search": [f"/api/user_segments/japanese?prefix=u0{rnd.randrange(100):02d}" for _ in range(200)],
        # issue 16's calls
        "range of 30 days vs 30 before": [
            f"/api/daily_order_summaries?from={d - timedelta(days=29)}&to={d}&compare_from={d - timedelta(days=59)}"
            for d in (rnd.choice(dates[:-60]) for _ in range(500))
        ],
        "daily summaries CSV (30 days)": [
            f"/api/daily_order_summaries.csv?from={d - timedelta(days=29)}&to={d}"
            for d in (rnd.choice(dates) for _ in range(500))
        ],
        "segment sizes CSV (30 days)": [
            f"/api/segment_sizes.csv?from={d - timedelta(days=29)}&to={d}"
            for d in (rnd.choice(dates) for _ in range(500))
        ],
        "hourly heatmap (30 days)": [
            f"/api/hourly_orders?from={d - timedelta(days=29)}&to={d}" for d in (rnd.choice(dates) for _ in range(500))
        ],
        "hourly heatmap (366 days, the most)": [
            f"/api/hourly_orders?from={d - timedelta(days=365)}&to={d}" for d in (rnd.choice(dates) for _ in range(50))
        ],
        "users by prefix (20 of ~10,000)": [f"/api/users?prefix=u0{rnd.randrange(100):02d}" for _ in range(200)],
        "users by prefix (20 of ~1,000)": [f"/api/users?prefix=u0{rnd.randrange(1000):03d}" for _ in range(500)],
        # audience filters: SAI queries per bucket; the exact count is kept until the next run
        # (here the cache decides; --audience measures them uncached)
        "audience page: min_orders=25 (100)": [f"/api/user_segments/{s}?min_orders=25" for s in SEGMENTS[:2]],
        "audience page: active 7 days, prefix u0NN": [
            f"/api/user_segments/japanese?active_within_days=7&prefix=u0{rnd.randrange(100):02d}" for _ in range(200)
        ],
        "audience page: sort=orders, prefix u0NN": [
            f"/api/user_segments/japanese?sort=orders&prefix=u0{rnd.randrange(100):02d}" for _ in range(200)
        ],
    }
    if args.calls:
        wanted = [c.strip() for c in args.calls.split(",")]
        calls = {name: paths for name, paths in calls.items() if any(w in name for w in wanted)}

    (port,) = free_ports(1)
    server = start_server(settings, port, args.workers, args.threads, args.cache_seconds)
    try:
        print(f"\nviewer: gunicorn {args.workers} workers x {args.threads} threads; "
              f"cache {args.cache_seconds:g} s; {args.clients} concurrent clients, {args.seconds:.0f} s per call\n")
        check_answers(port, calls)
        measure_wrk(port, next(iter(calls.values())), args.clients, 3)  # warm-up
        print(f"{'call':34} {'requests':>9} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'errors':>6}")
        # The floor, the bare query and the CSV first: the slowest calls below (cold audience
        # counts) leave the viewer busy for seconds after wrk stops, which would share the CPU.
        floor = None
        rounds: list[tuple[dict, dict]] = []
        if not args.calls:
            summary_bytes = answer_size(port, calls["summary of a date"][0])
            (floor_port,) = free_ports(1)
            floor_env = child_environment(settings.replace(viewer_workers=args.workers, viewer_threads=args.threads,
                                                           viewer_log_level="warning"))
            # The floor and the summary call in turns, each round's two runs a few seconds
            # apart: the machine's speed drifts by more than the gap between them over minutes
            # (a compaction, another process), so the ratio is each round's, and the median of those.
            with gunicorn("viewer/gunicorn.conf.py", floor_app(summary_bytes), floor_port, floor_env,
                          "/floor") as floor_base:
                floor_url = floor_base.removeprefix("http://127.0.0.1:")
                for _ in range(args.floor_rounds):
                    floor_run = measure_wrk(int(floor_url), ["/floor"], args.clients, args.seconds)
                    summary_run = measure_wrk(port, calls["summary of a date"], args.clients, args.seconds)
                    rounds.append((floor_run, summary_run))
                    print(f"{f'constant JSON ({summary_bytes} bytes)':34} {floor_run['n']:>9,} "
                          f"{floor_run['rps']:>8.0f} {floor_run['p50']:>8.1f} {floor_run['p95']:>8.1f} "
                          f"{floor_run['p99']:>8.1f} {floor_run['errors']:>6}")
                    print(f"{'  then the summary of a date':34} {summary_run['n']:>9,} {summary_run['rps']:>8.0f} "
                          f"{summary_run['p50']:>8.1f} {summary_run['p95']:>8.1f} {summary_run['p99']:>8.1f} "
                          f"{summary_run['errors']:>6}   ratio {summary_run['rps'] / floor_run['rps']:.2f}")
            floor = statistics.median(f["rps"] for f, _ in rounds)
        base = csv_rate = None
        if not args.calls and not args.skip_baseline:
            base = measure_driver(settings, args.clients, args.seconds)
            print(f"{'bare driver: summary query':34} {base['n']:>9,} {base['rps']:>8.0f} {base['p50']:>8.1f} "
                  f"{base['p95']:>8.1f} {base['p99']:>8.1f}")
            rows, secs = measure_csv(port, "japanese")
            csv_rate = rows / secs
            print(f"CSV export of the japanese segment: {rows:,} rows in {secs:.1f} s ({csv_rate:,.0f} rows/s)")
        results = {}
        for name, paths in calls.items():
            r = measure_wrk(port, paths, args.clients, args.seconds)
            results[name] = r
            print(f"{name:34} {r['n']:>9,} {r['rps']:>8.0f} {r['p50']:>8.1f} {r['p95']:>8.1f} {r['p99']:>8.1f} "
                  f"{r['errors']:>6}")
        failed = {name: r["errors"] for name, r in results.items() if r["errors"]}
        if failed:
            raise SystemExit(f"bench.viewer_latency: requests failed (non-2xx or socket errors): {failed}")
        if args.calls:  # a quick look at some calls: no floor, no baseline, no JSON line
            print(f"load average at the end: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)")
            return
        assert floor is not None
        s = results["summary of a date"]
        round_ratios = [summary_run["rps"] / floor_run["rps"] for floor_run, summary_run in rounds]
        if base is not None:
            print(f"\nratio summary call / bare query: throughput {s['rps'] / base['rps']:.2f}, "
                  f"p95 {s['p95'] / base['p95']:.1f}x")
        load_average = os.getloadavg()[0]
        print(f"load average at the end: {load_average:.2f} ({os.cpu_count()} cores)")
        p95 = {name: r["p95"] for name, r in results.items()}
        ratios = {
            "summary_vs_framework_floor": statistics.median(round_ratios),
            "summary_vs_framework_floor_lowest_round": min(round_ratios),
            "summary_vs_framework_floor_highest_round": max(round_ratios),
            "summary_vs_bare_driver": None if base is None else s["rps"] / base["rps"],
        }
        figures = {
            "summary_p95_ms": p95["summary of a date"],
            "range_p95_ms": p95["range of 30 days"],
            "segment_first_page_p95_ms": p95["segment first page (100)"],
            "user_segments_p95_ms": p95["user_segments (3 first pages)"],
            "segment_page_50_p95_ms": p95["segment page 50 (by number)"],
            "prefix_search_p95_ms": p95["segment prefix search"],
            "summary_requests_per_s": statistics.median(r["rps"] for _, r in rounds),
            "framework_floor_requests_per_s": floor,
            "csv_rows_per_s": csv_rate,
            "load_average_1m": load_average,
        }
        print(json.dumps({"bench": "viewer", "ratios": rounded(ratios), "figures": rounded(figures)}))
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
