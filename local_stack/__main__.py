"""python -m local_stack up|down|status|logs: the local Kafka and Cassandra.

    up      start Kafka and Cassandra (if not running), wait until both answer,
            apply the CQL schema and create the topic
    down    stop both; no process of theirs is left behind
    status  what runs, whether it answers, its memory and log
    logs    the last lines of a server's log
"""

from __future__ import annotations

import argparse
import re
import sys
from importlib.metadata import version
from pathlib import Path

from local_stack import supervisor
from local_stack.stack import StackConfig, StackError, down, servers, status, up
from orderlog.config import load_or_exit
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
    args = parser.parse_args(argv)

    if args.command == "check-versions":  # before the configuration: `make setup` runs it
        try:
            check_versions()
        except StackError as exc:
            print(f"local_stack: {exc}", file=sys.stderr)
            return 1
        return 0
    settings = load_or_exit("local_stack")
    try:
        config = StackConfig.from_settings(settings)
        if args.command == "up":
            names = [args.only] if args.only else None
            up(config, names)
            if not args.no_schema and not args.only:
                try:
                    # A keyspace of an older version is migrated here: one line per step.
                    apply_cql(settings, log=lambda line: print(line, flush=True))
                except MigrationError as exc:
                    print(f"local_stack: {exc}", file=sys.stderr)
                    return 1
                created = create_topic(settings)
                print(
                    f"schema applied to keyspace {settings.cassandra.keyspace}; topic "
                    f"{settings.kafka.topic} {'created' if created else 'exists'}"
                )
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
        print(f"local_stack: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
