"""Benchmark of the streaming job (prints figures; asserts nothing).

1. Sustained throughput, at each size of --sizes: pre-load N events into a fresh topic, then
   time the job's own source + foreachBatch writer (local[2], availableNow) draining them
   into Cassandra; the time per event, and the Spark jobs per batch (the query's job group).
   The events are the ingest API's own records (OrderEvent.to_json_bytes, judged in Spark);
   --form client sends the same events as clients write them (judged by the Python UDF).
2. The ceiling, measured first (on a Cassandra not yet compacting the job's rows): the same
   rows written to the same Cassandra node by a concurrent cassandra-driver writer (prepared
   INSERT, execute_concurrent, one process per core), on --raw-events rows;
   stream_vs_raw_writer is the job's rate at the largest size over it. --plot FILE.png draws
   the cost per event against the size.
3. End-to-end latency at a steady rate: `./spark-submit.sh streaming` runs as a subprocess;
   events are produced at R/s, and a poller reads Cassandra until each row is readable
   (raw_orders emptied first: the poller reads today's partitions).

    .venv/bin/python -m bench.streaming_throughput [--sizes 100000,1000000,5000000] [--rate 1000] [--seconds 30]
    .venv/bin/python -m bench.streaming_throughput --sizes 20000 --raw-events 20000 --skip latency  # quick

Uses its own keyspace (orderlog_bench_streaming) and fresh topics; the demo is untouched.
The last line of the output is one JSON object: {"bench": "streaming", "ratios": {...},
"figures": {...}} (a figure not measured in the run is null).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path

from cassandra.concurrent import execute_concurrent, execute_concurrent_with_args
from cassandra.query import BatchStatement, BatchType
from confluent_kafka import KafkaError, Producer
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from jobs.session import local_session
from jobs.stream_lifecycle import quiet_logs
from jobs.stream_sink import BatchWriter
from jobs.stream_source import read_kafka
from jobs.stream_transforms import parse_one
from local_stack.preflight import require_stack
from orderlog.business_day import business_date
from orderlog.cassandra_session import connect, shutdown
from orderlog.config import Settings, child_environment, load_or_exit
from orderlog.events import OrderEvent, parse_record
from orderlog.layout import RAW_ORDER_BUCKETS, bucket_of
from orderlog.schema import apply_cql

ROOT = Path(__file__).resolve().parent.parent

KEYSPACE = "orderlog_bench_streaming"
STAMPS = ["2025-05-31T12:00:00+09:00", "2025-05-31T23:59:59+09:00", "2025-06-01T09:30:00+09:00"]
# The raw_orders columns of a raw_rows() tuple, in its order.
RAW_COLUMNS = ("order_date", "bucket", "order_id", "user_id", "menu_type", "ordered_at", "ordered_at_text",
               "received_at", "kafka_partition", "kafka_offset", "ingested_at")
INSERT = f"INSERT INTO raw_orders ({', '.join(RAW_COLUMNS)}) VALUES ({', '.join('?' * len(RAW_COLUMNS))})"


RECEIVED_AT = datetime(2025, 5, 31, 3, tzinfo=UTC)
# Two forms of the same events: as the ingest API writes them, and as a client may send them.
API, CLIENT = "api", "client"


def event(i: int, run: str, stamp: str, form: str = API) -> bytes:
    menu = "japanese" if i % 3 else "western"
    if form == CLIENT:  # another key order and spacing, no milliseconds: the Python path
        return json.dumps({"user_id": f"user-{i % 50_000}", "timestamp": stamp, "menu_type": menu,
                           "order_id": f"{run}-{i}", "received_at": "2025-05-31T03:00:00Z"}).encode()
    timestamp = datetime.fromisoformat(stamp)
    return OrderEvent(f"{run}-{i}", f"user-{i % 50_000}", menu, timestamp, RECEIVED_AT).to_json_bytes()


def events(count: int, run: str, form: str) -> Iterator[bytes]:
    for i in range(count):
        yield event(i, run, STAMPS[i % len(STAMPS)], form)


def new_topic(settings: Settings, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_list)
    admin.create_topics([NewTopic(name, num_partitions=settings.kafka.topic_partitions, replication_factor=1)])
    admin.close()
    return name


def delete_topic(settings: Settings, name: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_list)
    admin.delete_topics([name])
    admin.close()


def preload(settings: Settings, topic: str, values: Iterable[bytes]) -> float:
    """Seconds to put values on the topic, every one acknowledged. librdkafka (C): the 5M run's
    events took kafka-python about three minutes (~30k/s) before the job could start."""
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers, "acks": "all", "linger.ms": 20,
                         "batch.size": 512 * 1024, "queue.buffering.max.messages": 1_000_000})
    failed: list[str] = []

    def delivered(error: KafkaError | None, _message: object) -> None:
        if error is not None and len(failed) < 3:
            failed.append(error.str())

    started = time.monotonic()
    for value in values:
        while True:
            try:
                producer.produce(topic, value=value, on_delivery=delivered)
                break
            except BufferError:  # the local queue is full: let librdkafka send some
                producer.poll(0.1)
    if producer.flush(300) or failed:
        raise SystemExit(f"bench: preloading {topic} failed: {failed or 'records left unsent after 300 s'}")
    return time.monotonic() - started


def truncate(settings: Settings) -> None:
    session = connect(settings)
    session.execute("TRUNCATE raw_orders", timeout=120)
    shutdown(session)


# --- 1. the job's writer, draining a pre-loaded topic --------------------------------------


def drain(
    settings: Settings, topic: str, max_offsets: int, conf: dict[str, str]
) -> tuple[float, float, int, float]:
    """(wall seconds, seconds inside non-empty batches, batches, Spark jobs per non-empty
    batch) to write the whole topic."""
    spark = local_session(settings, "bench-streaming", extra=conf)
    quiet_logs()
    checkpoint = f"/tmp/bench-streaming-{uuid.uuid4().hex[:8]}"  # noqa: S108  (a throwaway checkpoint)
    settings = settings.replace(kafka_topic=topic, stream_checkpoint_location=checkpoint,
                                stream_max_offsets_per_trigger=max_offsets)
    writer = BatchWriter(settings)
    started = time.monotonic()
    query = (
        read_kafka(spark, settings).writeStream.foreachBatch(writer)
        .option("checkpointLocation", checkpoint).trigger(availableNow=True).start()
    )
    query.awaitTermination()
    wall = time.monotonic() - started
    batches = [p for p in query.recentProgress if p["numInputRows"] > 0]
    # Spark runs a query's batches in a job group named by its run id: every job they ran
    # (an empty batch runs none).
    jobs = len(spark.sparkContext.statusTracker().getJobIdsForGroup(str(query.runId)))
    busy = sum(p["durationMs"]["triggerExecution"] for p in batches) / 1000
    orders = sum(b["orders_s"] for b in writer.stats.values())
    rest = sum(b["rest_s"] for b in writer.stats.values())
    print(f"  inside the batches: read+validate+write raw_orders {orders:.1f} s, rejected rows and totals "
          f"{rest:.1f} s, Spark's own (offsets, checkpoint) {busy - orders - rest:.1f} s; "
          f"{jobs / max(1, len(batches)):.1f} Spark jobs per batch")
    spark.stop()
    return wall, busy, len(batches), jobs / max(1, len(batches))


# --- 2. the raw write rate of the node ------------------------------------------------------


def _writer_process(args: tuple[dict, list[tuple], int, int]) -> int:
    settings_dict, rows, concurrency, batch_rows = args
    session = connect(Settings(**settings_dict))
    prepared = session.prepare(INSERT)
    if batch_rows <= 1:
        results = execute_concurrent_with_args(session, prepared, rows, concurrency=concurrency,
                                               raise_on_first_error=True)
        written = sum(1 for ok, _ in results if ok)
    else:  # what the connector does: unlogged batches of rows of one partition
        by_partition: dict[tuple, list[tuple]] = {}
        for row in rows:
            by_partition.setdefault((row[0], row[1]), []).append(row)
        batches = []
        for part in by_partition.values():
            for i in range(0, len(part), batch_rows):
                batch = BatchStatement(batch_type=BatchType.UNLOGGED)
                for row in part[i:i + batch_rows]:
                    batch.add(prepared, row)
                batches.append((batch, None))
        results = execute_concurrent(session, batches, concurrency=concurrency, raise_on_first_error=True)
        written = len(rows) if all(ok for ok, _ in results) else 0
    shutdown(session)
    return written


def raw_rows(values: list[bytes], topic: str, tz) -> list[tuple]:
    now = datetime.now(UTC)
    rows = []
    for offset, value in enumerate(values):
        e = parse_record(value)
        rows.append((business_date(e.timestamp, tz), bucket_of(e.order_id, RAW_ORDER_BUCKETS), e.order_id,
                     e.user_id, e.menu_type, e.timestamp, json.loads(value)["timestamp"], e.received_at,
                     offset % 3, offset, now))
    return rows


def raw_write(settings: Settings, rows: list[tuple], processes: int, concurrency: int, batch_rows: int) -> float:
    fields = {k: v for k, v in settings.__dict__.items() if k != "extra"}
    chunks = [rows[i::processes] for i in range(processes)]
    started = time.monotonic()
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        written = sum(pool.map(_writer_process, [(fields, c, concurrency, batch_rows) for c in chunks]))
    elapsed = time.monotonic() - started
    assert written == len(rows), (written, len(rows))
    return elapsed


# --- 3. end-to-end latency at a steady rate ----------------------------------------------


# Order ids one poll asks a partition for at most (the oldest pending first), the pause
# between polls, and which events are timed: one in SAMPLE_EVERY (6,000 of a 60 s run at
# 1,000/s), so that the poller reads a tenth of the rows in flight.
POLL_IDS = 500
POLL_PAUSE_S = 0.1
SAMPLE_EVERY = 10


def latency(
    settings: Settings, rate: int, seconds: int, trigger: str, conf: dict[str, str], warmup: int, form: str = API
) -> tuple[list[float], list[float]]:
    """Seconds from send to readable in Cassandra, per event: (warm-up, measured). Events are
    stamped with their send time, like live traffic (a micro-batch then holds one or two
    business dates); a poller asks Cassandra only for the order ids not seen yet, by their
    (date, bucket) partition, so its cost follows what is in flight, not what was written.
    The first `warmup` seconds (JIT, Python workers, connector sessions) are reported apart."""
    # An empty raw_orders: the poller reads today's partitions, which a throughput run before
    # (events stamped now) fills with millions of rows; their reads would load the node measured.
    truncate(settings)
    topic = new_topic(settings, "bench-latency")
    log = Path(f"/tmp/{topic}.log")  # noqa: S108
    env = child_environment(settings)
    conf_args = [a for k, v in conf.items() for a in ("--conf", f"{k}={v}")]
    cmd = ["./spark-submit.sh", *conf_args, "streaming", "--topic", topic, "--trigger", trigger,
           "--checkpoint", f"/tmp/{topic}-checkpoint"]
    job = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    session = connect(settings)
    select = session.prepare("SELECT order_id FROM raw_orders WHERE order_date = ? AND bucket = ? AND order_id IN ?")
    tz = settings.business.timezone
    sent: dict[str, float] = {}
    seen: dict[str, float] = {}
    pending: dict[tuple[date, int], set[str]] = {}
    lock = threading.Lock()
    try:
        while "started (run" not in log.read_text(errors="replace"):
            if job.poll() is not None:
                raise SystemExit(f"streaming job exited {job.returncode}; see {log}")
            time.sleep(0.5)
        time.sleep(3)  # let the first (empty) triggers pass
        producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_list, acks="all", linger_ms=2)
        done = threading.Event()

        def poll() -> None:
            while not done.is_set() or any(pending.values()):
                with lock:
                    asks = [(key, sorted(ids)[:POLL_IDS]) for key, ids in pending.items() if ids]
                futures = [(key, session.execute_async(select, (*key, ids))) for key, ids in asks]
                for key, future in futures:
                    arrived = [row.order_id for row in future.result()]
                    now = time.monotonic()
                    with lock:
                        for order_id in arrived:
                            seen.setdefault(order_id, now)
                            pending[key].discard(order_id)
                time.sleep(POLL_PAUSE_S)
                if done.is_set() and time.monotonic() - done_at[0] > 60:
                    return

        done_at = [0.0]
        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        run = uuid.uuid4().hex[:6]
        started = time.monotonic()
        for i in range(rate * (warmup + seconds)):
            target = started + i / rate
            pause = target - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            now = datetime.now(UTC)
            order_id = f"{run}-{i}"
            value = event(i, run, now.isoformat(timespec="milliseconds"), form)
            if i % SAMPLE_EVERY == 0:  # the poller's reads must not load the Cassandra it measures
                key = (business_date(now, tz), bucket_of(order_id, RAW_ORDER_BUCKETS))
                with lock:
                    pending.setdefault(key, set()).add(order_id)
                sent[order_id] = time.monotonic()
            producer.send(topic, value=value)
        producer.flush()
        done_at[0] = time.monotonic()
        done.set()
        poller.join(120)
        producer.close()
        warm = {f"{run}-{i}" for i in range(0, rate * warmup, SAMPLE_EVERY)}
        return ([seen[k] - sent[k] for k in seen if k in warm], [seen[k] - sent[k] for k in seen if k not in warm])
    finally:
        job.terminate()
        job.wait(120)
        shutdown(session)
        delete_topic(settings, topic)


def plot(curve: list[tuple[int, float]], raw_rows_per_s: float | None, path: str) -> None:
    """µs per event against the pre-loaded events, with the raw writer's µs per row."""
    import matplotlib  # only when a plot is asked for

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([size for size, _ in curve], [us for _, us in curve], marker="o", label="streaming job (in batches)")
    if raw_rows_per_s:
        ax.axhline(1e6 / raw_rows_per_s, linestyle="--", color="grey", label="raw cassandra-driver writer")
    ax.set(xscale="log", xlabel="pre-loaded events", ylabel="µs per event", ylim=(0, None),
           title="Streaming: cost per event")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _sizes(text: str) -> list[int]:
    try:
        sizes = sorted(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of counts: {text[:40]!r}") from None
    if not sizes or sizes[0] < 1:
        raise argparse.ArgumentTypeError("sizes must be positive")
    return sizes


def main() -> None:
    # Spark's Python workers run this interpreter (it has pandas and pyarrow), not python3.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=_sizes, default=[100_000, 1_000_000, 5_000_000],
                   help="pre-loaded events of each throughput run, comma-separated")
    p.add_argument("--raw-events", type=int, default=200_000, help="rows of the raw writer's run")
    p.add_argument("--form", choices=[API, CLIENT], default=API,
                   help="api: the ingest API's records (judged in Spark); client: the Python path")
    p.add_argument("--max-offsets-per-trigger", type=int, default=50_000)
    p.add_argument("--writer-processes", type=int, default=2)
    p.add_argument("--writer-concurrency", type=int, default=128)
    p.add_argument("--raw-batch-rows", type=int, default=8)
    p.add_argument("--rate", type=int, default=1000)
    p.add_argument("--seconds", type=int, default=30)
    p.add_argument("--warmup", type=int, default=15, help="seconds of the latency run not counted")
    p.add_argument("--trigger", default="250 milliseconds", help="trigger of the latency run")
    p.add_argument("--conf", action="append", default=[], help="extra Spark conf key=value (repeatable)")
    p.add_argument("--skip", action="append", default=[], choices=["throughput", "raw", "latency"])
    p.add_argument("--plot", metavar="FILE.png", help="draw the cost per event against the pre-loaded size")
    args = p.parse_args()
    conf = dict(c.split("=", 1) for c in args.conf)


    settings = load_or_exit("bench.streaming_throughput").replace(cassandra_keyspace=KEYSPACE)
    require_stack("bench.streaming_throughput", settings, kafka=True, cassandra=True)
    apply_cql(settings)
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start; conf {conf or 'default'}"
          f"; {args.form} records")
    run = uuid.uuid4().hex[:6]
    values = list(events(args.raw_events, run, args.form))

    # The validation's own cost: the shared rule, per record, in one Python process.

    kafka_ts = datetime.now(UTC)
    sample = values[:50_000]
    started = time.perf_counter()
    for offset, value in enumerate(sample):
        parse_one(value, "bench", 0, offset, kafka_ts)
    per_record = (time.perf_counter() - started) / len(sample)
    print(f"validation (parse_one = parse_record + row fields): {per_record * 1e6:.1f} us/record "
          f"= {1 / per_record:,.0f} records/s per Python worker")

    figures: dict[str, float | None] = {"validation_us_per_record": round(per_record * 1e6, 2)}
    job_rate = raw_rate = None
    # The raw writer first: after millions of the job's rows Cassandra compacts for minutes,
    # which would slow the reference (and flatter the ratio).
    if "raw" not in args.skip:
        rows = raw_rows(values, "bench", settings.business.tz)
        for batch_rows in (1, args.raw_batch_rows):
            truncate(settings)
            seconds = raw_write(settings, rows, args.writer_processes, args.writer_concurrency, batch_rows)
            rate = len(rows) / seconds
            raw_rate = max(raw_rate or 0.0, rate)
            how = "single-row INSERTs" if batch_rows == 1 else f"unlogged batches of <= {batch_rows} rows per partition"
            print(f"raw cassandra-driver writer ({how}): {len(rows):,} rows in {seconds:.1f} s ({rate:,.0f} rows/s, "
                  f"{args.writer_processes} processes x {args.writer_concurrency} in flight)")
    curve: list[tuple[int, float]] = []
    for size in [] if "throughput" in args.skip else args.sizes:
        topic = new_topic(settings, "bench-streaming")
        seconds = preload(settings, topic, events(size, uuid.uuid4().hex[:6], args.form))
        print(f"pre-loaded {size:,} events in {seconds:.1f} s ({size / seconds:,.0f}/s, librdkafka)")
        truncate(settings)
        wall, busy, batches, jobs = drain(settings, topic, args.max_offsets_per_trigger, conf)
        job_rate = size / busy  # the last (largest) size's is the one compared with the raw writer
        curve.append((size, busy / size * 1e6))
        figures.update({f"stream_events_per_s_{size}": round(job_rate),
                        f"stream_us_per_event_{size}": round(busy / size * 1e6, 2),
                        f"spark_jobs_per_batch_{size}": round(jobs, 2)})
        print(f"streaming job: {size:,} events in {batches} batches, {busy:.1f} s in batches "
              f"({job_rate:,.0f} events/s, {busy / size * 1e6:.1f} us/event), {wall:.1f} s wall with session "
              f"start ({size / wall:,.0f}/s)")
        delete_topic(settings, topic)
    figures["raw_writer_rows_per_s"] = round(raw_rate) if raw_rate else None
    if args.plot and curve:
        plot(curve, raw_rate, args.plot)
        print(f"plot: {args.plot}")
    if job_rate and raw_rate:
        print(f"ratio streaming / best raw writer: {job_rate / raw_rate:.0%}")
    if "latency" not in args.skip:
        warm, lat = latency(settings, args.rate, args.seconds, args.trigger, conf, args.warmup, args.form)
        for name, values_, n in (("warm-up", warm, args.warmup), ("steady", lat, args.seconds)):
            q = statistics.quantiles(values_, n=100) if len(values_) >= 2 else [float("nan")] * 99
            print(f"latency {name} at {args.rate}/s for {n} s (trigger {args.trigger}): "
                  f"{len(values_):,}/{args.rate * n // SAMPLE_EVERY:,} timed events arrived; "
                  f"p50 {q[49]:.2f} s, p99 {q[98]:.2f} s, "
                  f"max {max(values_, default=float('nan')):.2f} s")
            if name == "steady" and len(values_) >= 2:
                figures.update(p50_s_at_1000=round(q[49], 3), p99_s_at_1000=round(q[98], 3), latency_rate=args.rate)
    load = os.getloadavg()[0]
    print(f"load average {load:.1f} at end")
    ratios = {"stream_vs_raw_writer": round(job_rate / raw_rate, 3) if job_rate and raw_rate else None}
    print(json.dumps({"bench": "streaming", "ratios": ratios, "figures": {**figures, "load_average_end": load}}))


if __name__ == "__main__":
    main()
