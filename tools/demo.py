"""``make demo`` / ``make stop``: the whole pipeline on this machine, showing a replayed week.

    python -m tools.demo start [--date 2025-05-31] [--days 7] [--users 2000] [--orders 20000]
    python -m tools.demo stop
    python -m tools.demo status
    python -m tools.demo reset

``start`` sets up the local Kafka and Cassandra (schema, topic), starts the streaming job,
the ingest API and the viewer in the background (logs and pids in ``<var>/demo/``),
replays a week of orders ending on a fixed date with its truth, waits until every
acknowledged order is in ``raw_orders``, runs ``aggregate`` over the week, checks that the
viewer's JSON API shows exactly the truth, and prints the viewer's URL. Running it again
restarts the demo's processes (streaming resumes from its checkpoint; the replay's order
ids are the same, so nothing is counted twice). ``stop`` stops every process the demo
started, and the Kafka and Cassandra servers if the demo started them. ``reset`` empties
the keyspace's tables (for example after orders were added to the demo's dates).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import io
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from orderlog.config import Settings, child_environment, load_or_exit
from orderlog.layout import RAW_ORDER_BUCKETS
from orderlog.menu import EVEN, SEGMENTS
from viewer.csv_export import original_cell

ROOT = Path(__file__).resolve().parent.parent
DEMO_DATE = date(2025, 5, 31)
SERVICES = ("streaming", "ingest", "viewer")  # started in this order, stopped in reverse
STOP_TIMEOUT = 60.0


class DemoError(RuntimeError):
    """The demo cannot go on; the message says why and where to look."""


# --- configuration and state --------------------------------------------------------


def demo_dir(settings: Settings) -> Path:
    return settings.paths.var_path / "demo"


def load_state(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / "state.json").read_text())
    except (OSError, ValueError):
        return {"processes": {}, "stack_started": []}


def save_state(folder: Path, state: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "state.json.tmp"
    tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
    tmp.replace(folder / "state.json")


# --- background processes ------------------------------------------------------------


def service_commands(settings: Settings, checkpoint: str | None = None) -> dict[str, list[str]]:
    python = sys.executable
    streaming = ["./spark-submit.sh", "streaming"] + (["--checkpoint", checkpoint] if checkpoint else [])
    return {
        "streaming": streaming,
        "ingest": [python, "-m", "gunicorn", "-c", "ingest_api/gunicorn.conf.py", "ingest_api:create_app()"],
        "viewer": [python, "-m", "gunicorn", "-c", "viewer/gunicorn.conf.py", "viewer:create_app()"],
    }


def start_process(name: str, command: list[str], env: Mapping[str, str], log: Path) -> dict[str, Any]:
    """A background process in its own process group (so stopping it stops its children:
    spark-submit's JVM, gunicorn's workers), output to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(
            command, cwd=ROOT, env=dict(env), stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
    return {"pid": process.pid, "start_time": start_time(process.pid), "command": command, "log": str(log)}


def start_time(pid: int) -> int | None:
    """The kernel's start time of a process (clock ticks after boot), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def is_ours(entry: Mapping[str, Any]) -> bool:
    """The recorded process still runs and is the one we started (a reused pid has
    another start time)."""
    pid = int(entry["pid"])
    return start_time(pid) == entry.get("start_time") and _state(pid) not in ("Z", None)


def _state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def stop_process(entry: Mapping[str, Any], timeout: float = STOP_TIMEOUT) -> bool:
    """SIGTERM to the process we started (gunicorn's master stops its workers, the streaming
    job stops between batches), then SIGKILL to its whole process group if anything of it
    is left after ``timeout``; True if it was running."""
    if not is_ours(entry):
        return False
    pgid = int(entry["pid"])
    os.kill(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _group_alive(pgid):
            return True
        time.sleep(0.3)
    os.killpg(pgid, signal.SIGKILL)
    return True


def _group_alive(pgid: int) -> bool:
    """Some process of the group still runs (zombies, not yet reaped, do not count)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pgid, os.WNOHANG)  # reap our own child if it is done
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if os.getpgid(int(proc.name)) == pgid and _state(int(proc.name)) not in ("Z", None):
                return True
        except OSError:
            continue
    return False


