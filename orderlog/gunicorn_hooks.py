"""What both apps' gunicorn configuration files share: the settings taken from the one
configuration, the refusal to serve unauthenticated beyond loopback (checked on the
configured address, then again on the addresses gunicorn really binds), and the life of the
Prometheus multiprocess folder.

Imports nothing that imports prometheus_client: the multiprocess folder must be set first."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from orderlog.config import Settings, exit_if_exposed, load_or_exit
from orderlog.logs import gunicorn_logconfig
from orderlog.metrics import start_multiprocess, stop_multiprocess, worker_exited

Hook = Callable[..., None]


def start_server(prog: str, app: str) -> tuple[Settings, str, dict[str, Any]]:
    """For ``app`` ("ingest" or "viewer"): its settings (a bad value stops gunicorn with one
    line), its fresh Prometheus multiprocess folder, and the gunicorn settings both apps take
    alike from their section: bind, workers and threads (gthread), the access log (the
    viewer's on stdout; the ingest API's where ORDERLOG_INGEST_ACCESS_LOG says, none by
    default: a line per event request costs throughput), the error log on stderr, the log
    level, and with ORDERLOG_LOG_FORMAT=json gunicorn's lines and the app's as JSON."""
    settings = load_or_exit(prog)
    section = getattr(settings, app)
    accesslog = getattr(section, "access_log", "-") or None
    # No credentials, no listening beyond loopback (unless ORDERLOG_ALLOW_UNAUTHENTICATED=1).
    exit_if_exposed(prog, settings, app, [section.host])
    # Prometheus' multiprocess mode: each worker writes its figures to files in one fresh
    # folder per start, set before anything imports prometheus_client; /metrics adds them up.
    metrics_dir = start_multiprocess(app)
    common = {
        "bind": f"{section.host}:{section.port}",
        "workers": section.workers,
        "worker_class": "gthread",
        "threads": section.threads,
        "accesslog": accesslog,
        "errorlog": "-",
        "loglevel": section.log_level,
        "logconfig_dict": gunicorn_logconfig(app, settings.log.format, section.log_level, accesslog),
    }
    return settings, metrics_dir, common


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
