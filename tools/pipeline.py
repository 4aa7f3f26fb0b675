"""The whole pipeline on this machine, as the demo and the end-to-end test run it: the
streaming job, the ingest API and the viewer as background processes (local_stack's
supervisor), the nightly aggregate through ./spark-submit.sh, and the checks that every
acknowledged order reached raw_orders and that the viewer's JSON API shows exactly what
a replay's truth says."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from datetime import date
from pathlib import Path
from typing import Any

from local_stack import supervisor
from local_stack.supervisor import Started
from orderlog.cassandra_session import connect, shutdown
from orderlog.config import PROJECT_ROOT, Settings, child_environment
from orderlog.layout import RAW_ORDER_BUCKETS
from orderlog.menu import EVEN, SEGMENTS
from viewer.csv_export import original_cell

SERVICES = ("streaming", "ingest", "viewer")  # started in this order, stopped in reverse


class PipelineError(RuntimeError):
    """The pipeline did not do its part; the message says why and where to look."""


def service_commands() -> dict[str, list[str]]:
    """The commands of the long-running parts, as `make streaming|ingest|viewer` runs them."""
    python = sys.executable
    return {
        "streaming": ["./spark-submit.sh", "streaming"],
        "ingest": [python, "-m", "gunicorn", "-c", "ingest_api/gunicorn.conf.py", "ingest_api:create_app()"],
        "viewer": [python, "-m", "gunicorn", "-c", "viewer/gunicorn.conf.py", "viewer:create_app()"],
    }


def ingest_url(settings: Settings) -> str:
    return f"http://{settings.ingest.host}:{settings.ingest.port}"


def viewer_url(settings: Settings) -> str:
    return f"http://{settings.viewer.host}:{settings.viewer.port}"


def start_services(
    settings: Settings, folder: Path, started: Callable[[str, Started], None] = lambda name, process: None
) -> dict[str, Started]:
    """Starts the streaming job, the ingest API and the viewer on ``settings`` (logs in
    ``folder``), calling ``started`` after each; returns once both HTTP services answer."""
    env = child_environment(settings)
    processes: dict[str, Started] = {}
    for name, command in service_commands().items():
        processes[name] = supervisor.start(command, log=folder / f"{name}.log", cwd=PROJECT_ROOT, env=env)
        started(name, processes[name])
    wait_http(f"{ingest_url(settings)}/readyz", processes["ingest"])
    wait_http(f"{viewer_url(settings)}/readyz", processes["viewer"])
    return processes


def stop_services(processes: Mapping[str, Started], log: Callable[[str], None] = lambda line: None) -> None:
    """Stops what start_services started, in reverse order (SIGTERM: gunicorn's master
    stops its workers, the streaming job stops between batches)."""
    for name in reversed(SERVICES):
        process = processes.get(name)
        if process is not None and supervisor.running(process):
            supervisor.stop(process.pid)
            log(f"  {name} stopped (pid {process.pid})")


def wait_http(url: str, process: Started, timeout: float = 120) -> None:
    """Until ``url`` answers anything but a 5xx; PipelineError when the process exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not supervisor.running(process):
            raise PipelineError(
                f"{process.command[-1]} exited; its log {process.log} ends with:\n{supervisor.tail(process.log, 30)}"
            )
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                return  # it answers (404 before anything is aggregated, for example)
        except OSError:
            pass
        time.sleep(0.5)
    raise PipelineError(f"{url} did not answer within {timeout:.0f}s; see {process.log}")


def run_aggregate(settings: Settings, first: date, last: date, log_file: Path) -> None:
    """./spark-submit.sh aggregate --from first --to last, output appended to log_file."""
    command = ["./spark-submit.sh", "aggregate", "--from", first.isoformat(), "--to", last.isoformat()]
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as out:  # in the foreground: a Ctrl-C stops it with the caller
        code = subprocess.run(command, cwd=PROJECT_ROOT, env=child_environment(settings), stdout=out,
                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=False).returncode
    if code != 0:
        raise PipelineError(f"aggregate failed (exit {code}); {log_file} ends with:\n{supervisor.tail(log_file, 30)}")


def raw_order_counts(settings: Settings, days: list[date]) -> dict[str, int]:
    """Rows of raw_orders per business date (each of the date's bucket partitions)."""
    session = connect(settings)
    try:
        query = session.prepare("SELECT count(*) FROM raw_orders WHERE order_date = ? AND bucket = ?")
        return {
            d.isoformat(): sum(session.execute(query, (d, b), timeout=30).one()[0] for b in range(RAW_ORDER_BUCKETS))
            for d in days
        }
    finally:
        shutdown(session)


