"""The local cluster: a multi-node topology on this one machine, without Docker (the way
ccm runs Cassandra clusters on loopback addresses), to prove the pipeline where replicas,
quorums and executors in other JVMs are real:

- three Kafka 4.4 nodes in KRaft mode, each broker and controller in one process, brokers on
  127.0.0.1:9092-9094, controllers on 9192-9194;
- three Cassandra 5.0 nodes on 127.0.0.1, 127.0.0.2 and 127.0.0.3 (port 9042 each: the whole
  of 127/8 is loopback on Linux), JMX on 127.0.0.1:7199/7299/7399;
- a Spark standalone master (spark://127.0.0.1:7077, web UI 127.0.0.1:8090) and two workers
  (7078/7079, UIs 8091/8092), from the pyspark distribution's own classes.

The Kafka and Cassandra nodes are the single-node stack's server classes and templates with
a node's settings (``StackConfig``); data, logs and pids live under var/cluster/nodeN/ and
var/cluster/spark-*/. ``up`` starts what is missing (so it also restarts a node that died),
waits until every node answers, then applies the schema: keyspace replicated 3 times
(NetworkTopologyStrategy), topic of 6 partitions, replication 3, min.insync.replicas 2.
The ports are fixed: the single-node stack on its default ports cannot run beside it.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyspark
from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from local_stack.stack import (
    Cassandra,
    Kafka,
    Server,
    ServerStatus,
    StackConfig,
    StackError,
    _kafka_cluster_id,
    _wait_for,
    find_java,
)
from orderlog.config import Settings, child_environment, load_settings

NODES = (1, 2, 3)
KAFKA_PORTS = {n: 9091 + n for n in NODES}
KAFKA_CONTROLLER_PORTS = {n: 9191 + n for n in NODES}
CASSANDRA_ADDRESSES = {n: f"127.0.0.{n}" for n in NODES}
CASSANDRA_PORT = 9042
CASSANDRA_STORAGE_PORT = 7000
# Local JMX binds 127.0.0.1 whatever the node's address: one port per node.
CASSANDRA_JMX_PORTS = {n: 7099 + 100 * n for n in NODES}
SPARK_MASTER_PORT, SPARK_MASTER_UI_PORT = 7077, 8090  # 8090: the ingest API keeps 8080
SPARK_WORKERS = {1: (7078, 8091), 2: (7079, 8092)}  # worker: (RPC port, UI port)
# Each application takes 2 cores by default (one executor of 1 core on each worker), so the
# streaming job and an aggregate run side by side, each with executors on both workers.
# Each worker offers settings.cluster.spark_worker_cores slots: with one worker dead, both
# applications still fit on the other.
SPARK_APP_CORES = 2
SPARK_MASTER_URL = f"spark://127.0.0.1:{SPARK_MASTER_PORT}"
TOPIC_PARTITIONS, REPLICATION, MIN_INSYNC = 6, 3, 2
DATACENTER = "datacenter1"  # SimpleSnitch's data centre
# A dead broker is fenced (dropped from the ISRs, which acks=all waits for) after this:
# under the ingest API's 10 s acknowledgement timeout even when it was the active controller.
KAFKA_SESSION_TIMEOUT_MS, KAFKA_HEARTBEAT_MS = 3000, 500
KAFKA_VOTERS = ",".join(f"{n}@127.0.0.1:{KAFKA_CONTROLLER_PORTS[n]}" for n in NODES)
LOOPBACK = "127.0.0.1"


def environment(settings: Settings) -> dict[str, str]:
    """The variables that point every command of the project at the cluster (`make
    cluster-env` prints them): the same commands, other addresses and replication."""
    return {
        "ORDERLOG_KAFKA_BOOTSTRAP_SERVERS": ",".join(f"{LOOPBACK}:{KAFKA_PORTS[n]}" for n in NODES),
        "ORDERLOG_KAFKA_TOPIC_PARTITIONS": str(TOPIC_PARTITIONS),
        "ORDERLOG_KAFKA_REPLICATION_FACTOR": str(REPLICATION),
        "ORDERLOG_KAFKA_MIN_INSYNC_REPLICAS": str(MIN_INSYNC),
        "ORDERLOG_CASSANDRA_HOSTS": ",".join(CASSANDRA_ADDRESSES.values()),
        "ORDERLOG_CASSANDRA_PORT": str(CASSANDRA_PORT),
        "ORDERLOG_CASSANDRA_LOCAL_DC": DATACENTER,
        "ORDERLOG_CASSANDRA_REPLICATION": f"{{'class': 'NetworkTopologyStrategy', '{DATACENTER}': {REPLICATION}}}",
        "ORDERLOG_SPARK_MASTER": SPARK_MASTER_URL,
        # Its offsets name the cluster's topic: never the single-node job's checkpoint.
        "ORDERLOG_CHECKPOINT_LOCATION": str(settings.cluster_dir.resolve() / "checkpoints" / "streaming"),
    }


def cluster_settings(settings: Settings | None = None) -> Settings:
    """``settings`` (ours by default) pointed at the cluster."""
    settings = load_settings() if settings is None else settings
    return load_settings(environ={**child_environment(settings), **environment(settings)})


def node_config(settings: Settings, node: int) -> StackConfig:
    """Node ``node``'s Kafka and Cassandra: the single-node stack's servers with its ports,
    address, quorum and replication."""
    root = settings.cluster_dir.resolve()
    return StackConfig(
        root=root / f"node{node}",
        jars_dir=settings.paths.jars_path.resolve(),
        kafka_port=KAFKA_PORTS[node],
        kafka_controller_port=KAFKA_CONTROLLER_PORTS[node],
        kafka_partitions=TOPIC_PARTITIONS,
        kafka_heap=settings.cluster.kafka_heap,
        cassandra_port=CASSANDRA_PORT,
        cassandra_storage_port=CASSANDRA_STORAGE_PORT,
        cassandra_jmx_port=CASSANDRA_JMX_PORTS[node],
        cassandra_heap=settings.cluster.cassandra_heap,
        kafka_start_timeout=180.0,
        settings=settings,
        node_id=node,
        kafka_voters=KAFKA_VOTERS,
        kafka_cluster_id=kafka_cluster_id(root),
        kafka_session_timeout_ms=KAFKA_SESSION_TIMEOUT_MS,
        kafka_heartbeat_ms=KAFKA_HEARTBEAT_MS,
        replication=REPLICATION,
        min_insync=MIN_INSYNC,
        address=CASSANDRA_ADDRESSES[node],
        cassandra_cluster_name="orderlog-cluster",
        node_suffix=str(node),
    )


def kafka_cluster_id(root: Path) -> str:
    """The one cluster id every Kafka node is formatted with, chosen at the first start."""
    path = root / "kafka-cluster-id"
    if not path.exists():
        root.mkdir(parents=True, exist_ok=True)
        path.write_text(_kafka_cluster_id())
    return path.read_text().strip()


class SparkDaemon(Server):
    """A Spark standalone daemon, run by the pyspark distribution's bin/spark-class."""

    def __init__(self, config: StackConfig, name: str):
        self.name = name
        super().__init__(config)

    def spark_home(self) -> Path:
        return Path(pyspark.__file__).resolve().parent

    def command(self, java: str) -> list[str]:
        return [str(self.spark_home() / "bin" / "spark-class"), self.main_class, *self.program_args()]

    def environment(self, java: str) -> dict[str, str]:
        settings = self.config.settings
        return {
            **child_environment(settings),
            "JAVA_HOME": str(Path(java).resolve().parent.parent),
            "SPARK_HOME": str(self.spark_home()),
            # Every port of the daemon, and of the executors a worker starts, on loopback.
            "SPARK_LOCAL_IP": LOOPBACK,
            "SPARK_DAEMON_MEMORY": settings.cluster.spark_daemon_heap,
            # Its own conf dir (on the classpath, so the pid check finds our home in it);
            # executors take their log4j2 from the worker's.
            "SPARK_CONF_DIR": str(self.home / "conf"),
            "PYSPARK_PYTHON": sys.executable,
            "SPARK_MASTER_OPTS": f"-Dspark.deploy.defaultCores={SPARK_APP_CORES}",
        }

    def prepare(self, java: str) -> None:
        (self.home / "conf").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(__file__).resolve().parent.parent / "jobs" / "conf" / "log4j2.properties",
                        self.home / "conf" / "log4j2.properties")

    def start_timeout(self) -> float:
        return 120.0


