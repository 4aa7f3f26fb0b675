"""gunicorn settings of the viewer: `gunicorn -c viewer/gunicorn.conf.py 'viewer:create_app()'`.

Everything comes from the configuration (orderlog.config: ORDERLOG_VIEWER_*; 127.0.0.1:8081
by default); a bad value stops gunicorn with one line. Threads serve the I/O-bound requests
(each waits on Cassandra); each worker process opens its own Cassandra session after the
fork (viewer.db creates it lazily).
"""

from orderlog.gunicorn_hooks import server_hooks, start_server

PROG = "gunicorn (viewer)"
_settings, _metrics_dir, _common = start_server(PROG, "viewer")
globals().update(_common)  # bind, workers, worker_class, threads, accesslog, errorlog, loglevel, logconfig_dict

# A whole-segment CSV export streams for a while; let it.
timeout = _settings.viewer.timeout
graceful_timeout = 20
keepalive = 5
# No preload: a Cassandra session must never be shared across a fork.
preload_app = False


on_starting, child_exit, on_exit = server_hooks(PROG, _settings, "viewer", _metrics_dir)
