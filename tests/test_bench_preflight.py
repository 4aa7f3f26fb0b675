"""A benchmark started while the servers it measures are down says so in one line and
exits 2 (no driver traceback), naming the server and how to start it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from local_stack.supervisor import free_ports
from orderlog.config import Settings, child_environment

ROOT = Path(__file__).resolve().parent.parent

# bench -> (its arguments, the server it needs first)
BENCHES = {
    "aggregate_day": ([], "Cassandra"),
    "viewer_latency": ([], "Cassandra"),
    "stream_write": ([], "Cassandra"),
    "streaming_throughput": ([], "Cassandra"),
    "ingest_throughput": ([], "Kafka"),
    "replay_generator": (["--send"], "Kafka"),
}


@pytest.mark.parametrize("name", list(BENCHES))
def test_a_benchmark_without_its_servers_stops_with_one_line(name):
    arguments, server = BENCHES[name]
    cassandra_port, kafka_port = free_ports(2)  # nothing listens there
    env = {**child_environment(Settings()), "ORDERLOG_CASSANDRA_PORT": str(cassandra_port),
           "ORDERLOG_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{kafka_port}"}
    result = subprocess.run([sys.executable, "-m", f"bench.{name}", *arguments], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    port = cassandra_port if server == "Cassandra" else kafka_port
    assert lines[0].startswith(f"bench.{name}: error: {server}"), lines[0]
    assert f"127.0.0.1:{port}" in lines[0] and "make up" in lines[0], lines[0]
