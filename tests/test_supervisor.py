"""local_stack.supervisor, the one process supervisor of the stack, the demo and the tests,
on real processes: started in a session of their own, found again by pid and start time,
stopped with SIGTERM and, when that is ignored, SIGKILL to the whole group."""

from __future__ import annotations

import dataclasses
import os
import socket
import sys
from pathlib import Path

from local_stack import supervisor

# A parent that starts a child in its own process group; both print their pids.
PARENT_AND_CHILD = (
    "import os, subprocess, sys, time\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
    "print('child', child.pid, flush=True)\n"
    "time.sleep(120)\n"
)
IGNORES_SIGTERM = (
    "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('up', flush=True)\ntime.sleep(120)\n"
)


def _wait_for_line(log: Path, prefix: str) -> str:
    import time

    for _ in range(200):
        for line in log.read_text().splitlines() if log.exists() else []:
            if line.startswith(prefix):
                return line
        time.sleep(0.05)
    raise AssertionError(f"no line {prefix!r} in {log}")


def test_a_started_process_is_found_again_and_stopped_with_its_children(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "parent.log"
    started = supervisor.start([sys.executable, "-c", PARENT_AND_CHILD], log=log, cwd=tmp_path)
    child = int(_wait_for_line(log, "child").split()[1])
    assert supervisor.running(started)
    assert supervisor.running(supervisor.Started.from_json(started.to_json()))  # as a later process finds it
    assert started.pid == os.getpgid(child)  # a session of its own, its child in it

    # SIGTERM goes to the parent (a gunicorn master or spark-submit's JVM stops its own
    # children); this child does not hear it, so the group is killed after the timeout.
    supervisor.stop(started.pid, timeout=2)
    assert not supervisor.running(started) and not supervisor._alive(child)  # at most a zombie left to init
    assert started.exit_code() == -15  # the parent ended on the SIGTERM


def test_a_process_that_ignores_sigterm_is_killed_after_the_timeout(tmp_path: Path) -> None:
    log = tmp_path / "stubborn.log"
    started = supervisor.start([sys.executable, "-c", IGNORES_SIGTERM], log=log, cwd=tmp_path)
    _wait_for_line(log, "up")
    supervisor.stop(started.pid, timeout=1)
    assert not supervisor.running(started)
    assert started.exit_code() == -9


def test_a_reused_pid_is_not_ours(tmp_path: Path) -> None:
    started = supervisor.start([sys.executable, "-c", "import time; time.sleep(120)"], log=tmp_path / "l", cwd=tmp_path)
    try:
        other = dataclasses.replace(started, started_at=started.started_at - 10)  # same pid, another start
        assert supervisor.running(started) and not supervisor.running(other)
        assert supervisor.find(started.pid, ["time.sleep(120)"]) == started.pid
        assert supervisor.find(started.pid, ["kafka.Kafka"]) is None  # someone else's command line
    finally:
        supervisor.kill(started.pid)
    assert not supervisor.running(started)
    assert supervisor.find(started.pid, ["time.sleep(120)"]) is None


def test_ports_and_logs(tmp_path: Path) -> None:
    (port,) = supervisor.free_ports(1)
    assert not supervisor.port_in_use(port)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", port))
        listener.listen()
        assert supervisor.port_in_use(port)
        assert supervisor.port_owner(port).startswith(f"pid {os.getpid()}: ")
    log = tmp_path / "a.log"
    log.write_text("".join(f"line {n}\n" for n in range(10)))
    assert supervisor.tail(log, 2, indent="  ") == "  line 8\n  line 9"
    assert supervisor.tail(tmp_path / "none.log") == "(no log written)"
