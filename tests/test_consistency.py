"""One consistency level for every Cassandra statement, and the topic's min.insync.replicas,
read back from the real Cassandra and Kafka."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cassandra import ConsistencyLevel

from orderlog.cassandra_session import connect, shutdown
from orderlog.schema import create_topic

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("configured", "level"), [(None, ConsistencyLevel.LOCAL_QUORUM), ("ONE", ConsistencyLevel.ONE)]
)
def test_statements_run_at_the_configured_consistency(stack, settings, configured, level) -> None:
    session = connect(settings if configured is None else settings.replace(cassandra_consistency=configured))
    try:
        plain = session.execute("SELECT year FROM daily_order_summaries LIMIT 1")
        prepared = session.execute(session.prepare("SELECT owner FROM aggregate_lock WHERE name = ?"), ("x",))
        assert plain.response_future.message.consistency_level == level
        assert prepared.response_future.message.consistency_level == level
        # A lightweight transaction: its Paxos phase stays in the local data centre.
        name = f"test-{uuid.uuid4().hex[:8]}"
        lwt = session.execute(
            session.prepare("INSERT INTO aggregate_lock (name, owner, acquired_at) VALUES (?, ?, ?) IF NOT EXISTS"),
            (name, "me", datetime.now(UTC)),
        )
        assert lwt.one()[0] is True
        assert lwt.response_future.message.serial_consistency_level == ConsistencyLevel.LOCAL_SERIAL
        session.execute(session.prepare("DELETE FROM aggregate_lock WHERE name = ?"), (name,))
    finally:
        shutdown(session)


def test_spark_submit_passes_the_level_to_the_connector() -> None:
    env = {**os.environ, "ORDERLOG_CASSANDRA_CONSISTENCY": "local_one"}
    done = subprocess.run(
        [sys.executable, "-m", "jobs.submit_args"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "spark.cassandra.output.consistency.level=LOCAL_ONE" in lines
    assert "spark.cassandra.input.consistency.level=LOCAL_ONE" in lines


def test_the_test_spark_session_uses_local_quorum(spark) -> None:
    assert spark.conf.get("spark.cassandra.output.consistency.level") == "LOCAL_QUORUM"
    assert spark.conf.get("spark.cassandra.input.consistency.level") == "LOCAL_QUORUM"


def _topic_config(settings, topic: str) -> dict:
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_list)
    try:
        # A topic just created may not be described by every broker yet (seen under load: an
        # answer without its configs), so ask again for a while.
        deadline = time.monotonic() + 30
        while True:
            # "all": effective values too (the default filter lists only modified keys).
            described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all")
            config = described.get("topic", {}).get(topic, {})
            if "min.insync.replicas" in config or time.monotonic() > deadline:
                return config
            time.sleep(0.5)
    finally:
        admin.delete_topics([topic])
        admin.close()


@pytest.mark.parametrize("min_insync", [1, 2])
def test_the_topic_is_created_with_the_configured_min_insync_replicas(stack, settings, min_insync) -> None:
    # The configuration refuses 2 with one replica (no write could be acknowledged), but the
    # broker accepts it at creation: it shows that the value is passed through, not defaulted.
    # So the settings are made past the configuration's check of the pair.
    topic = f"test-isr-{uuid.uuid4().hex[:8]}"
    unchecked = copy.copy(settings.replace(kafka_topic=topic))
    object.__setattr__(unchecked, "kafka", unchecked.kafka.replace(min_insync_replicas=min_insync))
    assert create_topic(unchecked) is True
    config = _topic_config(settings, topic)
    assert config["min.insync.replicas"]["value"] == str(min_insync)
    assert config["min.insync.replicas"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"  # set on the topic
