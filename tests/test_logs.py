"""ORDERLOG_LOG_FORMAT=json: every line a process logs is one JSON object. The formatter
itself, then the real entrypoints (gunicorn with each app, the jobs' and the tools' lines)
as subprocesses; plain text stays the default."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from orderlog.config import Settings, child_environment
from orderlog.logs import JsonFormatter, configure, gunicorn_logconfig, json_line, report
from tests.conftest import free_ports, gunicorn_server

ROOT = Path(__file__).resolve().parent.parent


def objects(text: str) -> list[dict]:
    """Every non-empty line as a JSON object (fails on any line that is not one)."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_a_record_is_one_json_line_with_its_fields():
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        record = logging.LogRecord("orderlog.x", logging.WARNING, "", 0, "%d rows\nskipped", (3,), sys.exc_info())
    line = JsonFormatter("streaming").format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert {k: entry[k] for k in ("level", "process", "logger", "message")} == {
        "level": "warning", "process": "streaming", "logger": "orderlog.x", "message": "3 rows\nskipped"}
    assert entry["time"].endswith("+00:00") and isinstance(entry["pid"], int)
    assert entry["exception"].startswith("Traceback") and "ValueError: bad\nthing" in entry["exception"]


def test_text_is_the_default_and_gunicorn_keeps_its_own_formats(capsys):
    assert Settings().log.format == "text"
    assert gunicorn_logconfig("viewer", "text", "info", "-") == {}
    report("replay", "cannot replay", log_format="text")
    assert capsys.readouterr().err == "replay: cannot replay\n"
    report("replay", "cannot replay", log_format="json")
    assert json.loads(capsys.readouterr().err) | {"time": 0, "pid": 0} == {
        "time": 0, "pid": 0, "level": "error", "process": "replay", "logger": "replay", "message": "cannot replay"}
    assert json.loads(json_line("aggregate", "warning", "x"))["level"] == "warning"


def _run(*command: str, **env: str) -> subprocess.CompletedProcess:
    environment = {**child_environment(Settings()), "ORDERLOG_LOG_FORMAT": "json", **env}
    return subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120)


def test_a_line_logged_after_stderr_was_replaced_goes_to_the_new_stderr(monkeypatch):
    """A library thread that logs after the stderr of configure() time was closed (pytest's
    capture of an earlier test) must not print "--- Logging error ---"."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    first, second = io.StringIO(), io.StringIO()
    try:
        monkeypatch.setattr(sys, "stderr", first)
        configure("tool", "text", text_format="%(message)s")
        logging.getLogger("lib").warning("before")
        first.close()
        monkeypatch.setattr(sys, "stderr", second)
        logging.getLogger("lib").warning("after")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    assert second.getvalue() == "after\n"


def test_a_bad_setting_is_one_json_line_too():
    done = _run(sys.executable, "-m", "orderlog.config", ORDERLOG_CASSANDRA_PORT="ninety")
    assert done.returncode == 2
    [entry] = objects(done.stderr)
    assert entry["process"] == "python -m orderlog.config" and entry["level"] == "error"
    assert entry["message"] == "error: ORDERLOG_CASSANDRA_PORT='ninety': expected a whole number from 1 to 65535"


def test_the_jobs_and_the_tools_report_in_json():
    (port,) = free_ports(1)
    aggregate = _run(sys.executable, "-m", "jobs.aggregate", "--date", "2025-05-31", ORDERLOG_CASSANDRA_PORT=str(port))
    assert aggregate.returncode == 1
    assert objects(aggregate.stderr)[-1]["message"] == f"error: Cassandra is unreachable at 127.0.0.1:{port}"

    streaming = _run(sys.executable, "-m", "jobs.streaming", ORDERLOG_CASSANDRA_PORT=str(port),
                     ORDERLOG_STREAM_WRITE_RETRY_SECONDS="0")
    assert streaming.returncode == 1
    entries = objects(streaming.stderr)
    assert entries[-1]["process"] == "streaming"
    assert entries[-1]["message"].startswith(f"error: Cassandra is unreachable at 127.0.0.1:{port}")

    replay = _run(sys.executable, "-m", "tools.replay", "2999-12-31", "--days", "1", "--orders", "5", "--users", "2",
                  "--url", "http://127.0.0.1:9")
    assert replay.returncode == 1 and replay.stdout == ""
    [entry] = objects(replay.stderr)
    assert entry["process"] == "replay" and entry["message"].startswith("cannot replay 2999-12-31: ")


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return reply.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.parametrize("app", ["ingest_api", "viewer"])
def test_gunicorn_and_the_app_log_json_lines(app, tmp_path):
    (kafka_port,) = free_ports(1)  # nothing listens: the ingest API's 503 logs a warning
    env = {"ORDERLOG_LOG_FORMAT": "json", "ORDERLOG_INGEST_ACCESS_LOG": "-",
           "ORDERLOG_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{kafka_port}", "ORDERLOG_INGEST_ACK_TIMEOUT_MS": "1000"}
    log = tmp_path / "server.log"
    with gunicorn_server(app, env, log, "/healthz") as (_, base):
        assert _get(base + "/healthz") == 200
        assert _get(base + "/no/such/page") == 404
        if app == "ingest_api":
            request = urllib.request.Request(
                base + "/api/log", method="POST", headers={"Content-Type": "application/json"},
                data=json.dumps({"user_id": "u", "timestamp": "2025-05-31T12:00:00+09:00",
                                 "menu_type": "japanese"}).encode())
            assert _get(request) == 503  # type: ignore[arg-type]
    entries = objects(log.read_text())
    process = "ingest" if app == "ingest_api" else "viewer"
    assert {e["process"] for e in entries} == {process}
    assert any(e["logger"] == "gunicorn.error" and e["message"].startswith("Starting gunicorn") for e in entries)
    access = [e["http"] for e in entries if e["logger"] == "gunicorn.access"]
    assert {"method": "GET", "path": "/healthz", "status": "200"}.items() <= next(
        a for a in access if a["path"] == "/healthz").items()
    assert any(a["path"] == "/no/such/page" and a["status"] == "404" for a in access)
    if app == "ingest_api":  # the app's own warning, through the root logger
        assert any(e["logger"] == "ingest_api" and e["message"].startswith("503: ") for e in entries)
