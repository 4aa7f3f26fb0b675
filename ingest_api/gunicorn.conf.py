"""gunicorn settings of the ingest API: `gunicorn -c ingest_api/gunicorn.conf.py 'ingest_api:create_app()'`.

Everything comes from the configuration (orderlog.config: ORDERLOG_INGEST_*); a bad value
stops gunicorn with one line. Threads per worker let many concurrent single-event requests
share one producer, whose batching (linger_ms) then sends their records together.
Command-line flags override these.
"""

from orderlog.config import exit_if_exposed, load_or_exit
from orderlog.gunicorn_hooks import server_hooks
from orderlog.logs import gunicorn_logconfig
from orderlog.metrics import start_multiprocess

PROG = "gunicorn (ingest API)"
_settings = load_or_exit(PROG)
_ingest = _settings.ingest
# No token, no listening beyond loopback (unless ORDERLOG_ALLOW_UNAUTHENTICATED=1).
exit_if_exposed(PROG, _settings, "ingest", [_ingest.host])
# Prometheus' multiprocess mode: each worker writes its figures to files in one fresh folder
# per start, which must be set before anything imports prometheus_client (so this file
# imports nothing that does); /metrics adds them up.
_metrics_dir = start_multiprocess("ingest")

bind = f"{_ingest.host}:{_ingest.port}"
workers = _ingest.workers
worker_class = "gthread"
threads = _ingest.threads
# A request may wait this long for Kafka (ORDERLOG_INGEST_ACK_TIMEOUT_MS) plus parsing.
timeout = max(30, _ingest.ack_timeout_ms // 1000 * 3)
graceful_timeout = 30
accesslog = _ingest.access_log or None
errorlog = "-"
loglevel = _ingest.log_level
# ORDERLOG_LOG_FORMAT=json: gunicorn's lines and the app's, one JSON object each.
logconfig_dict = gunicorn_logconfig("ingest", _settings.log.format, loglevel, accesslog)
# Each worker creates its own producer after the fork (never share sockets across fork).
preload_app = False


def worker_exit(server, worker):
    """On SIGTERM/SIGINT: send what is buffered and close the producer of this worker."""
    from ingest_api.producer import close_app_producer

    app = getattr(worker, "wsgi", None)
    if app is not None and hasattr(app, "extensions"):
        close_app_producer(app)
        server.log.info("worker %s: Kafka producer flushed and closed", worker.pid)


on_starting, child_exit, on_exit = server_hooks(PROG, _settings, "ingest", _metrics_dir)
