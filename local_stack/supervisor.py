"""Processes of our own, for the local stack, the demo and the tests: each started in a
session of its own (so stopping it stops its children: spark-submit's JVM and Python
driver, gunicorn's workers) with its output appended to a log; found again by pid and start
time, so a reused pid is never mistaken for ours; stopped with SIGTERM, then SIGKILL to its
whole process group after a timeout. Plus the end of a log, a process's memory, and which
process holds a port."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

STOP_TIMEOUT_S = 60.0
# After SIGKILL the kernel frees a process quickly; this only bounds a wait that cannot hang.
KILL_WAIT_S = 30.0

# The Popen of each process this process started and has not stopped yet (see _reap).
_POPEN_OF: dict[int, subprocess.Popen] = {}


@dataclass(frozen=True)
class Started:
    """A process we started: enough to find it again, from this process or a later one."""

    pid: int
    started_at: float  # psutil's create_time: a reused pid has another one
    command: tuple[str, ...]
    log: str
    # Only in the process that started it: how it exited.
    process: subprocess.Popen | None = field(default=None, compare=False, repr=False)

    def exit_code(self) -> int | None:
        """The exit status once it has exited (known only to the process that started it)."""
        return None if self.process is None else self.process.poll()

    def to_json(self) -> dict[str, Any]:
        return {"pid": self.pid, "started_at": self.started_at, "command": list(self.command), "log": self.log}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Started:
        return cls(int(data["pid"]), float(data.get("started_at", -1.0)), tuple(data["command"]), str(data["log"]))


def start(command: Sequence[str], *, log: Path, cwd: Path, env: Mapping[str, str] | None = None) -> Started:
    """``command`` in the background, in a session of its own (a Ctrl-C meant for the
    caller does not reach it), stdin closed, stdout and stderr appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(
            list(command), cwd=cwd, env=None if env is None else dict(env), stdin=subprocess.DEVNULL,
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    _POPEN_OF[process.pid] = process
    return Started(process.pid, _create_time(process.pid), tuple(command), str(log), process)


def running(entry: Started) -> bool:
    """The process still runs and is the one we started."""
    return _alive(entry.pid) and _create_time(entry.pid) == entry.started_at


def find(pid: int | None, marks: Sequence[str]) -> int | None:
    """``pid`` if it runs and its command line holds every one of ``marks`` (a pid file
    outlives its process, and the pid may since belong to another program), else None."""
    if pid is None or not _alive(pid):
        return None
    try:
        command = " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return None
    return pid if all(mark in command for mark in marks) else None


def stop(pid: int, timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM to the process (it stops its own children: gunicorn's master its workers,
    spark-submit's JVM its Python driver), then SIGKILL to its whole process group if
    anything of the group is left after ``timeout``; returns when the group is gone."""
    group = _group_of(pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not _wait_gone(pid, group, timeout):
        kill(pid, group)
    _reap(pid)


def kill(pid: int, group: int | None = None) -> None:
    """SIGKILL to the process's whole group (fault tests: no clean shutdown); returns when
    it is gone."""
    group = _group_of(pid) if group is None else group
    try:
        if group is None:
            raise ProcessLookupError
        os.killpg(group, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _wait_gone(pid, group, KILL_WAIT_S)
    _reap(pid)


def tail(path: str | Path, lines: int = 25, indent: str = "") -> str:
    """The last ``lines`` lines of a log, each indented."""
    try:
        content = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return f"{indent}(no log written)"
    return "\n".join(indent + line for line in content[-lines:])


def rss_mb(pid: int) -> float | None:
    try:
        return psutil.Process(pid).memory_info().rss / 2**20
    except psutil.Error:
        return None


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR: a port in TIME_WAIT after our own clean stop is free to use.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def port_owner(port: int) -> str:
    """Best effort: which process listens on the port."""
    try:
        listening = [c for c in psutil.net_connections("tcp") if c.laddr and c.laddr.port == port
                     and c.status == psutil.CONN_LISTEN and c.pid]
        if listening:
            command = " ".join(psutil.Process(listening[0].pid).cmdline())
            return f"pid {listening[0].pid}: {command[:120]}"
    except (psutil.Error, OSError):
        pass
    return "owner unknown"


def free_ports(count: int) -> list[int]:
    """Ports nobody listens on right now (for servers of a test's or a benchmark's own)."""
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _create_time(pid: int) -> float:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return -1.0


def _alive(pid: int) -> bool:
    """Runs and is not a zombie (a zombie is left to its parent to reap: the Popen of
    ``Started.process`` keeps its exit status)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _reap(pid: int) -> None:
    """Collects the exit status of a child of this process that has ended, so that no zombie
    keeps its pid taken (a process that started a server and stops it is its parent). Through
    its Popen when we have it, which keeps the status for ``Started.exit_code``."""
    process = _POPEN_OF.pop(pid, None)
    if process is not None:
        # Not poll(): a JVM's main thread shows as a zombie while its other threads still
        # unmap the heap, and the kernel hands out the status only after the last one.
        try:
            process.wait(timeout=KILL_WAIT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            process.wait(timeout=KILL_WAIT_S)
        return
    deadline = time.monotonic() + KILL_WAIT_S
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(pid, os.WNOHANG) == (0, 0) and time.monotonic() < deadline:
            time.sleep(0.05)


def _group_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _group_alive(group: int) -> bool:
    for process in psutil.process_iter():
        with contextlib.suppress(ProcessLookupError, psutil.Error):
            if os.getpgid(process.pid) == group and _alive(process.pid):
                return True
    return False


def _wait_gone(pid: int, group: int | None, timeout: float) -> bool:
    """True once the process (and, if it leads one, its group) is gone; False at timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid) and (group is None or group != pid or not _group_alive(group)):
            return True
        time.sleep(0.2)
    return False