def wait_for_raw_orders(
    settings: Settings, truth: Mapping[str, Any], *, timeout: float = 900,
    alive: Callable[[], bool] = lambda: True, log: Callable[[str], None] = print,
) -> dict[str, int]:
    """Waits until raw_orders has, for every date, exactly the truth's number of orders."""
    expected = {d: v["total"] for d, v in truth["daily"].items()}
    days = [date.fromisoformat(d) for d in expected]
    deadline = time.monotonic() + timeout
    last_report = 0.0
    while True:
        counts = raw_order_counts(settings, days)
        if counts == expected:
            return counts
        if any(counts[d] > expected[d] for d in expected):
            extra = {d: counts[d] - expected[d] for d in expected if counts[d] > expected[d]}
            raise PipelineError(
                f"raw_orders has more orders than this replay sent {extra}: keyspace "
                f"{settings.cassandra.keyspace} also holds other orders on these dates (orders added after "
                "an earlier demo, say). The demo checks the viewer against exactly what it sent: "
                "`make demo-reset` empties the keyspace, then run `make demo` again "
                "(or give the demo a keyspace of its own with ORDERLOG_CASSANDRA_KEYSPACE)"
            )
        if not alive():
            raise PipelineError("the streaming job stopped before every order arrived")
        if time.monotonic() > deadline:
            raise PipelineError(f"after {timeout:.0f}s raw_orders has {sum(counts.values())} of "
                                f"{sum(expected.values())} orders: {counts}")
        if time.monotonic() - last_report > 10:
            log(f"  raw_orders: {sum(counts.values())} of {sum(expected.values())} orders")
            last_report = time.monotonic()
        time.sleep(2)


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=60) as reply:
        return json.loads(reply.read())


def check_viewer(base_url: str, truth: Mapping[str, Any], sample_users: int = 25) -> list[str]:
    """Differences between the viewer's JSON API and the truth; empty when they agree."""
    problems: list[str] = []
    dates = list(truth["dates"])
    first, last = dates[0], dates[-1]
    query = urllib.parse.urlencode({"from": first, "to": last})

    shown = {d["date"]: d for d in get_json(f"{base_url}/api/daily_order_summaries?{query}")["days"]}
    for day, want in truth["daily"].items():
        got = shown.get(day)
        if got is None:
            if want["total"]:
                problems.append(f"daily {day}: missing, expected {want}")
            continue
        got_counts = {k: got[k] for k in ("japanese", "western", "total", "users")}
        if got_counts != want:
            problems.append(f"daily {day}: viewer {got_counts}, truth {want}")
    single = get_json(f"{base_url}/api/daily_order_summaries?date={last}")
    if (single["japanese"], single["western"]) != (truth["daily"][last]["japanese"], truth["daily"][last]["western"]):
        problems.append(f"daily {last} (seed form): viewer {single}, truth {truth['daily'][last]}")

    sizes = {d["as_of"]: d["segments"] for d in get_json(f"{base_url}/api/segment_sizes?{query}")["days"]}
    for day, want in truth["segments_by_day"].items():
        if truth["daily"][day]["total"] == 0 and day not in sizes:
            continue
        got = {s: sizes.get(day, {}).get(s) for s in SEGMENTS}
        if got != want:
            problems.append(f"segment sizes {day}: viewer {got}, truth {want}")

    overview = get_json(f"{base_url}/api/user_segments")
    counts = {s: overview["segments"][s]["count"] for s in SEGMENTS}
    if counts != truth["segments"]:
        problems.append(f"user_segments counts: viewer {counts}, truth {truth['segments']}")

    users = truth["users"]
    for segment in SEGMENTS:  # every member and their counts, through the CSV export
        with urllib.request.urlopen(f"{base_url}/api/user_segments/{segment}.csv", timeout=120) as reply:
            # utf-8-sig: the export starts with a BOM for spreadsheets
            rows = list(csv.DictReader(io.StringIO(reply.read().decode("utf-8-sig"))))
        got = {original_cell(r["user_id"]): (int(r["japanese"]), int(r["western"])) for r in rows}
        want = {u: (v["japanese"], v["western"]) for u, v in users.items() if v["preference"] == segment}
        if got != want:
            wrong = sorted(set(got.items()) ^ set(want.items()))[:5]
            problems.append(f"segment {segment}: {len(got)} members shown, {len(want)} expected; e.g. {wrong}")

    ties = [u for u, v in users.items() if v["preference"] == EVEN][: sample_users // 5]
    for user_id in ties + list(users)[:: max(1, len(users) // sample_users)][:sample_users]:
        got = get_json(f"{base_url}/api/users/{urllib.parse.quote(user_id, safe='')}")
        want = users[user_id]
        got_user = {k: got[k] for k in want}
        if got_user != want:
            problems.append(f"user {user_id}: viewer {got_user}, truth {want}")
    return problems
