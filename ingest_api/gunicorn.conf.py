"""gunicorn settings of the ingest API: `gunicorn -c ingest_api/gunicorn.conf.py 'ingest_api:create_app()'`.

Threads per worker let many concurrent single-event requests share one producer, whose
batching (linger_ms) then sends their records together. Command-line flags override these.
"""

import os

from orderlog.config import load_settings

_settings = load_settings()

bind = f"{_settings.ingest_host}:{_settings.ingest_port}"
workers = int(os.environ.get("INGEST_WORKERS", "2"))
worker_class = "gthread"
threads = int(os.environ.get("INGEST_THREADS", "16"))
# A request may wait this long for Kafka (ORDERLOG_INGEST_ACK_TIMEOUT_MS) plus parsing.
timeout = max(30, _settings.ingest_ack_timeout_ms // 1000 * 3)
graceful_timeout = 30
accesslog = os.environ.get("INGEST_ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("INGEST_LOG_LEVEL", "info")
# Each worker creates its own producer after the fork (never share sockets across fork).
preload_app = False


def worker_exit(server, worker):
    """On SIGTERM/SIGINT: send what is buffered and close the producer of this worker."""
    from ingest_api.producer import close_app_producer

    app = getattr(worker, "wsgi", None)
    if app is not None and hasattr(app, "extensions"):
        close_app_producer(app)
        server.log.info("worker %s: Kafka producer flushed and closed", worker.pid)
