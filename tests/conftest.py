"""Session fixtures shared by every test.

The real servers are started once per test run (or reused when `make up` already runs
them) and stopped at the end if this run started them. Tests use their own keyspace
(``orderlog_test``) and their own Kafka topics, so a running demo is never disturbed.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

# Before anything reads the configuration: tests never touch the demo's keyspace.
os.environ.setdefault("ORDERLOG_CASSANDRA_KEYSPACE", "orderlog_test")

from orderlog.config import Settings, load_settings  # noqa: E402


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings()


@pytest.fixture(scope="session")
def stack(settings: Settings) -> Iterator[object]:
    """The local Kafka and Cassandra, up and answering, with the schema applied."""
    from local_stack.stack import StackConfig, down, servers, up
    from orderlog.schema import apply_cql

    config = StackConfig.from_env(settings)
    already = {name for name, server in servers(config).items() if server.pid() is not None}
    up(config, log=lambda line: print(f"[stack] {line}"))
    apply_cql(settings)
    yield config
    started = [name for name in ("kafka", "cassandra") if name not in already]
    if started and not os.environ.get("ORDERLOG_KEEP_STACK"):
        down(config, started, log=lambda line: print(f"[stack] {line}"))


@pytest.fixture(scope="session")
def cassandra(stack: object, settings: Settings) -> Iterator[object]:
    """A cassandra-driver session on the test keyspace."""
    from orderlog.cassandra_session import connect, shutdown

    session = connect(settings)
    yield session
    shutdown(session)


@pytest.fixture
def clean_cassandra(cassandra: object) -> object:
    """The test keyspace with every table empty."""
    from orderlog.schema import table_names

    for table in table_names():
        cassandra.execute(f"TRUNCATE {table}", timeout=60)  # type: ignore[attr-defined]
    return cassandra


@pytest.fixture(scope="session")
def spark(stack: object, settings: Settings) -> Iterator[object]:
    """A local Spark session with the Kafka source and the Cassandra connector."""
    from jobs.session import local_session

    session = local_session(settings, "orderlog-tests")
    session.sparkContext.setLogLevel("WARN")
    yield session
    session.stop()


@pytest.fixture
def kafka_topic(stack: object, settings: Settings) -> Iterator[str]:
    """A fresh topic with the configured number of partitions, deleted afterwards."""
    from kafka.admin import KafkaAdminClient, NewTopic

    name = f"test-{uuid.uuid4().hex[:12]}"
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_list)
    admin.create_topics([NewTopic(name, num_partitions=settings.kafka_topic_partitions, replication_factor=1)])
    yield name
    try:
        admin.delete_topics([name])
    finally:
        admin.close()
