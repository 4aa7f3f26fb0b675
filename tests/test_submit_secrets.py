"""No secret on a command line (issue 17): `ps` shows every process's command line to every
user of the machine, so ./spark-submit.sh passes the connector's passwords to no process
(the job sets them on its session itself, jobs.session.secret_spark_conf)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from orderlog.config import child_environment, load_settings

ROOT = Path(__file__).resolve().parent.parent
SECRETS = {"ORDERLOG_CASSANDRA_PASSWORD": "cassandra-Secret-4711",
           "ORDERLOG_CASSANDRA_SSL_TRUSTSTORE_PASSWORD": "truststore-Secret-4712",
           "ORDERLOG_KAFKA_SASL_PASSWORD": "kafka-Secret-4713"}


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process now."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # it ended meanwhile
            continue
        parents[int(stat.parent.name)] = int(text.rsplit(")", 1)[1].split()[1])
    return parents


def _descendants(root: int) -> set[int]:
    parents = _parents()
    found, grew = {root}, True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in found} - found
        found |= more
        grew = bool(more)
    return found


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode("utf-8", "replace").split("\0")
    except OSError:
        return []


@pytest.mark.integration
def test_spark_submit_puts_no_secret_on_any_command_line_of_the_job():
    settings = load_settings(environ={"ORDERLOG_CASSANDRA_USERNAME": "app", **SECRETS,
                                      "ORDERLOG_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                                      "ORDERLOG_KAFKA_SASL_USERNAME": "app"})
    job = subprocess.Popen(["./spark-submit.sh", "code_origin"], cwd=ROOT, env=child_environment(settings),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: dict[int, list[str]] = {}
    while job.poll() is None:  # every process of the job, as long as it runs
        for pid in _descendants(job.pid):
            seen.setdefault(pid, _cmdline(pid))
        time.sleep(0.05)
    out, err = job.communicate()
    assert job.returncode == 0, err[-3000:]
    assert '"executors"' in out
    command_lines = [" ".join(argv) for argv in seen.values() if argv != [""]]
    # The JVM (SparkSubmit) and the job's Python (the driver) were both among them.
    assert any("org.apache.spark.deploy.SparkSubmit" in line for line in command_lines), command_lines
    assert any("python" in line and "code_origin.py" not in line.split()[0] for line in command_lines)
    assert any("spark.cassandra.auth.username=app" in line for line in command_lines), command_lines
    for secret in SECRETS.values():
        assert not [line for line in command_lines if secret in line]
    assert not any(secret in out + err for secret in SECRETS.values())
