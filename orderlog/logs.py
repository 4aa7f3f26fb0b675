"""How every process of the pipeline writes its log lines: plain text (the default), or one
JSON object per line with ``ORDERLOG_LOG_FORMAT=json``, for a log collector to parse.

Each entrypoint calls ``configure(process, ...)`` once (the gunicorn configs pass
``gunicorn_logconfig(...)`` to gunicorn instead, which covers its error and access logs and
the apps' own loggers); its one-line reports (``streaming: error: ...``) go through
``report``. A JSON line holds ``time`` (UTC), ``level``, ``process``, ``logger``,
``message``, ``pid``, and ``exception`` when there is one; gunicorn's access lines add
``http``. Spark's own JVM logs (log4j2, ``jobs/conf``) stay as they are.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

TEXT = "text"
JSON = "json"
FORMATS = (TEXT, JSON)
# The format of this process, once its entrypoint called ``configure``.
_current = TEXT
# gunicorn's access-log atoms worth a field of their own (its glogging.Logger.atoms).
ACCESS_FIELDS = {"h": "remote", "m": "method", "U": "path", "q": "query", "s": "status", "B": "bytes",
                 "D": "duration_us", "a": "user_agent"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (line breaks inside values are escaped)."""

    def __init__(self, process: str):
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "process": self.process,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        if record.name == "gunicorn.access" and isinstance(record.args, Mapping):
            entry["http"] = {field: record.args.get(atom) for atom, field in ACCESS_FIELDS.items()}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class StderrHandler(logging.StreamHandler):
    """A handler on whatever ``sys.stderr`` is when a record is emitted, not the one that was
    current when it was made: a library's background thread (librdkafka's, the Cassandra
    driver's) may log after the stream it saw was closed and replaced (a test's capture)."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self) -> TextIO:  # type: ignore[override]
        return sys.stderr


def json_line(process: str, level: str, message: str) -> str:
    record = logging.LogRecord(process, logging.getLevelName(level.upper()), "", 0, message, None, None)
    return JsonFormatter(process).format(record)


def formatter(process: str, log_format: str, text_format: str) -> logging.Formatter:
    return JsonFormatter(process) if log_format == JSON else logging.Formatter(text_format)


def configure(process: str, log_format: str, level: int = logging.INFO,
              text_format: str = "%(asctime)s %(name)s %(levelname)s %(message)s",
              silence: Iterable[str] = ()) -> None:
    """The root logger of this process: one handler on stderr, in the chosen format.
    Called once by each entrypoint; calling it again replaces the handler. ``silence``
    names libraries whose chatter the entrypoint reports itself, in its own one line (the
    Cassandra driver's reconnection tracebacks, say): only their critical lines pass."""
    for name in silence:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = StderrHandler()
    handler.setFormatter(formatter(process, log_format, text_format))
    root.addHandler(handler)
    root.setLevel(level)
    global _current
    _current = log_format


def report(process: str, message: str, level: str = "error", log_format: str | None = None,
           stream: TextIO | None = None) -> None:
    """One line an entrypoint reports (its error, its outcome): ``process: message`` as
    text, or a JSON object (in the format ``configure`` was given by default); stderr
    unless told."""
    log_format = log_format or _current
    line = json_line(process, level, message) if log_format == JSON else f"{process}: {message}"
    print(line, file=stream or sys.stderr, flush=True)


def progress(process: str, log_format: str | None = None) -> Callable[[str], None]:
    """Where a tool writes its progress lines (stdout): as they are, or each a JSON object."""
    log_format = log_format or _current
    if log_format == JSON:
        return lambda line: print(json_line(process, "info", line), flush=True)
    return lambda line: print(line, flush=True)


def gunicorn_logconfig(process: str, log_format: str, level: str, access_log: str | None) -> dict[str, Any]:
    """gunicorn's ``logconfig_dict``: empty for text (gunicorn's own formats), else its error
    log (and the apps' loggers, through the root) as JSON on stderr, its access log, when
    one is kept, as JSON on stdout (``-``) or in its file."""
    if log_format != JSON:
        return {}
    handlers: dict[str, Any] = {
        "json_stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"},
        "none": {"class": "logging.NullHandler"},
    }
    if access_log == "-":
        handlers["access"] = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"}
    elif access_log:
        handlers["access"] = {"class": "logging.FileHandler", "formatter": "json", "filename": access_log}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter, "process": process}},
        "handlers": handlers,
        # The apps' loggers and the libraries' reach the root: warnings and worse, as in text.
        "root": {"level": "WARNING", "handlers": ["json_stderr"]},
        "loggers": {
            "gunicorn.error": {"level": level.upper(), "handlers": ["json_stderr"], "propagate": False},
            "gunicorn.access": {"level": "INFO", "handlers": ["access" if "access" in handlers else "none"],
                                "propagate": False},
        },
    }
