"""The local cluster (`make cluster-up`) is the topology it claims: three Kafka brokers with
a replicated topic, three Cassandra nodes in one ring with a keyspace replicated on all
three, a Spark master with two workers, every port on loopback, and `up` idempotent.
Run by `make test-cluster` (marked cluster), never by `make test`."""

from __future__ import annotations

import ipaddress
import os
import subprocess

import psutil
import pytest
from cassandra.cluster import Cluster as CassandraCluster
from cassandra.policies import WhiteListRoundRobinPolicy
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType

from local_stack.cluster import CASSANDRA_ADDRESSES, NODES, master_state, unfenced_brokers
from tests.streaming_job import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.cluster]


def test_up_again_starts_nothing(local_cluster) -> None:
    assert local_cluster.up(log=lambda line: None) == []
    assert all(state.running and state.answering for state in local_cluster.status())


def test_three_brokers_and_a_topic_replicated_three_times(local_cluster) -> None:
    settings = local_cluster.settings
    assert unfenced_brokers(settings) == [1, 2, 3]
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_list, client_id="cluster-test")
    try:
        [topic] = admin.describe_topics([settings.kafka.topic])
        partitions = topic["partitions"]
        assert len(partitions) == 6
        assert all(sorted(p["replica_nodes"]) == [1, 2, 3] for p in partitions), partitions
        resource = ConfigResource(ConfigResourceType.TOPIC, settings.kafka.topic)
        configs = admin.describe_configs([resource], config_filter="all")["topic"][settings.kafka.topic]
        assert configs["min.insync.replicas"]["value"] == "2"
    finally:
        admin.close()


def test_three_cassandra_nodes_in_one_ring_holding_the_keyspace_three_times(local_cluster) -> None:
    settings = local_cluster.settings
    for address in CASSANDRA_ADDRESSES.values():
        # Each node on its own address answers for itself and knows the two others.
        cluster = CassandraCluster([address], port=9042, protocol_version=5,
                                   load_balancing_policy=WhiteListRoundRobinPolicy([address]))
        try:
            session = cluster.connect()
            local = session.execute("SELECT bootstrapped, data_center FROM system.local").one()
            assert (local.bootstrapped, local.data_center) == ("COMPLETED", "datacenter1")
            peers = {str(row.peer) for row in session.execute("SELECT peer FROM system.peers_v2")}
            assert peers == set(CASSANDRA_ADDRESSES.values()) - {address}
            replication = session.execute(
                "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = %s",
                (settings.cassandra.keyspace,)).one().replication
            assert replication == {"class": "org.apache.cassandra.locator.NetworkTopologyStrategy",
                                   "datacenter1": "3"}
        finally:
            cluster.shutdown()


def test_a_spark_master_with_two_workers(local_cluster) -> None:
    state = master_state()
    assert state is not None and state["status"] == "ALIVE"
    alive = sorted((w["host"], w["port"], w["cores"]) for w in state["workers"] if w["state"] == "ALIVE")
    slots = local_cluster.settings.cluster.spark_worker_cores
    assert alive == [("127.0.0.1", 7078, slots), ("127.0.0.1", 7079, slots)]


def test_every_port_of_the_cluster_is_on_loopback(local_cluster) -> None:
    pids = [state.pid for state in local_cluster.status()]
    assert len(pids) == 3 * len(NODES) and all(pids)
    sockets = [(c.laddr.ip, c.laddr.port) for pid in pids for c in psutil.Process(pid).net_connections("tcp")
               if c.status == psutil.CONN_LISTEN]
    assert {9092, 9093, 9094, 9192, 9193, 9194, 9042, 7000, 7077, 8090, 7078, 7079} <= {p for _, p in sockets}
    assert [s for s in sockets if not ipaddress.ip_address(s[0].removeprefix("::ffff:")).is_loopback] == []


def test_cluster_env_points_the_configuration_at_the_cluster(local_cluster) -> None:
    script = 'eval "$(make -s cluster-env)" && .venv/bin/python -m orderlog.config'
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERLOG_")}
    result = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = set(result.stdout.splitlines())
    assert {
        "ORDERLOG_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094  # environment",
        "ORDERLOG_KAFKA_REPLICATION_FACTOR=3  # environment",
        "ORDERLOG_KAFKA_MIN_INSYNC_REPLICAS=2  # environment",
        "ORDERLOG_CASSANDRA_HOSTS=127.0.0.1,127.0.0.2,127.0.0.3  # environment",
        "ORDERLOG_CASSANDRA_REPLICATION={'class': 'NetworkTopologyStrategy', 'datacenter1': 3}  # environment",
        "ORDERLOG_SPARK_MASTER=spark://127.0.0.1:7077  # environment",
    } <= lines, result.stdout
