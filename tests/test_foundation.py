"""The foundation works with the real parts: Kafka, Cassandra, Spark and the local stack."""

from __future__ import annotations

import json
import socket
import uuid
from datetime import date

import pytest

from local_stack.stack import Kafka, StackConfig, StackError, down, status, up
from orderlog.tables import table_names
from tests.conftest import free_ports

pytestmark = pytest.mark.integration


def test_a_record_produced_with_kafka_python_is_consumed_back(settings, kafka_topic):
    from kafka import KafkaConsumer, KafkaProducer

    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_list, acks="all")
    sent = {"user_id": "u-1", "n": uuid.uuid4().hex}
    producer.send(kafka_topic, key=b"u-1", value=json.dumps(sent).encode()).get(timeout=30)
    producer.close()

    consumer = KafkaConsumer(
        kafka_topic,
        bootstrap_servers=settings.kafka.bootstrap_list,
        auto_offset_reset="earliest",
        consumer_timeout_ms=20000,
    )
    received = [(m.key, json.loads(m.value)) for m in consumer]
    consumer.close()
    assert received == [(b"u-1", sent)]


def test_a_cql_write_is_read_back(clean_cassandra):
    session = clean_cassandra
    insert = session.prepare(
        "INSERT INTO daily_order_summaries (year, order_date, japanese, western, total, users) "
        "VALUES (?, ?, ?, ?, ?, ?)"
    )
    session.execute(insert, (2025, date(2025, 5, 31), 120, 95, 215, 80))
    row = session.execute(
        "SELECT japanese, western, total, users FROM daily_order_summaries WHERE year = %s AND order_date = %s",
        (2025, date(2025, 5, 31)),
    ).one()
    assert (row.japanese, row.western, row.total, row.users) == (120, 95, 215, 80)


def test_the_schema_has_every_table(cassandra, settings):
    rows = cassandra.execute(
        "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s", (settings.cassandra.keyspace,)
    )
    assert set(table_names()) <= {r.table_name for r in rows}
    assert {"raw_orders", "daily_order_summaries", "user_preferences", "rejected_events"} <= set(table_names())


def test_spark_reads_kafka_and_writes_cassandra_through_the_connector(spark, settings, kafka_topic, clean_cassandra):
    from kafka import KafkaProducer
    from pyspark.sql import functions as F

    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_list, acks="all")
    for n in range(10):
        payload = {"user_id": f"u-{n}", "japanese": n, "western": 10 - n}
        producer.send(kafka_topic, key=f"u-{n}".encode(), value=json.dumps(payload).encode())
    producer.flush()
    producer.close()

    schema = "user_id STRING, japanese BIGINT, western BIGINT"
    rows = (
        spark.read.format("kafka")
        .option("kafka.bootstrap.servers", settings.kafka.bootstrap_servers)
        .option("subscribe", kafka_topic)
        .option("startingOffsets", "earliest")
        .load()
        .select(F.from_json(F.col("value").cast("string"), schema).alias("v"))
        .select("v.*")
        .withColumn("preference", F.lit("test"))
    )
    assert rows.count() == 10
    (
        rows.write.format("org.apache.spark.sql.cassandra")
        .options(keyspace=settings.cassandra.keyspace, table="user_preferences")
        .mode("append")
        .save()
    )
    back = (
        spark.read.format("org.apache.spark.sql.cassandra")
        .options(keyspace=settings.cassandra.keyspace, table="user_preferences")
        .load()
        .select("user_id", "japanese", "western")
        .collect()
    )
    assert sorted((r.user_id, r.japanese, r.western) for r in back) == [
        (f"u-{n}", n, 10 - n) for n in range(10)
    ]


