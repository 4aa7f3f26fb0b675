"""How fast the replay generator makes a week and its truth, and how fast it sends it.

    .venv/bin/python -m bench.replay_generator                 # generation + truth only
    .venv/bin/python -m bench.replay_generator --send          # also send to a private ingest API

Generation: the default week (2,000 users, 20,000 orders, --dirty), best of 3.
Sending (``--send``): a gunicorn ingest API of its own on a spare port, producing to a
bench-only topic on the local Kafka (deleted afterwards), the same week sent unthrottled
with batch sizes 50, 200 (the default) and 1,000; the ratio is against the generator's
own rate (the ceiling of the tool) and against one-batch-of-1000 HTTP.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import date
from pathlib import Path

from kafka.admin import KafkaAdminClient, NewTopic

from bench.wrk import rounded
from local_stack.preflight import require_stack
from local_stack.supervisor import free_ports
from orderlog.config import Settings, child_environment, load_or_exit
from tools.generator import ReplayParams, generate
from tools.sender import Sender
from tools.truth import compute_truth

ROOT = Path(__file__).resolve().parent.parent

PARAMS = ReplayParams(date(2025, 5, 31), days=7, users=2000, orders=20000, seed=42, dirty=True)


def best_of(n: int, fn) -> tuple[float, object]:
    best, value = float("inf"), None
    for _ in range(n):
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    return best, value


def bench_generation() -> tuple[list, dict[str, float]]:
    gen_s, replay = best_of(3, lambda: generate(PARAMS))
    payloads = [e.payload for e in replay.valid_events]
    truth_s, _ = best_of(3, lambda: compute_truth(payloads, PARAMS.business_timezone, PARAMS.dates))
    ndjson_s, data = best_of(3, replay.to_ndjson)
    n = len(replay.events)
    print(f"generate: {n} events in {gen_s:.2f}s = {n / gen_s:,.0f} events/s")
    print(f"truth:    {len(payloads)} events in {truth_s:.2f}s = {len(payloads) / truth_s:,.0f} events/s")
    print(f"ndjson:   {len(data):,} bytes in {ndjson_s:.3f}s")
    figures = {"generate_events_per_s": n / gen_s, "truth_events_per_s": len(payloads) / truth_s,
               "ndjson_s": ndjson_s}
    return [e.payload for e in replay.events], figures


def bench_sending(settings: Settings, payloads: list, batches: list[int]) -> dict[int, float]:
    topic = f"bench-replay-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_list)
    admin.create_topics([NewTopic(topic, num_partitions=settings.kafka.topic_partitions, replication_factor=1)])
    (port,) = free_ports(1)
    env = child_environment(settings.replace(kafka_topic=topic, ingest_port=port, ingest_host="127.0.0.1"))
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "ingest_api/gunicorn.conf.py", "ingest_api:create_app()"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(url + "/readyz", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        rates = {}
        for batch in batches:
            result = Sender(url, rate=0, batch_size=batch).send(payloads)
            rates[batch] = result.sent / result.seconds
            print(f"send batch {batch:>5}: {result.sent} events in {result.seconds:.1f}s = "
                  f"{rates[batch]:,.0f} events/s ({len(result.acknowledged)} acknowledged, "
                  f"{len(result.refused)} refused, {result.requests} requests)")
        top = max(batches)
        for batch in batches:
            print(f"  batch {batch}: {rates[batch] / rates[top]:.2f} of batch {top}")
        return rates
    finally:
        server.terminate()
        server.wait(30)
        admin.delete_topics([topic])
        admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--send", action="store_true", help="also send to a private ingest API")
    parser.add_argument("--batches", default="50,200,1000")
    args = parser.parse_args()
    settings = load_or_exit("bench.replay_generator")
    if args.send:
        require_stack("bench.replay_generator", settings, kafka=True)
    payloads, figures = bench_generation()
    ratios: dict[str, float | None] = {}
    if args.send:
        rates = bench_sending(settings, payloads, [int(b) for b in args.batches.split(",")])
        top = max(rates)
        figures.update({f"send_batch_{batch}_events_per_s": rate for batch, rate in rates.items()})
        ratios.update({f"send_batch_{batch}_vs_batch_{top}": rate / rates[top] for batch, rate in rates.items()})
    print(json.dumps({"bench": "replay", "ratios": rounded(ratios), "figures": rounded(figures)}))


if __name__ == "__main__":
    main()
