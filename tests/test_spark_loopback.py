"""Every Spark driver the project starts listens on loopback only: the jobs under
./spark-submit.sh and the local session of the tests. Without SPARK_LOCAL_IP Spark binds
the driver's RPC and block manager to the machine's first non-loopback address and its UI
to every address, so anyone on the network could reach them."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import psutil
import pytest

from tests.streaming_job import ROOT, StreamingJob, wait_for

pytestmark = pytest.mark.integration


def listening(pid: int) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket that the process or any of its descendants listens on."""
    root = psutil.Process(pid)
    found = []
    for process in [root, *root.children(recursive=True)]:
        try:
            found += [(c.laddr.ip, c.laddr.port) for c in process.net_connections("tcp")
                      if c.status == psutil.CONN_LISTEN]
        except psutil.NoSuchProcess:
            continue
    return found


def is_loopback(address: str) -> bool:
    return ipaddress.ip_address(address.removeprefix("::ffff:")).is_loopback


def without_spark_local_ip() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "SPARK_LOCAL_IP"}


def ui_answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/applications", timeout=5) as answer:
            return answer.status == 200
    except OSError:
        return False


def test_the_streaming_job_under_spark_submit_listens_on_loopback_only(
    settings, kafka_topic, tmp_path: Path, streaming_jobs, monkeypatch
) -> None:
    monkeypatch.delenv("SPARK_LOCAL_IP", raising=False)  # the default, not the caller's choice
    job = StreamingJob(settings, kafka_topic, tmp_path / "checkpoint", tmp_path / "streaming.log").start()
    streaming_jobs.append(job)
    assert job.proc is not None

    def ui_port() -> int | None:
        # Spark's UI takes 4040, or the next free port when other drivers hold it.
        ports = [port for _, port in listening(job.proc.pid) if 4040 <= port < 4140]
        return ports[0] if ports and ui_answers(ports[0]) else None

    # The UI binds before the block manager: wait for it, then for the RPC, block manager and py4j ports.
    wait_for(lambda: job.proc.poll() is not None or (ui_port() is not None and len(listening(job.proc.pid)) >= 4),
             240, "the driver's UI, RPC, block manager and py4j ports")
    assert job.proc.poll() is None, job.text()[-3000:]
    sockets = listening(job.proc.pid)
    assert [s for s in sockets if not is_loopback(s[0])] == [], sockets


LOCAL_SESSION_SOCKETS = """
import json, psutil
from jobs.session import local_session
from orderlog.config import load_settings
spark = local_session(load_settings(), "orderlog-loopback-check")
spark.range(10).count()  # the executor has run a task: every port is open
jvm = spark.sparkContext._gateway.proc.pid
print(json.dumps([[c.laddr.ip, c.laddr.port] for p in [psutil.Process(jvm), *psutil.Process(jvm).children(True)]
                  for c in p.net_connections("tcp") if c.status == psutil.CONN_LISTEN]))
spark.stop()
"""


def test_the_local_session_of_tests_and_tools_listens_on_loopback_only() -> None:
    run = subprocess.run([sys.executable, "-c", LOCAL_SESSION_SOCKETS], cwd=ROOT, env=without_spark_local_ip(),
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    sockets = json.loads(run.stdout.strip().splitlines()[-1])
    assert len(sockets) >= 2, sockets  # at least the driver's RPC and py4j's gateway
    assert [s for s in sockets if not is_loopback(s[0])] == [], sockets
