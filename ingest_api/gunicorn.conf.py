"""gunicorn settings of the ingest API: `gunicorn -c ingest_api/gunicorn.conf.py 'ingest_api:create_app()'`.

Everything comes from the configuration (orderlog.config: ORDERLOG_INGEST_*); a bad value
stops gunicorn with one line. Threads per worker let many concurrent single-event requests
share one producer, whose batching (linger_ms) then sends their records together.
Command-line flags override these.
"""

from orderlog.gunicorn_hooks import server_hooks, start_server

PROG = "gunicorn (ingest API)"
_settings, _metrics_dir, _common = start_server(PROG, "ingest")
globals().update(_common)  # bind, workers, worker_class, threads, accesslog, errorlog, loglevel, logconfig_dict

# A request may wait this long for Kafka (ORDERLOG_INGEST_ACK_TIMEOUT_MS) plus parsing.
timeout = max(30, _settings.ingest.ack_timeout_ms // 1000 * 3)
graceful_timeout = 30
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
