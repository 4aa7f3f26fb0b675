"""gunicorn settings of the viewer: `gunicorn -c viewer/gunicorn.conf.py 'viewer:create_app()'`.

Everything comes from the configuration (orderlog.config: ORDERLOG_VIEWER_*; 127.0.0.1:8081
by default); a bad value stops gunicorn with one line. Threads serve the I/O-bound requests
(each waits on Cassandra); each worker process opens its own Cassandra session after the
fork (viewer.db creates it lazily).
"""

from orderlog.config import load_or_exit

_viewer = load_or_exit("gunicorn (viewer)").viewer

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
# No preload: a Cassandra session must never be shared across a fork.
preload_app = False
