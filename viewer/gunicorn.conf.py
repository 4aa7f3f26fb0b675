"""gunicorn settings of the viewer: `gunicorn -c viewer/gunicorn.conf.py 'viewer:create_app()'`.

Binds ORDERLOG_VIEWER_HOST:ORDERLOG_VIEWER_PORT (127.0.0.1:8081 by default). Threads
serve the I/O-bound requests (each waits on Cassandra); each worker process opens its
own Cassandra session after the fork (viewer.db creates it lazily).
"""

import os

from orderlog.config import load_settings

_settings = load_settings()

bind = os.environ.get("VIEWER_BIND", f"{_settings.viewer_host}:{_settings.viewer_port}")
workers = int(os.environ.get("VIEWER_WORKERS", "2"))
worker_class = "gthread"
threads = int(os.environ.get("VIEWER_THREADS", "8"))
# A whole-segment CSV export streams for a while; let it.
timeout = int(os.environ.get("VIEWER_TIMEOUT", "300"))
graceful_timeout = 20
keepalive = 5
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("VIEWER_LOG_LEVEL", "info")
# No preload: a Cassandra session must never be shared across a fork.
preload_app = False
