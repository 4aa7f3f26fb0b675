"""Events/s the ingest API accepts (acks=all), against Kafka's own producer on the same broker.

    .venv/bin/python -m bench.ingest_throughput [--seconds 15] [--workers 2] [--threads 16]

Runs the real gunicorn server (ingest_api/gunicorn.conf.py) on a spare port, producing to
a bench-only topic that is deleted afterwards, once per Kafka client (ORDERLOG_KAFKA_CLIENT),
and measures:

1. single-event POST /api/log from ``--clients`` keep-alive connections of wrk (bench/wrk.py);
2. the framework's floor: a constant-JSON Flask endpoint under the same gunicorn
   configuration, loaded the same way;
3. POST /api/logs with 1,000 events per request, from Python clients (and the same clients
   against the floor app, to show they are not the limit);
4. org.apache.kafka.tools.ProducerPerformance with the same records (the API's normalized
   JSON, as a payload file), the same key spread, acks=all, lz4, idempotence.

With confluent-kafka, 1 and 2 then 3 and 4 run in turns, ``--rounds`` times (the machine's
speed drifts over minutes by more than the gap between an API run and its limit's): each
goal's ratio is the median of its rounds'. kafka-python runs one round.

It prints events/s, latencies and the ratio of each to ProducerPerformance, then one JSON
line (`{"bench": ..., "ratios": ..., "figures": ...}`). Needs the local stack (make up), the jars (make setup)
and wrk (make system-deps).
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from bench.wrk import floor_app, gunicorn, rounded, wrk
from ingest_api.kafka_python_backend import kafka_python_config
from local_stack.preflight import require_stack
from local_stack.supervisor import free_ports
from orderlog.config import Settings, child_environment, load_or_exit
from orderlog.events import validate_event

ROOT = Path(__file__).resolve().parent.parent

USERS = 1000


def sample_event(n: int) -> dict:
    return {
        "user_id": f"user-{n % USERS:05d}",
        "timestamp": f"2025-05-31T{n % 24:02d}:{n % 60:02d}:{(n * 7) % 60:02d}+09:00",
        "menu_type": ("japanese", "western")[n % 2],
    }


def start_gunicorn(settings: Settings, topic: str, port: int, workers: int, threads: int,
                   kafka_client: str) -> subprocess.Popen:
    env = child_environment(settings.replace(kafka_topic=topic, ingest_workers=workers, ingest_threads=threads,
                                             ingest_log_level="warning", kafka_client=kafka_client))
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "ingest_api/gunicorn.conf.py", "-b", f"127.0.0.1:{port}",
         "ingest_api:create_app()"],
        cwd=ROOT, env=env,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                return process
        except OSError:
            pass
        time.sleep(0.3)
    process.kill()
    raise SystemExit("gunicorn did not become healthy")


def _client_process(port: int, path: str, bodies: list[bytes], per_request: int, threads: int,
                    seconds: float, queue: multiprocessing.Queue) -> None:
    """One load-generator process: ``threads`` keep-alive clients posting until time is up."""
    end = time.monotonic() + seconds
    results: list[tuple[int, list[float], int]] = []
    lock = threading.Lock()
    content_type = {"Content-Type": "application/json"}

    def run(offset: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        accepted, latencies, failed, i = 0, [], 0, offset
        while time.monotonic() < end:
            body = bodies[i % len(bodies)]
            i += 1
            started = time.perf_counter()
            conn.request("POST", path, body=body, headers=content_type)
            response = conn.getresponse()
            response.read()
            latencies.append(time.perf_counter() - started)
            if response.status == 202:
                accepted += per_request
            else:
                failed += 1
        conn.close()
        with lock:
            results.append((accepted, latencies, failed))

    workers = [threading.Thread(target=run, args=(n * 7919,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    queue.put(results)


def load(port: int, path: str, bodies: list[bytes], per_request: int, clients: int, seconds: float) -> dict:
    processes = min(clients, 2)  # two client processes: the GIL of one would be the bottleneck
    queue: multiprocessing.Queue = multiprocessing.Queue()
    procs = [
        multiprocessing.Process(
            target=_client_process,
            args=(port, path, bodies, per_request, clients // processes + (n < clients % processes), seconds, queue),
        )
        for n in range(processes)
    ]
    started = time.monotonic()
    for p in procs:
        p.start()
    results = [r for _ in procs for r in queue.get()]
    for p in procs:
        p.join()
    elapsed = time.monotonic() - started
    accepted = sum(r[0] for r in results)
    latencies = sorted(x for r in results for x in r[1])
    return {
        "events_per_s": accepted / elapsed,
        "requests": len(latencies),
        "failed": sum(r[2] for r in results),
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99) - 1],
    }


def producer_performance(settings, topic: str, payload_file: Path, records: int) -> dict:
    command = [
        "java", "-Xmx512m", f"-Dlog4j2.configurationFile={ROOT / 'local_stack/templates/kafka-log4j2.xml'}",
        "-cp", str(ROOT / "build/jars/kafka/*"), "org.apache.kafka.tools.ProducerPerformance",
        "--bootstrap-server", settings.kafka.bootstrap_servers, "--topic", topic,
        "--num-records", str(records), "--throughput", "-1", "--payload-file", str(payload_file),
        "--record-key-range", str(USERS), "--key-distribution", "random",
        "--command-property", "acks=all", "enable.idempotence=true", "compression.type=lz4",
        "linger.ms=5", "batch.size=262144",
    ]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"ProducerPerformance failed:\n{done.stdout}\n{done.stderr}")
    output = done.stdout
    summary = [line for line in output.splitlines() if f"{records} records sent" in line][-1]
    match = re.search(r"([\d.]+) records/sec .*?([\d.]+) ms avg latency.*?([\d.]+) ms 50th.*?([\d.]+) ms 99th", summary)
    assert match, summary
    rate, avg, p50, p99 = (float(g) for g in match.groups())
    return {"events_per_s": rate, "p50_ms": p50, "p99_ms": p99, "avg_ms": avg, "summary": summary}


def kafka_python_alone(settings, topic: str, records: list[tuple[bytes, bytes]], count: int) -> dict:
    """The same producer settings as the API, sending in a loop: the ceiling of kafka-python."""
    producer = KafkaProducer(**kafka_python_config(settings.kafka.bootstrap_list, 30_000))
    producer.send(topic, key=records[0][0], value=records[0][1]).get(30)
    started = time.monotonic()
    futures = [producer.send(topic, key=k, value=v) for k, v in (records[i % len(records)] for i in range(count))]
    producer.flush()
    elapsed = time.monotonic() - started
    assert all(f.succeeded() for f in futures)
    producer.close()
    return {"events_per_s": count / elapsed, "p50_ms": float("nan"), "p99_ms": float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=16, help="threads per gunicorn worker")
    parser.add_argument("--clients", type=int, default=32, help="concurrent single-event clients")
    parser.add_argument("--batch-clients", type=int, default=4, help="concurrent batch clients")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--perf-records", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of the goals' pairs with confluent-kafka (median ratios); kafka-python runs once")
    args = parser.parse_args()


    settings = load_or_exit("bench.ingest_throughput")
    require_stack("bench.ingest_throughput", settings, kafka=True)
    topic = f"bench-ingest-{uuid.uuid4().hex[:8]}"
    perf_topic = topic + "-perf"
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_list)
    admin.create_topics([NewTopic(t, settings.kafka.topic_partitions, 1) for t in (topic, perf_topic)])

    events = [sample_event(n) for n in range(USERS * 2)]
    now = datetime.now(UTC)
    stamped = [validate_event(e, now=now).with_ids(now) for e in events]
    records = [e.to_json_bytes() for e in stamped]
    record_bytes = statistics.mean(len(r) for r in records)
    singles = [json.dumps(e).encode() for e in events]
    batches = [json.dumps(events[i:i + args.batch_size]).encode() for i in range(0, len(events), args.batch_size)]

    single_bodies = [b.decode() for b in singles]
    with tempfile.NamedTemporaryFile("wb", suffix=".ndjson", delete=False) as payload:
        payload.write(b"\n".join(records))
    floor_env = child_environment(settings.replace(ingest_workers=args.workers, ingest_threads=args.threads,
                                                   ingest_log_level="warning"))
    accepted_bytes = len(b'{"status": "accepted", "order_id": "' + b"0" * 32 + b'"}')
    (floor_port,) = free_ports(1)
    # The goals' two pairs run in turns, each pair a few seconds apart (the API's single events,
    # then the floor; its batches, then ProducerPerformance): over minutes this machine's speed
    # drifts by more than the gap between the two (the same code measured 121k and 208k events/s
    # four minutes apart), so each ratio is the median of its rounds' ratios.
    rounds: list[dict[str, dict]] = []
    try:
        with gunicorn("ingest_api/gunicorn.conf.py", floor_app(accepted_bytes), floor_port, floor_env,
                      "/floor") as floor_base:
            for kafka_client in ("confluent-kafka", "kafka-python"):
                (port,) = free_ports(1)
                server = start_gunicorn(settings, topic, port, args.workers, args.threads, kafka_client)
                try:
                    load(port, "/api/log", singles, 1, 4, 2)  # warm up: producers connected, code paths hot
                    for _ in range(args.rounds if kafka_client == "confluent-kafka" else 1):
                        single = wrk(f"http://127.0.0.1:{port}/api/log", single_bodies, method="POST",
                                     seconds=args.seconds, connections=args.clients)
                        single["events_per_s"] = single["requests_per_s"]
                        floor = wrk(floor_base + "/floor", single_bodies, method="POST", seconds=args.seconds,
                                    connections=args.clients)
                        batch = load(port, "/api/logs", batches, args.batch_size, args.batch_clients, args.seconds)
                        perf = producer_performance(settings, perf_topic, Path(payload.name), args.perf_records)
                        rounds.append({"client": kafka_client, "single": single, "floor": floor, "batch": batch,
                                       "perf": perf})
                        print(f"round {len(rounds)} ({kafka_client}): single {single['requests_per_s']:,.0f} "
                              f"vs floor {floor['requests_per_s']:,.0f} req/s; batch {batch['events_per_s']:,.0f} "
                              f"vs ProducerPerformance {perf['events_per_s']:,.0f} events/s", flush=True)
                finally:
                    server.terminate()
                    server.wait(60)
            # The batch clients against a server that does nothing: their own ceiling.
            batch_clients_ceiling = load(floor_port, "/floor", batches, args.batch_size, args.batch_clients,
                                         args.seconds)
        keyed = [(e.user_id.encode(), r) for e, r in zip(stamped, records, strict=True)]
        alone = kafka_python_alone(settings, perf_topic, keyed, args.perf_records // 5)
    finally:
        os.unlink(payload.name)
        admin.delete_topics([topic, perf_topic])
        admin.close()
    confluent = [r for r in rounds if r["client"] == "confluent-kafka"]
    kafka_python = [r for r in rounds if r["client"] == "kafka-python"]

    load_average = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} cores, load average {load_average:.2f} at the end; record: "
          f"{record_bytes:.0f} bytes (normalized JSON), key = user_id ({USERS} users); acks=all, idempotent, lz4")
    print(f"gunicorn: {args.workers} workers x {args.threads} threads; {args.seconds:g} s per run; "
          f"single events from wrk, {args.clients} connections")
    print(f"{'':46}{'events/s':>12}{'p50 ms':>10}{'p99 ms':>10}{'vs Kafka':>10}")
    rows = []
    for r in rounds:
        rows += [
            (f"POST /api/log, {r['client']}", r["single"]),
            ("  constant JSON, same gunicorn (req/s)", {**r["floor"], "events_per_s": r["floor"]["requests_per_s"]}),
            (f"POST /api/logs ({args.batch_size}/req), {r['client']}", r["batch"]),
            ("  Kafka ProducerPerformance", r["perf"]),
        ]
    rows += [
        (f"batch clients vs constant JSON ({args.batch_size}/req)", batch_clients_ceiling),
        ("kafka-python alone (1 thread)", alone),
    ]
    perf = {"events_per_s": statistics.median(r["perf"]["events_per_s"] for r in confluent)}
    floor = {"requests_per_s": statistics.median(r["floor"]["requests_per_s"] for r in confluent)}
    for name, r in rows:
        ratio = r["events_per_s"] / perf["events_per_s"]
        print(f"{name:46}{r['events_per_s']:>12,.0f}{r['p50_ms']:>10.1f}{r['p99_ms']:>10.1f}{ratio:>10.2f}")
    failed = sum(r["single"]["failed"] + r["batch"]["failed"] for r in rounds)
    print(f"non-202 answers: {failed}")
    print(f"ProducerPerformance, last run: {rounds[-1]['perf']['summary']}")

    def ratios_of(rounds_of: list[dict], api: str, limit: str) -> list[float]:
        """Each round's ratio of the API's rate (api: "batch" or "single") to its limit's."""
        rate = "events_per_s" if api == "batch" else "requests_per_s"
        return [r[api][rate] / r[limit][rate] for r in rounds_of]

    batch_ratios, single_ratios = ratios_of(confluent, "batch", "perf"), ratios_of(confluent, "single", "floor")
    print("rounds' ratios (confluent-kafka): batch vs ProducerPerformance "
          + ", ".join(f"{x:.2f}" for x in batch_ratios) + "; single vs floor "
          + ", ".join(f"{x:.2f}" for x in single_ratios))
    batch = {"events_per_s": statistics.median(r["batch"]["events_per_s"] for r in confluent)}
    single = {"requests_per_s": statistics.median(r["single"]["requests_per_s"] for r in confluent),
              "p95_ms": statistics.median(r["single"]["p95_ms"] for r in confluent)}
    ratios = {
        "batch_vs_producer_perf": statistics.median(batch_ratios),
        "single_vs_framework_floor": statistics.median(single_ratios),
        "batch_vs_producer_perf_lowest_round": min(batch_ratios),
        "single_vs_framework_floor_lowest_round": min(single_ratios),
        "batch_vs_producer_perf_kafka_python": statistics.median(ratios_of(kafka_python, "batch", "perf")),
        "single_vs_framework_floor_kafka_python": statistics.median(ratios_of(kafka_python, "single", "floor")),
        "batch_vs_batch_clients_ceiling": batch["events_per_s"] / batch_clients_ceiling["events_per_s"],
    }
    figures = {
        "batch_events_per_s": batch["events_per_s"],
        "single_requests_per_s": single["requests_per_s"],
        "single_p95_ms": single["p95_ms"],
        "framework_floor_requests_per_s": floor["requests_per_s"],
        "batch_clients_ceiling_events_per_s": batch_clients_ceiling["events_per_s"],
        "producer_perf_events_per_s": perf["events_per_s"],
        "kafka_python_alone_events_per_s": alone["events_per_s"],
        "non_202": failed,
        "load_average_1m": load_average,
    }
    print(json.dumps({"bench": "ingest", "ratios": rounded(ratios), "figures": rounded(figures)}))


if __name__ == "__main__":
    main()