def tail(path: str | Path, lines: int = 30) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_http(url: str, entry: Mapping[str, Any], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_ours(entry):
            raise DemoError(f"{entry['command'][-1]} exited; its log {entry['log']} ends with:\n{tail(entry['log'])}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                return  # it answers (404 before anything is aggregated, for example)
        except OSError:
            pass
        time.sleep(0.5)
    raise DemoError(f"{url} did not answer within {timeout:.0f}s; see {entry['log']}")


# --- the checks -------------------------------------------------------------------------


def raw_order_counts(settings: Settings, days: list[date]) -> dict[str, int]:
    """Rows of raw_orders per business date (each of the date's bucket partitions)."""
    from orderlog.cassandra_session import connect, shutdown

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
            raise DemoError(
                f"raw_orders has more orders than this replay sent {extra}: keyspace "
                f"{settings.cassandra.keyspace} also holds other orders on these dates (orders added after "
                "an earlier demo, say). The demo checks the viewer against exactly what it sent: "
                "`make demo-reset` empties the keyspace, then run `make demo` again "
                "(or give the demo a keyspace of its own with ORDERLOG_CASSANDRA_KEYSPACE)"
            )
        if not alive():
            raise DemoError("the streaming job stopped before every order arrived")
        if time.monotonic() > deadline:
            raise DemoError(f"after {timeout:.0f}s raw_orders has {sum(counts.values())} of "
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
    dates = [d for d in truth["dates"]]
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


# --- start / stop ---------------------------------------------------------------------------


@dataclasses.dataclass
class DemoOptions:
    end: date = DEMO_DATE
    days: int = 7
    users: int = 2000
    orders: int = 20000
    seed: int = 42
    rate: float = 2000
    wait_timeout: float = 900


def start(settings: Settings, options: DemoOptions, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Runs the demo; returns timings and the truth. Raises DemoError."""
    from local_stack.stack import StackConfig, up
    from orderlog.rejected_migration import MigrationError
    from orderlog.schema import apply_cql, create_topic
    from tools import replay as replay_cli

    began = time.monotonic()
    timings: dict[str, float] = {}
    folder = demo_dir(settings)
    state = load_state(folder)
    stop_services(state, log)  # a previous run's processes: start fresh, from their checkpoint
    state["processes"] = {}
    save_state(folder, state)

    log("[1/6] local Kafka and Cassandra")
    step = time.monotonic()
    config = StackConfig.from_settings(settings)
    started = up(config, log=lambda line: log(f"  {line}"))
    state["stack_started"] = sorted(set(state.get("stack_started", [])) | set(started))
    state["stack_dir"] = str(config.root)
    save_state(folder, state)
    try:
        apply_cql(settings, log=lambda line: log(f"  {line}"))  # migrates an older keyspace, line by line
    except MigrationError as exc:
        raise DemoError(str(exc)) from None
    create_topic(settings)
    timings["stack"] = time.monotonic() - step

    log("[2/6] streaming job, ingest API, viewer (background; logs in " + str(folder) + ")")
    step = time.monotonic()
    env = child_environment(settings)
    for name, command in service_commands(settings).items():
        entry = start_process(name, command, env, folder / f"{name}.log")
        state["processes"][name] = entry
        save_state(folder, state)
        log(f"  {name}: pid {entry['pid']}")
    ingest_url = f"http://{settings.ingest.host}:{settings.ingest.port}"
    viewer_url = f"http://{settings.viewer.host}:{settings.viewer.port}"
    wait_http(f"{ingest_url}/healthz", state["processes"]["ingest"])
    wait_http(f"{viewer_url}/api/status", state["processes"]["viewer"])
    timings["services"] = time.monotonic() - step

    log(f"[3/6] replay: {options.days} days ending {options.end}, {options.users} users, {options.orders} orders")
    step = time.monotonic()
    truth_file = folder / "truth.json"
    code = replay_cli.main([
        options.end.isoformat(), "--days", str(options.days), "--users", str(options.users),
        "--orders", str(options.orders), "--seed", str(options.seed), "--rate", str(options.rate),
        "--url", ingest_url, "--truth", str(truth_file),
    ])
    if code != 0:
        raise DemoError(f"the replay failed (exit {code}); see {folder / 'ingest.log'}")
    truth = json.loads(truth_file.read_text())
    timings["replay"] = time.monotonic() - step

    log("[4/6] waiting until every acknowledged order is in Cassandra raw_orders")
    step = time.monotonic()
    streaming = state["processes"]["streaming"]
    try:
        wait_for_raw_orders(settings, truth, timeout=options.wait_timeout,
                            alive=lambda: is_ours(streaming), log=log)
    except DemoError as exc:
        raise DemoError(f"{exc}\nstreaming log ({streaming['log']}):\n{tail(streaming['log'])}") from None
    timings["streaming"] = time.monotonic() - step
    log(f"  raw_orders: all {truth['orders']} orders")

    first = options.end - timedelta(days=options.days - 1)
    log(f"[5/6] aggregate {first} .. {options.end}")
    step = time.monotonic()
    run_aggregate(settings, first, options.end, folder / "aggregate.log")
    timings["aggregate"] = time.monotonic() - step

    log("[6/6] the viewer's JSON API against the replay's truth")
    step = time.monotonic()
    problems = check_viewer(viewer_url, truth)
    if problems:
        raise DemoError("the viewer differs from the truth:\n  " + "\n  ".join(problems[:20]))
    timings["check"] = time.monotonic() - step
    timings["total"] = time.monotonic() - began
    state["finished"] = {"timings": timings, "viewer": viewer_url}
    save_state(folder, state)
    return {"timings": timings, "truth": truth, "viewer": viewer_url}


def run_aggregate(settings: Settings, first: date, last: date, log_file: Path) -> None:
    command = ["./spark-submit.sh", "aggregate", "--from", first.isoformat(), "--to", last.isoformat()]
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as out:
        result = subprocess.run(command, cwd=ROOT, env=child_environment(settings), stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=False)
    if result.returncode != 0:
        raise DemoError(f"aggregate failed (exit {result.returncode}); {log_file} ends with:\n{tail(log_file)}")


def stop_services(state: dict[str, Any], log: Callable[[str], None] = print) -> None:
    processes = state.get("processes", {})
    for name in reversed(SERVICES):
        entry = processes.get(name)
        if entry and stop_process(entry):
            log(f"  {name} stopped (pid {entry['pid']})")


def stop(settings: Settings, log: Callable[[str], None] = print) -> None:
    from local_stack.stack import StackConfig, down

    folder = demo_dir(settings)
    state = load_state(folder)
    stop_services(state, log)
    state["processes"] = {}
    started = state.get("stack_started", [])
    if started:
        down(StackConfig.from_settings(settings), started, log=lambda line: log(f"  {line}"))
    elif (folder / "state.json").exists():
        log("  Kafka and Cassandra were running before the demo: left running (`make down` stops them)")
    state["stack_started"] = []
    state.pop("finished", None)
    save_state(folder, state)


def reset(settings: Settings, log: Callable[[str], None] = print) -> None:
    """Stops the demo's processes and empties every table of the keyspace, so that the next
    `make demo` shows exactly its replay again. The streaming checkpoint is kept: the job
    resumes after what Kafka already holds, so orders added earlier do not come back."""
    from orderlog.cassandra_session import connect, shutdown
    from orderlog.schema import table_names, truncate_tables

    folder = demo_dir(settings)
    state = load_state(folder)
    stop_services(state, log)
    state["processes"] = {}
    state.pop("finished", None)
    save_state(folder, state)
    try:
        session = connect(settings)
    except Exception as exc:  # the driver's NoHostAvailable and friends
        raise DemoError(f"Cassandra at {settings.cassandra.hosts}:{settings.cassandra.port} does not answer "
                        f"({exc.__class__.__name__}); start it with `make up`, then reset again") from exc
    try:
        truncate_tables(session)
    finally:
        shutdown(session)
    log(f"  keyspace {settings.cassandra.keyspace}: {len(table_names())} tables emptied; `make demo` starts over")


def print_ready(result: Mapping[str, Any], options: DemoOptions) -> None:
    t = result["timings"]
    truth = result["truth"]
    viewer = result["viewer"]
    last = options.end.isoformat()
    day = truth["daily"][last]
    print(f"""
The demo is ready in {t['total']:.0f}s (stack {t['stack']:.0f}s, services {t['services']:.0f}s, replay \
{t['replay']:.0f}s, streaming {t['streaming']:.0f}s, aggregate {t['aggregate']:.0f}s, check {t['check']:.0f}s).
{truth['orders']} orders of {len(truth['users'])} users over {len(truth['dates'])} days; the viewer shows exactly them.

  Viewer:  {viewer}/
  - Daily orders: {viewer}/daily  the week {truth['dates'][0]} .. {last}; on {last}: {day['japanese']} Japanese, \
{day['western']} Western ({day['users']} users)
  - Segments:  {viewer}/segments  (和食派 {truth['segments']['japanese']}, 洋食派 {truth['segments']['western']}, \
even {truth['segments']['even']}; CSV export per segment)
  - JSON API:  {viewer}/api/daily_order_summaries?date={last}   {viewer}/api/user_segments
  - One user:  {viewer}/users/{next(iter(truth['users']))}

More orders for {last}:  .venv/bin/python -m tools.replay {last} --days 1 --orders 3000 --seed 7
  then fold them in:    make aggregate DATE={last}
Stop everything:        make stop
""")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.demo", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    start_cmd = sub.add_parser("start", help="run the demo")
    start_cmd.add_argument("--date", type=date.fromisoformat, default=DEMO_DATE)
    start_cmd.add_argument("--days", type=int, default=7)
    start_cmd.add_argument("--users", type=int, default=2000)
    start_cmd.add_argument("--orders", type=int, default=20000)
    start_cmd.add_argument("--seed", type=int, default=42)
    start_cmd.add_argument("--rate", type=float, default=2000)
    sub.add_parser("stop", help="stop what the demo started")
    sub.add_parser("status", help="what the demo runs")
    sub.add_parser("reset", help="stop the demo's processes and empty every table of the keyspace")
    args = parser.parse_args(argv)
    settings = load_or_exit("demo")
    if args.command == "stop":
        stop(settings)
        return 0
    if args.command == "reset":
        try:
            reset(settings)
        except DemoError as exc:
            print(f"demo: {exc}", file=sys.stderr)
            return 1
        return 0
    if args.command == "status":
        state = load_state(demo_dir(settings))
        for name, entry in state.get("processes", {}).items():
            print(f"{name:10} pid {entry['pid']:>7}  {'running' if is_ours(entry) else 'stopped'}  log {entry['log']}")
        return 0
    options = DemoOptions(args.date, args.days, args.users, args.orders, args.seed, args.rate)
    try:
        result = start(settings, options)
    except DemoError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        print("demo: the processes keep running for inspection; `make stop` stops them", file=sys.stderr)
        return 1
    print_ready(result, options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