class SparkMaster(SparkDaemon):
    main_class = "org.apache.spark.deploy.master.Master"

    def __init__(self, config: StackConfig):
        super().__init__(config, "spark-master")

    def ports(self) -> list[int]:
        return [SPARK_MASTER_PORT, SPARK_MASTER_UI_PORT]

    def program_args(self) -> list[str]:
        return ["--host", LOOPBACK, "--port", str(SPARK_MASTER_PORT), "--webui-port", str(SPARK_MASTER_UI_PORT)]

    def answers(self) -> bool:
        return (master_state() or {}).get("status") == "ALIVE"


class SparkWorker(SparkDaemon):
    main_class = "org.apache.spark.deploy.worker.Worker"

    def __init__(self, config: StackConfig, worker: int):
        self.port, self.ui_port = SPARK_WORKERS[worker]
        super().__init__(config, f"spark-worker{worker}")

    def ports(self) -> list[int]:
        return [self.port, self.ui_port]

    def program_args(self) -> list[str]:
        offer = self.config.settings.cluster
        return [SPARK_MASTER_URL, "--host", LOOPBACK, "--port", str(self.port), "--webui-port", str(self.ui_port),
                "--cores", str(offer.spark_worker_cores), "--memory", offer.spark_worker_memory,
                "--work-dir", str(self.home / "work")]

    def answers(self) -> bool:
        """Registered with the master, and alive there."""
        return any(w.get("host") == LOOPBACK and w.get("port") == self.port and w.get("state") == "ALIVE"
                   for w in (master_state() or {}).get("workers", []))


