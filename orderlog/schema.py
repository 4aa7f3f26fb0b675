"""Applies the CQL schema of cassandra/ idempotently, and creates the Kafka topic.

    python -m orderlog.schema apply      # keyspace + tables, then the topic
    python -m orderlog.schema cql        # print the CQL that would be applied
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from orderlog.config import Settings, load_settings

CQL_DIR = Path(__file__).resolve().parent.parent / "cassandra"


def keyspace_cql(settings: Settings) -> str:
    template = (CQL_DIR / "keyspace.cql").read_text(encoding="utf-8")
    return template.format(
        keyspace=settings.cassandra_keyspace, replication=settings.cassandra_replication
    )


def table_statements() -> list[str]:
    """The statements of tables.cql, comments removed."""
    text = (CQL_DIR / "tables.cql").read_text(encoding="utf-8")
    lines = [line.split("--", 1)[0] for line in text.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def table_names() -> list[str]:
    names = []
    for statement in table_statements():
        words = statement.split()
        if words[:5] == ["CREATE", "TABLE", "IF", "NOT", "EXISTS"]:
            names.append(words[5].rstrip("("))
    return names


def apply_cql(settings: Settings) -> None:
    from orderlog.cassandra_session import connect, shutdown

    session = connect(settings, keyspace="")
    try:
        statements = [keyspace_cql(settings)]
        for statement in table_statements():
            statements.append(statement)
        session.execute(_strip_comments(statements[0]), timeout=60)
        session.set_keyspace(settings.cassandra_keyspace)
        for statement in statements[1:]:
            session.execute(statement, timeout=60)
        # Schema changes propagate asynchronously; wait so the caller can use them.
        session.cluster.control_connection.wait_for_schema_agreement()
    finally:
        shutdown(session)


def truncate_tables(session: object) -> None:
    """Empties every table of the session's keyspace (tests; `make demo-reset`)."""
    for table in table_names():
        session.execute(f"TRUNCATE {table}", timeout=60)  # type: ignore[attr-defined]


def _strip_comments(cql: str) -> str:
    return "\n".join(line.split("--", 1)[0] for line in cql.splitlines()).strip().rstrip(";")


def create_topic(settings: Settings) -> bool:
    """Creates the order topic if it does not exist; True if it was created. An existing
    topic is left as it is (change its min.insync.replicas with Kafka's own tools)."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_list, client_id="orderlog-schema")
    try:
        if settings.kafka_topic in admin.list_topics():
            return False
        try:
            admin.create_topics(
                [
                    NewTopic(
                        settings.kafka_topic,
                        num_partitions=settings.kafka_topic_partitions,
                        replication_factor=settings.kafka_replication_factor,
                        # With the producers' acks=all: how many replicas hold a record
                        # before it is acknowledged.
                        topic_configs={"min.insync.replicas": str(settings.kafka_min_insync_replicas)},
                    )
                ]
            )
        except TopicAlreadyExistsError:
            return False
        return True
    finally:
        admin.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orderlog.schema", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["apply", "cql", "topic", "tables"])
    args = parser.parse_args(argv)
    settings = load_settings()
    if args.command == "cql":
        print(_strip_comments(keyspace_cql(settings)) + ";")
        for statement in table_statements():
            print(statement + ";")
        return 0
    if args.command in ("apply", "tables"):
        apply_cql(settings)
        print(f"schema applied: keyspace {settings.cassandra_keyspace}, {len(table_names())} tables")
    if args.command in ("apply", "topic"):
        created = create_topic(settings)
        state = "created" if created else "exists"
        print(f"topic {settings.kafka_topic} {state} ({settings.kafka_topic_partitions} partitions)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
