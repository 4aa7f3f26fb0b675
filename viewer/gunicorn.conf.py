"""gunicorn settings of the viewer: `gunicorn -c viewer/gunicorn.conf.py 'viewer:create_app()'`.

Everything comes from the configuration (orderlog.config: ORDERLOG_VIEWER_*; 127.0.0.1:8081
by default); a bad value stops gunicorn with one line. Threads serve the I/O-bound requests
(each waits on Cassandra); each worker process opens its own Cassandra session after the
fork (viewer.db creates it lazily).
"""

from orderlog.config import exit_if_exposed, load_or_exit
from orderlog.gunicorn_hooks import server_hooks
from orderlog.logs import gunicorn_logconfig
from orderlog.metrics import start_multiprocess

PROG = "gunicorn (viewer)"
_settings = load_or_exit(PROG)
_viewer = _settings.viewer
# No basic auth, no listening beyond loopback (unless ORDERLOG_ALLOW_UNAUTHENTICATED=1).
exit_if_exposed(PROG, _settings, "viewer", [_viewer.host])
# Prometheus' multiprocess mode: each worker writes its figures to files in one fresh folder
# per start, which must be set before anything imports prometheus_client (so this file
# imports nothing that does); /metrics adds them up.
_metrics_dir = start_multiprocess("viewer")

bind = f"{_viewer.host}:{_viewer.port}"
workers = _viewer.workers
worker_class = "gthread"
threads = _viewer.threads
# A whole-segment CSV export streams for a while; let it.
timeout = _viewer.timeout
graceful_timeout = 20
keepalive = 5
accesslog = "-"
errorlog = "-"
loglevel = _viewer.log_level
# ORDERLOG_LOG_FORMAT=json: gunicorn's lines and the app's, one JSON object each.
logconfig_dict = gunicorn_logconfig("viewer", _settings.log.format, loglevel, accesslog)
# No preload: a Cassandra session must never be shared across a fork.
preload_app = False


on_starting, child_exit, on_exit = server_hooks(PROG, _settings, "viewer", _metrics_dir)