def master_state() -> dict | None:
    """The Spark master's own account of itself and its workers (its UI's /json/), or None."""
    try:
        with urllib.request.urlopen(f"http://{LOOPBACK}:{SPARK_MASTER_UI_PORT}/json/", timeout=5) as answer:
            return json.load(answer)
    except (OSError, ValueError):
        return None


class Cluster:
    """The nine servers of the local cluster."""

    def __init__(self, settings: Settings):
        self.settings = settings
        nodes = {n: node_config(settings, n) for n in NODES}
        self.kafka = [Kafka(nodes[n]) for n in NODES]
        self.cassandra = [Cassandra(nodes[n]) for n in NODES]
        spark = StackConfig(root=settings.cluster_dir.resolve(), jars_dir=settings.paths.jars_path.resolve(),
                            settings=settings)
        self.spark_master = SparkMaster(spark)
        self.spark_workers = [SparkWorker(spark, w) for w in SPARK_WORKERS]

    def servers(self) -> list[Server]:
        return [*self.kafka, *self.cassandra, self.spark_master, *self.spark_workers]

    def up(self, log: Callable[[str], None] = print) -> list[str]:
        """Starts every server that does not run and waits until each answers; returns the
        names of those it started."""
        java = find_java()
        started: list[str] = []
        began = time.monotonic()
        # A Kafka node answers only once a quorum of the voters runs: start all, then wait.
        launched = [(server, server.launch(java)) for server in self.kafka]
        for server, process in launched:
            if server.wait_ready(process):
                started.append(server.label)
        if not _wait_for(lambda: len(unfenced_brokers(self.settings)) == len(NODES), 120, lambda: True):
            raise StackError(f"Kafka: {unfenced_brokers(self.settings)} of brokers {list(NODES)} are unfenced")
        log(f"kafka: 3 brokers up ({time.monotonic() - began:.1f} s)")
        # One at a time: a joining Cassandra node allocates its tokens against the ring it sees.
        for server in [*self.cassandra, self.spark_master, *self.spark_workers]:
            if self._start_joining(server, java, log):
                started.append(server.label)
                log(f"{server.label} started ({time.monotonic() - began:.1f} s, pid {server.pid()})")
        log(f"cluster up in {time.monotonic() - began:.1f} s; started: {', '.join(started) or 'nothing'}")
        return started

    @staticmethod
    def _start_joining(server: Server, java: str, log: Callable[[str], None]) -> bool:
        """server.start, once more if a Cassandra node gave up joining because it had not
        heard from the seed yet (a short ring delay keeps the start fast; under load a
        gossip round can take longer). It exits before joining, so starting it again is
        safe: it bootstraps from the beginning."""
        try:
            return server.start(java)
        except StackError:
            if "Unable to contact any seeds" not in _last_start_of(server.log_file):
                raise
            log(f"{server.label} had not heard from the seed when joining; starting it again")
            time.sleep(5)
            return server.start(java)

    def down(self, log: Callable[[str], None] = print) -> None:
        """Stops everything: Spark, then the Cassandra nodes together, then the Kafka nodes
        together (one after another, the last Kafka node, without a quorum, hangs for
        minutes in its controlled shutdown)."""
        for group in ([*self.spark_workers, self.spark_master], self.cassandra, self.kafka):
            with ThreadPoolExecutor(len(group)) as pool:
                stopped = list(pool.map(lambda server: server.stop(), group))
            for server, was_running in zip(group, stopped, strict=True):
                log(f"{server.label} {'stopped' if was_running else 'was not running'}")

    def status(self) -> list[ServerStatus]:
        return [server.status() for server in self.servers()]


def _last_start_of(log_file: Path) -> str:
    """What a server logged since it was last started (the launch writes a marker line)."""
    try:
        with open(log_file, "rb") as log:
            log.seek(max(0, log_file.stat().st_size - 1_000_000))
            text = log.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return text[text.rfind("==== starting "):]


def unfenced_brokers(settings: Settings) -> list[int]:
    """The ids of the brokers the controller counts as alive (describe_cluster also lists
    dead brokers, fenced)."""
    try:
        admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_list, request_timeout_ms=3000,
                                 client_id="local-cluster-probe")
    except (KafkaError, OSError, ValueError):
        return []
    try:
        return sorted(b["broker_id"] for b in admin.describe_cluster()["brokers"] if not b["is_fenced"])
    except (KafkaError, OSError):
        return []
    finally:
        admin.close()
