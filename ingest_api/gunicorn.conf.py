"""gunicorn settings of the ingest API: `gunicorn -c ingest_api/gunicorn.conf.py 'ingest_api:create_app()'`.

Everything comes from the configuration (orderlog.config: ORDERLOG_INGEST_*); a bad value
stops gunicorn with one line. Threads per worker let many concurrent single-event requests
share one producer, whose batching (linger_ms) then sends their records together.
Command-line flags override these.
"""

from ingest_api.producer import close_app_producer
from orderlog.config import load_or_exit

_ingest = load_or_exit("gunicorn (ingest API)").ingest

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
# Each worker creates its own producer after the fork (never share sockets across fork).
preload_app = False


def worker_exit(server, worker):
    """On SIGTERM/SIGINT: send what is buffered and close the producer of this worker."""
    app = getattr(worker, "wsgi", None)
    if app is not None and hasattr(app, "extensions"):
        close_app_producer(app)
        server.log.info("worker %s: Kafka producer flushed and closed", worker.pid)
