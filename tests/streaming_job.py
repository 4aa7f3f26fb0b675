"""The real streaming job as a user starts it (`./spark-submit.sh streaming`), run by the
fault tests as a subprocess of its own, and a polling helper."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent


class StreamingJob:
    """One run of ./spark-submit.sh streaming, in its own process group, logging to a file."""

    def __init__(self, settings, topic: str, checkpoint: Path, log: Path, *args: str):
        self.settings, self.topic, self.checkpoint, self.log, self.args = settings, topic, checkpoint, log, args
        self.proc: subprocess.Popen | None = None

    def start(self) -> StreamingJob:
        env = {
            **os.environ,
            "ORDERLOG_CASSANDRA_KEYSPACE": self.settings.cassandra.keyspace,
            "ORDERLOG_CASSANDRA_PORT": str(self.settings.cassandra.port),
            "ORDERLOG_KAFKA_BOOTSTRAP_SERVERS": self.settings.kafka.bootstrap_servers,
        }
        cmd = ["./spark-submit.sh", "--driver-memory", "1g", "streaming", "--topic", self.topic,
               "--checkpoint", str(self.checkpoint), "--trigger", "500 milliseconds",
               "--max-offsets-per-trigger", "4000", *self.args]
        with self.log.open("a") as out:
            out.write(f"\n=== start {' '.join(cmd)}\n")
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        return self

    def descendants(self) -> list[int]:
        """Every process under the job (pyspark's daemon starts its own process group)."""
        if self.proc is None:
            return []
        try:
            job = psutil.Process(self.proc.pid)
            return [job.pid, *(child.pid for child in job.children(recursive=True))]
        except psutil.NoSuchProcess:
            return []

    def kill9(self) -> None:
        pids = self.descendants()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with self.log.open("a") as out:
            out.write(f"=== kill -9 {pids}\n")
        assert self.proc is not None
        self.proc.wait(30)

    def terminate(self, timeout: float = 120) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)  # to the spark-submit JVM, as an operator would
        return self.proc.wait(timeout)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill9()


def wait_for(predicate, timeout: float, what: str, interval: float = 1.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
