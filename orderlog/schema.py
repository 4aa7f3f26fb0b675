"""Applies the CQL schema of cassandra/ idempotently, and creates the Kafka topic.

    python -m orderlog.schema apply      # keyspace + tables, then the topic
    python -m orderlog.schema cql        # print the CQL that would be applied
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from orderlog.config import Settings, load_or_exit

CQL_DIR = Path(__file__).resolve().parent.parent / "cassandra"


def keyspace_cql(settings: Settings) -> str:
    template = (CQL_DIR / "keyspace.cql").read_text(encoding="utf-8")
    return template.format(
        keyspace=settings.cassandra.keyspace, replication=settings.cassandra.replication
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


def table_columns() -> dict[str, dict[str, str]]:
    """table -> column -> CQL type, as the CREATE TABLE statements of tables.cql define them."""
    tables: dict[str, dict[str, str]] = {}
    for name, statement in zip(table_names(), _create_table_statements(), strict=True):
        body = statement[statement.index("(") + 1 :]
        columns: dict[str, str] = {}
        for definition in _top_level_split(body):
            if definition.upper().startswith("PRIMARY KEY"):
                continue
            column, cql_type = definition.split(None, 1)
            columns[column] = cql_type.replace(" PRIMARY KEY", "").replace(" STATIC", "").strip()
        tables[name] = columns
    return tables


def table_keys() -> dict[str, tuple[list[str], list[str]]]:
    """table -> (partition key columns, clustering columns), as the PRIMARY KEYs of
    tables.cql define them."""
    keys = {}
    for name, statement in zip(table_names(), _create_table_statements(), strict=True):
        body = statement[statement.index("(") + 1 :]
        definition = next(d for d in _top_level_split(body) if d.upper().startswith("PRIMARY KEY"))
        inner = definition[definition.index("(") + 1 : definition.rindex(")")]
        first, *clustering = _top_level_split(inner + ")")
        partition = [c.strip() for c in first.strip("()").split(",")]
        keys[name] = (partition, [c.strip() for c in clustering])
    return keys


def create_table_statement(table: str, as_name: str | None = None) -> str:
    """The CREATE TABLE IF NOT EXISTS statement of ``table`` in tables.cql, for a table
    named ``as_name`` if given (a migration's staging table has the same layout)."""
    statement = _create_table_statements()[table_names().index(table)]
    prefix = f"CREATE TABLE IF NOT EXISTS {table}"
    return f"CREATE TABLE IF NOT EXISTS {as_name or table}" + statement[len(prefix) :]


def _create_table_statements() -> list[str]:
    return [s for s in table_statements() if s.split()[:5] == ["CREATE", "TABLE", "IF", "NOT", "EXISTS"]]


def _top_level_split(body: str) -> list[str]:
    """The comma-separated definitions of a CREATE TABLE body, up to its closing parenthesis
    (commas inside PRIMARY KEY (...) or map<...> do not split)."""
    parts, depth, current = [], 0, []
    for char in body:
        if char in "(<":
            depth += 1
        elif char in ")>":
            if depth == 0:  # the table's closing parenthesis
                break
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [" ".join(p.split()) for p in parts if p.strip()]


def add_missing_columns(session: object, keyspace: str) -> list[str]:
    """The migration step: columns that tables.cql defines but an existing table lacks (a
    keyspace created by an older version) are added with ALTER TABLE ... ADD. tables.cql is
    the one list; running it again adds nothing. Returns the statements it ran."""
    cluster = session.cluster  # type: ignore[attr-defined]
    cluster.refresh_schema_metadata()  # the tables just created included
    existing = cluster.metadata.keyspaces[keyspace].tables
    applied = []
    for table, columns in table_columns().items():
        for column, cql_type in columns.items():
            if column not in existing[table].columns:
                statement = f"ALTER TABLE {keyspace}.{table} ADD {column} {cql_type}"
                session.execute(statement, timeout=60)  # type: ignore[attr-defined]
                applied.append(statement)
    if applied:
        cluster.control_connection.wait_for_schema_agreement()
    return applied


def apply_cql(
    settings: Settings, log: Callable[[str], None] = lambda line: None,
    migration_after: Callable[[str], None] | None = None,
) -> list[str]:
    """Keyspace, tables, the rejected_events layout migration (orderlog.rejected_migration,
    logging one line per step), then the columns older keyspaces lack; returns the ALTERs it
    ran. ``migration_after`` is the migration's test hook."""
    from orderlog.cassandra_session import connect, shutdown
    from orderlog.rejected_migration import migrate_rejected_events

    session = connect(settings, keyspace="")
    try:
        statements = [keyspace_cql(settings)]
        for statement in table_statements():
            statements.append(statement)
        session.execute(_strip_comments(statements[0]), timeout=60)
        session.set_keyspace(settings.cassandra.keyspace)
        for statement in statements[1:]:
            session.execute(statement, timeout=60)
        # Schema changes propagate asynchronously; wait so the caller can use them.
        session.cluster.control_connection.wait_for_schema_agreement()
        # Before the ALTERs: the older rejected_events is replaced, not given the new columns.
        migrate_rejected_events(session, settings.cassandra.keyspace, settings.rejected.ttl_seconds, log=log,
                                after=migration_after)
        return add_missing_columns(session, settings.cassandra.keyspace)
    finally:
        shutdown(session)


def truncate_tables(session: object) -> None:
    """Empties every table of the session's keyspace (tests; `make demo-reset`)."""
    for table in table_names():
        session.execute(f"TRUNCATE {table}", timeout=60)  # type: ignore[attr-defined]


def _strip_comments(cql: str) -> str:
    return "\n".join(line.split("--", 1)[0] for line in cql.splitlines()).strip().rstrip(";")


# Kafka accepts, by default, a record timestamp anywhere down to -2^63 ms, and Spark's Kafka
# source fails the whole task (microseconds overflow) on one beyond about +-292,000 years:
# one such record would stop the streaming job on every restart. The topic refuses them at
# produce time instead (the producer gets an error; nothing is acknowledged and lost).
# 100 years back leaves room for any real producer's CreateTime; 1 hour ahead is Kafka 4's
# default, stated for brokers whose default is looser.
TOPIC_TIMESTAMP_CONFIGS: dict[str, int] = {
    "message.timestamp.before.max.ms": 100 * 366 * 86_400_000,
    "message.timestamp.after.max.ms": 3_600_000,
}


def topic_configs(settings: Settings) -> dict[str, str]:
    """The configuration every order topic is created with (tests' topics included): the
    timestamp bounds, and with the producers' acks=all, how many replicas hold a record
    before it is acknowledged."""
    configs = {name: str(value) for name, value in TOPIC_TIMESTAMP_CONFIGS.items()}
    configs["min.insync.replicas"] = str(settings.kafka.min_insync_replicas)
    return configs


def create_topic(settings: Settings) -> bool:
    """Creates the order topic if it does not exist; True if it was created. An existing
    topic gets the timestamp bounds of TOPIC_TIMESTAMP_CONFIGS where its own are looser; its
    min.insync.replicas is left as it is (change it with Kafka's own tools)."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_list, client_id="orderlog-schema")
    try:
        if settings.kafka.topic in admin.list_topics():
            tighten_timestamp_bounds(admin, settings.kafka.topic)
            return False
        try:
            admin.create_topics(
                [
                    NewTopic(
                        settings.kafka.topic,
                        num_partitions=settings.kafka.topic_partitions,
                        replication_factor=settings.kafka.replication_factor,
                        topic_configs=topic_configs(settings),
                    )
                ]
            )
        except TopicAlreadyExistsError:
            return False
        return True
    finally:
        admin.close()


def tighten_timestamp_bounds(admin: object, topic: str) -> dict[str, str]:
    """Sets each bound of TOPIC_TIMESTAMP_CONFIGS that the topic has looser (a stricter one
    set by an operator stays); returns what was changed."""
    from kafka.admin import ConfigResource, ConfigResourceType

    resource = ConfigResource(ConfigResourceType.TOPIC, topic, configs=list(TOPIC_TIMESTAMP_CONFIGS))
    current = admin.describe_configs([resource], config_filter="all")["topic"][topic]  # type: ignore[attr-defined]
    looser = {
        name: str(bound) for name, bound in TOPIC_TIMESTAMP_CONFIGS.items()
        if int(current.get(name, {}).get("value") or 2**63 - 1) > bound
    }
    if looser:
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs=looser)])  # type: ignore[attr-defined]
    return looser


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orderlog.schema", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["apply", "cql", "topic", "tables"])
    args = parser.parse_args(argv)
    settings = load_or_exit("python -m orderlog.schema")
    if args.command == "cql":
        print(_strip_comments(keyspace_cql(settings)) + ";")
        for statement in table_statements():
            print(statement + ";")
        return 0
    if args.command in ("apply", "tables"):
        from orderlog.rejected_migration import MigrationError

        try:
            altered = apply_cql(settings, log=lambda line: print(line, flush=True))
        except MigrationError as exc:
            print(f"python -m orderlog.schema: error: {exc}", file=sys.stderr)
            return 1
        for statement in altered:
            print(f"migrated: {statement}")
        print(f"schema applied: keyspace {settings.cassandra.keyspace}, {len(table_names())} tables")
    if args.command in ("apply", "topic"):
        created = create_topic(settings)
        state = "created" if created else "exists"
        print(f"topic {settings.kafka.topic} {state} ({settings.kafka.topic_partitions} partitions)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