@pytest.fixture
def spare_kafka_config(tmp_path, settings):
    """A second Kafka on spare ports in a temporary folder, to test up/down safely."""
    ports = free_ports(2)
    config = StackConfig.from_settings(
        settings.replace(kafka_bootstrap_servers=f"127.0.0.1:{ports[0]}", stack_dir=str(tmp_path / "stack"),
                         stack_kafka_controller_port=ports[1])
    )
    yield config
    down(config, ["kafka"], log=lambda _: None)


def test_up_twice_and_down_twice(spare_kafka_config):
    lines: list[str] = []
    first = up(spare_kafka_config, ["kafka"], log=lines.append)
    pid = Kafka(spare_kafka_config).pid()
    second = up(spare_kafka_config, ["kafka"], log=lines.append)
    assert "kafka" in first and second == {}
    assert Kafka(spare_kafka_config).pid() == pid
    assert lines[-1].startswith("kafka already running")

    down(spare_kafka_config, ["kafka"], log=lines.append)
    assert lines[-1] == "kafka stopped"
    assert not _pid_alive(pid)
    assert not _pid_has_children(pid)
    down(spare_kafka_config, ["kafka"], log=lines.append)
    assert lines[-1] == "kafka was not running"
    assert [s.running for s in status(spare_kafka_config) if s.name == "kafka"] == [False]


def test_a_port_already_in_use_gives_a_clear_error(spare_kafka_config):
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", spare_kafka_config.kafka_port))
    blocker.listen()
    try:
        with pytest.raises(StackError) as error:
            up(spare_kafka_config, ["kafka"], log=lambda _: None)
    finally:
        blocker.close()
    message = str(error.value)
    assert f"port {spare_kafka_config.kafka_port} on 127.0.0.1 is already in use" in message
    assert "ORDERLOG_KAFKA_BOOTSTRAP_SERVERS" in message
    assert Kafka(spare_kafka_config).pid() is None


def test_a_server_that_dies_while_starting_reports_its_log(spare_kafka_config):
    # A Kafka whose storage was formatted for another node id refuses to start.
    kafka = Kafka(spare_kafka_config)
    (kafka.home / "data").mkdir(parents=True)
    (kafka.home / "data" / "meta.properties").write_text("version=1\ncluster.id=bogus\nnode.id=7\n")
    with pytest.raises(StackError) as error:
        up(spare_kafka_config, ["kafka"], log=lambda _: None)
    message = str(error.value)
    assert "kafka exited with code" in message
    assert "Last lines of" in message and "kafka.log" in message
    assert kafka.pid() is None


def _pid_alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _pid_has_children(pid: int) -> bool:
    import subprocess

    return bool(subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.strip())


def test_cqlsh_from_pypi_talks_to_the_local_cassandra(clean_cassandra, settings):
    import subprocess
    import sys
    from pathlib import Path

    cqlsh = Path(sys.executable).parent / "cqlsh"
    clean_cassandra.execute(
        "INSERT INTO user_preferences (user_id, japanese, western, preference) VALUES (%s, %s, %s, %s)",
        ("cqlsh-user", 3, 1, "japanese"),
    )
    result = subprocess.run(
        [str(cqlsh), settings.cassandra.host_list[0], str(settings.cassandra.port), "-k", settings.cassandra.keyspace,
         "-e", "SELECT user_id, japanese, western, preference FROM user_preferences WHERE user_id = 'cqlsh-user'"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "cqlsh-user" in result.stdout and "japanese" in result.stdout and "(1 rows)" in result.stdout


def test_the_stack_cli_reports_status(stack):
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "local_stack", "status"], capture_output=True, text=True, timeout=60, check=False
    )
    # The stack of this checkout (started by `make up` or by this test run) is ready.
    lines = {line.split()[0]: line for line in result.stdout.splitlines()}
    assert result.returncode == 0, result.stdout
    for name, port in (("kafka", stack.kafka_port), ("cassandra", stack.cassandra_port)):
        assert lines[name].split()[1] == "ready"
        assert f"127.0.0.1:{port}" in lines[name] and "MiB RSS" in lines[name]
