"""`make monitoring` (python -m tools.monitoring): where each /metrics endpoint is, from the
effective configuration, whether it answers, and a scrape configuration Prometheus reads.
Run as a user runs it, in a process of its own with the settings in its environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry, Counter, start_http_server

from orderlog.config import ENV_PREFIX
from tests.conftest import free_ports

ROOT = Path(__file__).resolve().parent.parent


def run(*command: str, **settings: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    return subprocess.run(list(command), cwd=ROOT, env={**env, **settings}, capture_output=True, text=True,
                          timeout=120)


def snippet(stdout: str) -> dict[str, list[str]]:
    """job -> targets of the printed scrape configuration, read as Prometheus would (YAML)."""
    text = stdout[stdout.index("scrape_configs:"):]
    return {job["job_name"]: [t for s in job["static_configs"] for t in s["targets"]]
            for job in yaml.safe_load(text)["scrape_configs"]}


def test_it_prints_each_endpoint_of_the_configuration_and_whether_it_answers():
    # A real /metrics where the streaming job's settings put it; nothing on the others.
    stream_port, ingest_port = free_ports(2)
    registry = CollectorRegistry()
    Counter("probe", "a figure", registry=registry).inc()
    start_http_server(stream_port, addr="127.0.0.1", registry=registry)
    result = run(sys.executable, "-m", "tools.monitoring", ORDERLOG_INGEST_PORT=str(ingest_port),
                 ORDERLOG_VIEWER_HOST="0.0.0.0", ORDERLOG_VIEWER_PORT="9181", ORDERLOG_ALLOW_UNAUTHENTICATED="1",
                 ORDERLOG_STREAM_METRICS_PORT=str(stream_port))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    streaming = next(line for line in lines if line.strip().startswith("streaming job"))
    assert f"http://127.0.0.1:{stream_port}/metrics" in streaming and " answering " in streaming
    ingest = next(line for line in lines if line.strip().startswith("ingest API"))
    assert f"http://127.0.0.1:{ingest_port}/metrics" in ingest and "not answering now" in ingest
    # A viewer bound to every address is scraped through loopback on this host.
    assert snippet(result.stdout) == {
        "orderlog-ingest": [f"127.0.0.1:{ingest_port}"],
        "orderlog-viewer": ["127.0.0.1:9181"],
        "orderlog-streaming": [f"127.0.0.1:{stream_port}"],
    }


def test_a_streaming_endpoint_turned_off_is_said_and_left_out():
    result = run(sys.executable, "-m", "tools.monitoring", ORDERLOG_STREAM_METRICS_PORT="0",
                 ORDERLOG_INGEST_HOST="127.0.0.2", ORDERLOG_INGEST_PORT="9180")
    assert result.returncode == 0, result.stderr
    assert "streaming job  off (ORDERLOG_STREAM_METRICS_PORT=0)" in result.stdout
    targets = snippet(result.stdout)
    assert set(targets) == {"orderlog-ingest", "orderlog-viewer"}
    assert targets["orderlog-ingest"] == ["127.0.0.2:9180"] and targets["orderlog-viewer"] == ["127.0.0.1:8081"]


def test_a_bad_setting_is_one_line_and_exit_2():
    result = run(sys.executable, "-m", "tools.monitoring", ORDERLOG_STREAM_METRICS_PORT="80000")
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert "ORDERLOG_STREAM_METRICS_PORT='80000'" in line and result.stdout == ""
    assert run(sys.executable, "-m", "tools.monitoring", "--bogus").returncode == 2


def test_make_monitoring_prints_the_same():
    direct = run(sys.executable, "-m", "tools.monitoring", ORDERLOG_STREAM_METRICS_PORT="0")
    made = run("make", "-s", "monitoring", ORDERLOG_STREAM_METRICS_PORT="0")
    assert made.returncode == 0, made.stderr
    assert made.stdout == direct.stdout
