"""python -m local_stack up|down|status|logs: the local Kafka and Cassandra.

    up      start Kafka and Cassandra (if not running), wait until both answer,
            apply the CQL schema and create the topic
    down    stop both; no process of theirs is left behind
    status  what runs, whether it answers, its memory and log
    logs    the last lines of a server's log

and the local cluster (local_stack/cluster.py: 3 Kafka, 3 Cassandra, a Spark master and 2
workers on loopback):

    cluster-up      start what is missing (a node that died too), wait, apply the schema
    cluster-down    stop all of it
    cluster-status  every server: pid, whether it answers, memory
    cluster-env     the export lines that point every command at the cluster
"""

from __future__ import annotations

import argparse
import logging
import re
import shlex
import sys
from importlib.metadata import version
from pathlib import Path

from local_stack import cluster, supervisor
from local_stack.stack import StackConfig, StackError, down, servers, status, up
from orderlog.config import Settings, load_or_exit
from orderlog.logs import configure, report
from orderlog.rejected_migration import MigrationError
from orderlog.schema import apply_cql, create_topic


def check_versions() -> None:
    """The Kafka source jar is built for one Spark version: it must be pyspark's."""
    pom = (Path(__file__).parent / "jvm" / "pom.xml").read_text()
    match = re.search(r"<spark.version>([^<]+)</spark.version>", pom)
    pom_version = match.group(1) if match else "?"
    installed = version("pyspark")
    if installed != pom_version:
        raise StackError(
            f"pyspark {installed} is installed but local_stack/jvm/pom.xml pins Spark {pom_version}: "
            "make them equal (requirements.txt and spark.version)"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local_stack", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up_cmd = sub.add_parser("up", help="start the servers and apply the schema")
    up_cmd.add_argument("--only", choices=["kafka", "cassandra"], help="start only this server")
    up_cmd.add_argument("--no-schema", action="store_true", help="do not apply the schema or create the topic")
    down_cmd = sub.add_parser("down", help="stop the servers")
    down_cmd.add_argument("--only", choices=["kafka", "cassandra"], help="stop only this server")
    sub.add_parser("status", help="show what runs")
    sub.add_parser("check-versions", help="check that pyspark matches the Spark version of the pom")
    logs_cmd = sub.add_parser("logs", help="show the end of a server's log")
    logs_cmd.add_argument("server", choices=["kafka", "cassandra"])
    logs_cmd.add_argument("-n", "--lines", type=int, default=40)
    cluster_up = sub.add_parser("cluster-up", help="start the local cluster and apply the schema")
    cluster_up.add_argument("--no-schema", action="store_true", help="do not apply the schema or create the topic")
    sub.add_parser("cluster-down", help="stop the local cluster")
    sub.add_parser("cluster-status", help="show what of the local cluster runs")
    sub.add_parser("cluster-env", help="print the export lines that point the project at the local cluster")
    args = parser.parse_args(argv)

    if args.command == "check-versions":  # before the configuration: `make setup` runs it
        try:
            check_versions()
        except StackError as exc:
            report("local_stack", str(exc))
            return 1
        return 0
    settings = load_or_exit("local_stack")
    configure("local_stack", settings.log.format, logging.WARNING, silence=("cassandra", "kafka"))
    if args.command.startswith("cluster-"):
        return cluster_main(args)
    try:
        config = StackConfig.from_settings(settings)
        if args.command == "up":
            names = [args.only] if args.only else None
            up(config, names)
            if not args.no_schema and not args.only:
                return apply_schema(settings)
        elif args.command == "down":
            down(config, [args.only] if args.only else None)
        elif args.command == "status":
            states = status(config)
            for state in states:
                print(state.line())
            return 0 if all(s.running and s.answering for s in states) else 3
        elif args.command == "logs":
            print(supervisor.tail(servers(config)[args.server].log_file, args.lines, indent="    "))
    except StackError as exc:
        report("local_stack", str(exc))
        return 1
    return 0


def apply_schema(settings: Settings) -> int:
    try:
        # A keyspace of an older version is migrated here: one line per step.
        apply_cql(settings, log=lambda line: print(line, flush=True))
    except MigrationError as exc:
        report("local_stack", str(exc))
        return 1
    created = create_topic(settings)
    print(
        f"schema applied to keyspace {settings.cassandra.keyspace}; topic "
        f"{settings.kafka.topic} {'created' if created else 'exists'}"
    )
    return 0


def shell_word(value: str) -> str:
    """``value`` as one word of the shell, as readable as it can be."""
    if re.fullmatch(r"[A-Za-z0-9_./:,@=+-]+", value):
        return value
    return f'"{value}"' if not re.search(r'["$`\\!]', value) else shlex.quote(value)


def cluster_main(args: argparse.Namespace) -> int:
    settings = cluster.cluster_settings()
    if args.command == "cluster-env":
        for name, value in cluster.environment(settings).items():
            print(f"export {name}={shell_word(value)}")
        return 0
    local = cluster.Cluster(settings)
    try:
        if args.command == "cluster-up":
            local.up(log=lambda line: print(line, flush=True))
            if not args.no_schema:
                return apply_schema(settings)
        elif args.command == "cluster-down":
            local.down()
        elif args.command == "cluster-status":
            states = local.status()
            for state in states:
                print(state.line())
            rss = sum(s.rss_mb or 0 for s in states)
            print(f"{sum(s.running and s.answering for s in states)} of {len(states)} up; {rss / 1024:.2f} GiB RSS")
            return 0 if all(s.running and s.answering for s in states) else 3
    except StackError as exc:
        report("local_stack", str(exc))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
