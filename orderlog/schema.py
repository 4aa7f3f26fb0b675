"""Applies the CQL schema (cassandra/, read by orderlog/tables.py) idempotently, and creates
the Kafka topic.

    python -m orderlog.schema apply      # keyspace + tables, then the topic
    python -m orderlog.schema cql        # print the CQL that would be applied
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable

from cassandra import OperationTimedOut, Unauthorized
from cassandra.cluster import NoHostAvailable
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from orderlog.cassandra_session import connect, shutdown
from orderlog.cassandra_session import refusal as cassandra_refusal
from orderlog.config import Settings, load_or_exit
from orderlog.kafka_admin import describe
from orderlog.kafka_admin import refusal as kafka_refusal
from orderlog.kafka_security import kafka_python_client
from orderlog.logs import configure, progress, report
from orderlog.orders_backfill import backfill_orders
from orderlog.rejected_migration import MigrationError, migrate_rejected_events
from orderlog.tables import (
    index_names,
    index_statements,
    keyspace_cql,
    strip_comments,
    table_columns,
    table_names,
    table_statements,
)

# How long `make schema` waits for a new index to be built over the rows a table already
# has (SAI answers no query on an index until then).
INDEX_BUILD_TIMEOUT_S = 600.0


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
    logging one line per step), the columns older keyspaces lack, then the indexes (on
    columns the ALTERs may just have added) and the orders backfill
    (orderlog.orders_backfill); returns the ALTERs it ran. ``migration_after`` is the
    migration's test hook."""
    session = connect(settings, keyspace="")
    try:
        indexes = index_statements()
        session.execute(strip_comments(keyspace_cql(settings)), timeout=60)
        session.set_keyspace(settings.cassandra.keyspace)
        for statement in table_statements():
            if statement not in indexes:
                session.execute(statement, timeout=60)
        # Schema changes propagate asynchronously; wait so the caller can use them.
        session.cluster.control_connection.wait_for_schema_agreement()
        # Before the ALTERs: the older rejected_events is replaced, not given the new columns.
        migrate_rejected_events(session, settings.cassandra.keyspace, settings.rejected.ttl_seconds, log=log,
                                after=migration_after)
        altered = add_missing_columns(session, settings.cassandra.keyspace)
        for statement in indexes:
            session.execute(statement, timeout=60)
        session.cluster.control_connection.wait_for_schema_agreement()
        wait_for_indexes(session, settings.cassandra.keyspace, log)
        backfill_orders(session, log)
        return altered
    finally:
        shutdown(session)


def wait_for_indexes(session: object, keyspace: str, log: Callable[[str], None] = lambda line: None,
                     timeout_s: float = INDEX_BUILD_TIMEOUT_S) -> None:
    """Waits until every index of tables.cql answers queries on the node the session talks
    to (an index created over existing rows is built in the background)."""
    wanted, said = set(index_names()), False
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            rows = session.execute(  # type: ignore[attr-defined]
                "SELECT keyspace_name, index_name, is_queryable FROM system_views.sai_column_indexes", timeout=60
            )
        except Unauthorized:
            # A role granted every keyspace still lacks the virtual system_views (the secure
            # profile's): an index over an empty or small table is ready at once anyway.
            log("cannot see whether the indexes are built (no SELECT on system_views.sai_column_indexes): "
                "not waiting; a query on an index still being built fails until it is")
            return
        ready = {r.index_name for r in rows if r.keyspace_name == keyspace and r.is_queryable}
        if wanted <= ready:
            return
        if time.monotonic() > deadline:
            raise MigrationError(f"the indexes {', '.join(sorted(wanted - ready))} of keyspace {keyspace} were "
                                 f"still being built after {timeout_s:.0f} s; run `make schema` again later")
        if not said:
            log(f"building the indexes {', '.join(sorted(wanted - ready))} over the existing rows")
            said = True
        time.sleep(0.5)


def truncate_tables(session: object) -> None:
    """Empties every table of the session's keyspace (tests; `make demo-reset`)."""
    for table in table_names():
        session.execute(f"TRUNCATE {table}", timeout=60)  # type: ignore[attr-defined]


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


# How long topic creation waits for the brokers: a refused login or certificate ends it too.
ADMIN_TIMEOUT_MS = 10_000


def create_topic(settings: Settings) -> bool:
    """Creates the order topic if it does not exist; True if it was created. An existing
    topic gets the timestamp bounds of TOPIC_TIMESTAMP_CONFIGS where its own are looser; its
    min.insync.replicas is left as it is (change it with Kafka's own tools)."""
    admin = KafkaAdminClient(**kafka_python_client(settings.kafka), client_id="orderlog-schema",
                             bootstrap_timeout_ms=ADMIN_TIMEOUT_MS, request_timeout_ms=ADMIN_TIMEOUT_MS)
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
    configure("schema", settings.log.format, logging.WARNING, silence=("cassandra", "kafka"))
    say = progress("schema", settings.log.format)
    if args.command == "cql":
        print(strip_comments(keyspace_cql(settings)) + ";")
        for statement in table_statements():
            print(statement + ";")
        return 0
    if args.command in ("apply", "tables"):
        try:
            altered = apply_cql(settings, log=say)
        except MigrationError as exc:
            report("python -m orderlog.schema", f"error: {exc}", log_format=settings.log.format)
            return 1
        except (NoHostAvailable, OperationTimedOut) as exc:
            problem = cassandra_refusal(settings, exc) or f"Cassandra is unreachable at {settings.cassandra.address}"
            report("python -m orderlog.schema", f"error: {problem}", log_format=settings.log.format)
            return 1
        for statement in altered:
            say(f"migrated: {statement}")
        say(f"schema applied: keyspace {settings.cassandra.keyspace}, {len(table_names())} tables")
    if args.command in ("apply", "topic"):
        try:
            created = create_topic(settings)
        except (KafkaError, OSError) as exc:
            problem = kafka_refusal(settings.kafka) or f"Kafka at {settings.kafka.bootstrap_servers}: {describe(exc)}"
            report("python -m orderlog.schema", f"error: {problem}", log_format=settings.log.format)
            return 1
        state = "created" if created else "exists"
        say(f"topic {settings.kafka.topic} {state} ({settings.kafka.topic_partitions} partitions)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
