"""``make demo`` / ``make stop``: the whole pipeline on this machine, showing a replayed week.

    python -m tools.demo start [--date 2025-05-31] [--days 7] [--users 2000] [--orders 20000]
    python -m tools.demo stop
    python -m tools.demo status
    python -m tools.demo reset
    python -m tools.demo --cluster start|stop|status|reset      # the same on the local cluster

``start`` sets up the local Kafka and Cassandra (schema, topic), starts the streaming job,
the ingest API and the viewer in the background (logs and pids in ``<var>/demo/``),
replays a week of orders ending on a fixed date with its truth, waits until every
acknowledged order is in ``raw_orders``, runs ``aggregate`` over the week, checks that the
viewer's JSON API shows exactly the truth, and prints the viewer's URL. Running it again
restarts the demo's processes (streaming resumes from its checkpoint; the replay's order
ids are the same, so nothing is counted twice). ``stop`` stops every process the demo
started, and the Kafka and Cassandra servers if the demo started them. ``reset`` empties
the keyspace's tables (for example after orders were added to the demo's dates).

With ``--cluster`` (``make cluster-demo``) the demo runs on the local cluster instead
(local_stack/cluster.py, with the configuration of ``make cluster-env``): its first step
brings up whatever of the cluster is missing, and ``stop`` stops the cluster if the demo
started it; its state lives apart, in ``<var>/cluster/demo/``.

The pipeline's processes and checks are tools/pipeline.py; the process supervision is
local_stack/supervisor.py. This module keeps the demo's own state and steps.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable, Mapping
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from local_stack import cluster, supervisor
from local_stack.stack import StackConfig, down, up
from local_stack.supervisor import Started
from orderlog.cassandra_session import connect, shutdown
from orderlog.config import Settings, load_or_exit
from orderlog.logs import report
from orderlog.rejected_migration import MigrationError
from orderlog.schema import apply_cql, create_topic, truncate_tables
from orderlog.tables import table_names
from tools import pipeline
from tools.generator import ReplayParams
from tools.pipeline import PipelineError
from tools.replay import Sending, replay
from tools.sender import SendError

DEMO_DATE = date(2025, 5, 31)


class DemoError(PipelineError):
    """The demo cannot go on; the message says why and where to look."""


# --- state ----------------------------------------------------------------------------


def demo_dir(settings: Settings) -> Path:
    return settings.cluster_dir / "demo" if on_cluster(settings) else settings.paths.var_path / "demo"


def on_cluster(settings: Settings) -> bool:
    return settings.spark.master == cluster.SPARK_MASTER_URL


class Servers:
    """Where the demo runs: the local stack (Kafka and Cassandra), or the local cluster."""

    def __init__(self, settings: Settings):
        self.settings = settings

    def up(self, log: Callable[[str], None]) -> list[str]:
        """Starts what is missing; the names of those it started."""
        if on_cluster(self.settings):
            return cluster.Cluster(self.settings).up(log=log)
        return list(up(StackConfig.from_settings(self.settings), log=log))

    def down(self, names: list[str], log: Callable[[str], None]) -> None:
        """Stops what ``up`` started (the cluster: all of it, its nodes stop together)."""
        if on_cluster(self.settings):
            cluster.Cluster(self.settings).down(log=log)
        else:
            down(StackConfig.from_settings(self.settings), names, log=log)

    @property
    def root(self) -> Path:
        return self.settings.cluster_dir if on_cluster(self.settings) else StackConfig.from_settings(self.settings).root


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


def processes_of(state: Mapping[str, Any]) -> dict[str, Started]:
    processes = {}
    for name, entry in state.get("processes", {}).items():
        try:
            processes[name] = Started.from_json(entry)
        except (KeyError, TypeError, ValueError):
            continue  # an entry of an older demo: not ours to stop
    return processes


# --- start / stop -------------------------------------------------------------------------


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
    """Runs the demo; returns timings and the truth. Raises PipelineError (DemoError)."""
    began = time.monotonic()
    timings: dict[str, float] = {}
    folder = demo_dir(settings)
    state = load_state(folder)
    pipeline.stop_services(processes_of(state), log)  # a previous run's: start fresh, from their checkpoint
    state["processes"] = {}
    save_state(folder, state)

    servers = Servers(settings)
    log("[1/6] " + ("the local cluster" if on_cluster(settings) else "local Kafka and Cassandra"))
    step = time.monotonic()
    started = servers.up(log=lambda line: log(f"  {line}"))
    state["stack_started"] = sorted(set(state.get("stack_started", [])) | set(started))
    state["stack_dir"] = str(servers.root)
    save_state(folder, state)
    try:
        apply_cql(settings, log=lambda line: log(f"  {line}"))  # migrates an older keyspace, line by line
    except MigrationError as exc:
        raise DemoError(str(exc)) from None
    create_topic(settings)
    timings["stack"] = time.monotonic() - step

    log("[2/6] streaming job, ingest API, viewer (background; logs in " + str(folder) + ")")
    step = time.monotonic()

    def remember(name: str, process: Started) -> None:
        state["processes"][name] = process.to_json()
        save_state(folder, state)
        log(f"  {name}: pid {process.pid}")

    processes = pipeline.start_services(settings, folder, remember)
    timings["services"] = time.monotonic() - step

    log(f"[3/6] replay: {options.days} days ending {options.end}, {options.users} users, {options.orders} orders")
    step = time.monotonic()
    sending = Sending(pipeline.ingest_url(settings), settings.ingest.api_token or None, rate=options.rate)
    try:
        params = ReplayParams(end_date=options.end, days=options.days, users=options.users, orders=options.orders,
                              seed=options.seed, business_timezone=settings.business.timezone)
        report = replay(params, sending)
    except (ValueError, SendError) as exc:  # ReplayError is a ValueError
        raise DemoError(f"the replay failed ({exc}); see {folder / 'ingest.log'}") from None
    if report.surprises:
        raise DemoError(f"the ingest API judged events otherwise than the replay meant; see {folder / 'ingest.log'}")
    truth = report.truth
    (folder / "truth.json").write_text(json.dumps(truth, indent=1, sort_keys=True) + "\n")
    timings["replay"] = time.monotonic() - step

    log("[4/6] waiting until every acknowledged order is in Cassandra raw_orders")
    step = time.monotonic()
    streaming = processes["streaming"]
    try:
        pipeline.wait_for_raw_orders(settings, truth, timeout=options.wait_timeout,
                                     alive=lambda: supervisor.running(streaming), log=log)
    except PipelineError as exc:
        raise DemoError(f"{exc}\nstreaming log ({streaming.log}):\n{supervisor.tail(streaming.log, 30)}") from None
    timings["streaming"] = time.monotonic() - step
    log(f"  raw_orders: all {truth['orders']} orders")

    first = options.end - timedelta(days=options.days - 1)
    log(f"[5/6] aggregate {first} .. {options.end}")
    step = time.monotonic()
    pipeline.run_aggregate(settings, first, options.end, folder / "aggregate.log")
    timings["aggregate"] = time.monotonic() - step

    log("[6/6] the viewer's JSON API against the replay's truth")
    step = time.monotonic()
    viewer = pipeline.viewer_url(settings)
    problems = pipeline.check_viewer(viewer, truth)
    if problems:
        raise DemoError("the viewer differs from the truth:\n  " + "\n  ".join(problems[:20]))
    timings["check"] = time.monotonic() - step
    timings["total"] = time.monotonic() - began
    state["finished"] = {"timings": timings, "viewer": viewer}
    save_state(folder, state)
    return {"timings": timings, "truth": truth, "viewer": viewer}


def stop(settings: Settings, log: Callable[[str], None] = print) -> None:
    folder = demo_dir(settings)
    state = load_state(folder)
    pipeline.stop_services(processes_of(state), log)
    state["processes"] = {}
    started = state.get("stack_started", [])
    if started:
        Servers(settings).down(started, log=lambda line: log(f"  {line}"))
    elif (folder / "state.json").exists() and on_cluster(settings):
        log("  the cluster was running before the demo: left running (`make cluster-down` stops it)")
    elif (folder / "state.json").exists():
        log("  Kafka and Cassandra were running before the demo: left running (`make down` stops them)")
    state["stack_started"] = []
    state.pop("finished", None)
    save_state(folder, state)


def reset(settings: Settings, log: Callable[[str], None] = print) -> None:
    """Stops the demo's processes and empties every table of the keyspace, so that the next
    `make demo` shows exactly its replay again. The streaming checkpoint is kept: the job
    resumes after what Kafka already holds, so orders added earlier do not come back."""
    folder = demo_dir(settings)
    state = load_state(folder)
    pipeline.stop_services(processes_of(state), log)
    state["processes"] = {}
    state.pop("finished", None)
    save_state(folder, state)
    try:
        session = connect(settings)
    except Exception as exc:  # noqa: BLE001  the driver's NoHostAvailable and friends
        raise DemoError(f"Cassandra at {settings.cassandra.address} does not answer "
                        f"({exc.__class__.__name__}); start it with `make up`, then reset again") from exc
    try:
        truncate_tables(session)
    finally:
        shutdown(session)
    log(f"  keyspace {settings.cassandra.keyspace}: {len(table_names())} tables emptied; `make demo` starts over")


def stop_command(settings: Settings) -> str:
    return "make cluster-demo-stop" if on_cluster(settings) else "make stop"


def print_ready(result: Mapping[str, Any], options: DemoOptions, settings: Settings) -> None:
    t = result["timings"]
    truth = result["truth"]
    viewer = result["viewer"]
    last = options.end.isoformat()
    cluster_hint = 'On the cluster, first:  eval "$(make -s cluster-env)"\n' if on_cluster(settings) else ""
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

{cluster_hint}More orders for {last}:  .venv/bin/python -m tools.replay {last} --days 1 --orders 3000 --seed 7
  then fold them in:    make aggregate DATE={last}
Stop everything:        {stop_command(settings)}
""")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--cluster", action="store_true",
                        help="on the local cluster (make cluster-up), with the configuration of make cluster-env")
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
    if args.cluster:
        settings = cluster.cluster_settings(settings)
    if args.command == "stop":
        stop(settings)
        return 0
    if args.command == "reset":
        try:
            reset(settings)
        except DemoError as exc:
            report("demo", str(exc), log_format=settings.log.format)
            return 1
        return 0
    if args.command == "status":
        for name, process in processes_of(load_state(demo_dir(settings))).items():
            print(f"{name:10} pid {process.pid:>7}  {'running' if supervisor.running(process) else 'stopped'}  "
                  f"log {process.log}")
        return 0
    options = DemoOptions(args.date, args.days, args.users, args.orders, args.seed, args.rate)
    try:
        result = start(settings, options)
    except PipelineError as exc:
        report("demo", str(exc), log_format=settings.log.format)
        report("demo", f"the processes keep running for inspection; `{stop_command(settings)}` stops them",
               level="info", log_format=settings.log.format)
        return 1
    print_ready(result, options, settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
