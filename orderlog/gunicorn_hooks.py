"""The server hooks both apps' gunicorn configuration files share: the refusal to serve
unauthenticated beyond loopback, checked again on the addresses gunicorn really binds, and
the life of the Prometheus multiprocess folder."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from orderlog.config import Settings, exit_if_exposed
from orderlog.metrics import stop_multiprocess, worker_exited

Hook = Callable[..., None]


def server_hooks(prog: str, settings: Settings, app: str, metrics_dir: str) -> tuple[Hook, Hook, Hook]:
    """gunicorn's (on_starting, child_exit, on_exit) for ``app`` ("ingest" or "viewer")."""

    def on_starting(server: Any) -> None:
        # A `-b` flag overrides the configured bind: check the addresses gunicorn will use
        # (a unix socket or a file descriptor is local).
        hosts = [address[0] for address in server.cfg.address if isinstance(address, tuple)]
        try:
            exit_if_exposed(prog, settings, app, hosts, source="bind")
        except SystemExit:
            stop_multiprocess(metrics_dir)
            raise

    def child_exit(server: Any, worker: Any) -> None:
        worker_exited(worker.pid)  # its live figures (gauges) no longer count

    def on_exit(server: Any) -> None:
        stop_multiprocess(metrics_dir)

    return on_starting, child_exit, on_exit
