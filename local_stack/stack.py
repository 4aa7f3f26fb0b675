"""Starts, checks and stops a real single-node Kafka (KRaft) and a real single-node
Cassandra 5.0 on 127.0.0.1, as plain JVM processes run from the jars that
`make setup` resolved from Maven Central into build/jars/.

Everything a server writes (data, logs, generated config, pid file) lives under one
folder, var/stack/ by default. `up` is idempotent and waits until each server really
answers (a Kafka metadata request, a CQL query); `down` stops every process it started.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

from cassandra.cluster import Cluster, NoHostAvailable

from local_stack import supervisor
from orderlog.config import Settings
from orderlog.kafka_admin import brokers_answer

TEMPLATES = Path(__file__).resolve().parent / "templates"

# The flags of Cassandra's own conf/jvm17-server.options (cassandra-5.0 branch):
# Cassandra reaches into JDK internals that Java 17 closes by default.
CASSANDRA_JAVA17_FLAGS = [
    "-Djdk.attach.allowAttachSelf=true",
    "--add-exports", "java.base/jdk.internal.misc=ALL-UNNAMED",
    "--add-exports", "java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED",
    "--add-exports", "java.rmi/sun.rmi.registry=ALL-UNNAMED",
    "--add-exports", "java.rmi/sun.rmi.server=ALL-UNNAMED",
    "--add-exports", "java.sql/java.sql=ALL-UNNAMED",
    "--add-exports", "java.base/java.lang.ref=ALL-UNNAMED",
    "--add-exports", "jdk.unsupported/sun.misc=ALL-UNNAMED",
    "--add-exports", "jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED",
    "--add-exports", "jdk.attach/sun.tools.attach=ALL-UNNAMED",
    "--add-opens", "java.base/java.lang.module=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.loader=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.ref=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.reflect=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.math=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.module=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.util.jar=ALL-UNNAMED",
    "--add-opens", "jdk.management/com.sun.management.internal=ALL-UNNAMED",
    "--add-opens", "java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-opens", "java.base/java.io=ALL-UNNAMED",
    "--add-opens", "java.base/java.lang.reflect=ALL-UNNAMED",
    "--add-opens", "jdk.compiler/com.sun.tools.javac=ALL-UNNAMED",
    "--add-opens", "java.base/java.lang=ALL-UNNAMED",
    "--add-opens", "java.base/java.util=ALL-UNNAMED",
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-Dio.netty.allocator.useCacheForAllThreads=true",
    "-Dio.netty.allocator.maxOrder=11",
]


class StackError(RuntimeError):
    """Something stopped the stack; the message says what and how to fix it."""


@dataclass(frozen=True)
class StackConfig:
    root: Path
    jars_dir: Path
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    kafka_partitions: int = 3
    kafka_heap: str = "512m"
    cassandra_port: int = 9042
    cassandra_storage_port: int = 7000
    cassandra_jmx_port: int = 7199
    cassandra_heap: str = "1g"
    kafka_start_timeout: float = 90.0
    cassandra_start_timeout: float = 240.0
    settings: Settings = field(default_factory=Settings, compare=False)
    # A node of the local cluster (local_stack/cluster.py) differs from the single-node
    # stack only in these: which node it is, whom it votes with and where it listens.
    node_id: int = 1
    kafka_voters: str = ""  # default: this node alone
    kafka_cluster_id: str = ""  # default: a random one at the first format
    kafka_session_timeout_ms: int = 9000  # Kafka's defaults
    kafka_heartbeat_ms: int = 2000
    replication: int = 1
    min_insync: int = 1
    address: str = "127.0.0.1"  # Cassandra's listen and CQL address
    cassandra_cluster_name: str = "orderlog-local"
    node_suffix: str = ""  # after the server's name in status and errors: "kafka2"
    secure: bool = False  # the secure variant (local_stack/secure.py)

    @classmethod
    def from_settings(cls, settings: Settings) -> StackConfig:
        """Ports follow the pipeline's configuration (so one variable moves both the
        server and its clients); folders, heaps and spare ports are its stack section."""
        kafka_host, _, kafka_port = settings.kafka.bootstrap_list[0].rpartition(":")
        if kafka_host not in ("127.0.0.1", "localhost"):
            raise StackError(
                f"ORDERLOG_KAFKA_BOOTSTRAP_SERVERS={settings.kafka.bootstrap_servers} points at a "
                "remote cluster; the local stack only runs on 127.0.0.1"
            )
        stack = settings.stack
        return cls(
            root=settings.stack_dir.resolve(),
            jars_dir=settings.paths.jars_path.resolve(),
            kafka_port=int(kafka_port),
            kafka_controller_port=stack.kafka_controller_port,
            kafka_partitions=settings.kafka.topic_partitions,
            kafka_heap=stack.kafka_heap,
            cassandra_port=settings.cassandra.port,
            cassandra_storage_port=stack.cassandra_storage_port,
            cassandra_jmx_port=stack.cassandra_jmx_port,
            cassandra_heap=stack.cassandra_heap,
            settings=settings,
        )


@dataclass
class ServerStatus:
    name: str
    running: bool
    pid: int | None
    answering: bool
    rss_mb: float | None
    ports: list[int]
    log: Path
    address: str = "127.0.0.1"

    def line(self) -> str:
        if not self.running:
            return f"{self.name:<10} stopped"
        state = "ready" if self.answering else "not answering"
        rss = f"{self.rss_mb:.0f} MiB RSS" if self.rss_mb is not None else "?"
        ports = ",".join(str(p) for p in self.ports)
        return f"{self.name:<10} {state:<13} pid {self.pid:<8} {self.address}:{ports:<12} {rss}  log {self.log}"


class Server:
    """One JVM server: how to write its config, start it, and tell that it answers."""

    name: str
    main_class: str

    def __init__(self, config: StackConfig):
        self.config = config
        self.home = config.root / self.name
        self.pid_file = self.home / f"{self.name}.pid"
        self.log_file = self.home / "logs" / f"{self.name}.log"

    # What subclasses provide
    def ports(self) -> list[int]:
        raise NotImplementedError

    def prepare(self, java: str) -> None:
        """Write config files and initialise storage on a first start."""

    def jvm_args(self) -> list[str]:
        raise NotImplementedError

    def program_args(self) -> list[str]:
        return []

    def answers(self) -> bool:
        raise NotImplementedError

    def start_timeout(self) -> float:
        raise NotImplementedError

    def command(self, java: str) -> list[str]:
        return [java, *self.jvm_args(), "-cp", self.classpath(), self.main_class, *self.program_args()]

    def environment(self, java: str) -> dict[str, str] | None:
        """The server's environment; None: ours."""
        return None

    def bind_address(self, port: int) -> str:
        """Where the server listens on ``port``."""
        return "127.0.0.1"

    # Shared behaviour
    @property
    def label(self) -> str:
        return f"{self.name}{self.config.node_suffix}"

    def classpath(self) -> str:
        jars = self.config.jars_dir / self.name
        if not jars.is_dir() or not any(jars.glob("*.jar")):
            raise StackError(f"no {self.name} jars in {jars}: run `make setup` first")
        return str(jars / "*")

    def pid(self) -> int | None:
        """The pid of our running server, or None (a stale pid file is ignored)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        # A recycled pid belongs to some other process: only trust our own command line.
        return supervisor.find(pid, [self.main_class, str(self.home)])

    def status(self) -> ServerStatus:
        pid = self.pid()
        return ServerStatus(
            name=self.label,
            running=pid is not None,
            pid=pid,
            answering=pid is not None and self.answers(),
            rss_mb=supervisor.rss_mb(pid) if pid else None,
            ports=self.ports(),
            log=self.log_file,
            address=self.bind_address(self.ports()[0]),
        )

    def start(self, java: str) -> bool:
        """Starts the server unless it runs; waits until it answers. True if started."""
        return self.wait_ready(self.launch(java))

    def launch(self, java: str) -> supervisor.Started | None:
        """Starts the server unless it runs, without waiting; None if it was running. (A
        Kafka node of the cluster only answers once a quorum of its peers runs too.)"""
        if self.pid() is not None:
            return None
        for port in self.ports():
            if supervisor.port_in_use(port, self.bind_address(port)):
                raise StackError(
                    f"cannot start {self.label}: port {port} on {self.bind_address(port)} is already in use by "
                    f"another process ({supervisor.port_owner(port)}). Stop it, or move {self.name} with "
                    f"{self.port_variable(port)}."
                )
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.prepare(java)
        with open(self.log_file, "a") as log:
            log.write(f"\n==== starting {self.label}: {time.strftime('%Y-%m-%d %H:%M:%S')} ====\n")
        server = supervisor.start(self.command(java), log=self.log_file, cwd=self.home, env=self.environment(java))
        self.pid_file.write_text(str(server.pid))
        return server

    def wait_ready(self, server: supervisor.Started | None) -> bool:
        """Waits until the server ``launch`` started (or found running: None) answers.
        True if it was started."""
        if server is None:
            if not _wait_for(self.answers, self.start_timeout(), lambda: self.pid() is not None):
                raise StackError(f"{self.label} runs (pid {self.pid()}) but does not answer; see {self.log_file}")
            return False
        if not _wait_for(self.answers, self.start_timeout(), lambda: server.exit_code() is None):
            code = server.exit_code()
            if code is None:
                self.stop()
                reason = f"did not answer within {self.start_timeout():.0f} s"
            else:
                self.pid_file.unlink(missing_ok=True)
                reason = f"exited with code {code} while starting"
            last_lines = supervisor.tail(self.log_file, indent="    ")
            raise StackError(f"{self.label} {reason}. Last lines of {self.log_file}:\n{last_lines}")
        return True

    def stop(self, timeout: float = supervisor.STOP_TIMEOUT_S) -> bool:
        """Stops the server (SIGTERM, then SIGKILL after timeout). True if it was running."""
        pid = self.pid()
        if pid is not None:
            supervisor.stop(pid, timeout)
        self.pid_file.unlink(missing_ok=True)
        return pid is not None

    def kill(self) -> None:
        """kill -9, for fault tests: no clean shutdown."""
        pid = self.pid()
        if pid is not None:
            supervisor.kill(pid)

    def port_variable(self, port: int) -> str:
        return "its ORDERLOG_* port variable"


class Kafka(Server):
    name = "kafka"
    main_class = "kafka.Kafka"

    def ports(self) -> list[int]:
        return [self.config.kafka_port, self.config.kafka_controller_port]

    def port_variable(self, port: int) -> str:
        if port == self.config.kafka_port:
            return "ORDERLOG_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:<port>"
        return "ORDERLOG_STACK_KAFKA_CONTROLLER_PORT"

    @property
    def properties_file(self) -> Path:
        return self.home / "config" / "server.properties"

    def prepare(self, java: str) -> None:
        data = self.home / "data"
        data.mkdir(parents=True, exist_ok=True)
        self.properties_file.parent.mkdir(parents=True, exist_ok=True)
        c = self.config
        _render(
            "kafka-server.properties",
            self.properties_file,
            node_id=c.node_id,
            voters=c.kafka_voters or f"{c.node_id}@127.0.0.1:{c.kafka_controller_port}",
            kafka_port=c.kafka_port,
            controller_port=c.kafka_controller_port,
            log_dirs=data,
            partitions=c.kafka_partitions,
            replication=c.replication,
            min_insync=c.min_insync,
            session_timeout_ms=c.kafka_session_timeout_ms,
            heartbeat_ms=c.kafka_heartbeat_ms,
        )
        shutil.copyfile(TEMPLATES / "kafka-log4j2.xml", self.home / "config" / "log4j2.xml")
        if not (data / "meta.properties").exists():
            self.format_storage(java)

    def format_storage(self, java: str) -> None:
        """KRaft storage must be formatted once with a cluster id before the first start."""
        result = subprocess.run(
            [java, "-Xmx256m", f"-Dlog4j2.configurationFile={self.home / 'config' / 'log4j2.xml'}",
             "-cp", self.classpath(), "kafka.tools.StorageTool",
             "format", "-t", self.config.kafka_cluster_id or _kafka_cluster_id(), "-c", str(self.properties_file)],
            capture_output=True, text=True, check=False,
        )
        if result.returncode != 0:
            raise StackError(f"formatting Kafka storage failed:\n{result.stdout}{result.stderr}")

    def jvm_args(self) -> list[str]:
        heap = self.config.kafka_heap
        return [
            f"-Xms{heap}", f"-Xmx{heap}",
            "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:+ExplicitGCInvokesConcurrent",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.home / 'config' / 'log4j2.xml'}",
            f"-Dkafka.logs.dir={self.home / 'logs'}",
        ]

    def program_args(self) -> list[str]:
        return [str(self.properties_file)]

    def answers(self) -> bool:
        return kafka_answers(f"127.0.0.1:{self.config.kafka_port}")

    def start_timeout(self) -> float:
        return self.config.kafka_start_timeout


class Cassandra(Server):
    name = "cassandra"
    main_class = "org.apache.cassandra.service.CassandraDaemon"

    def ports(self) -> list[int]:
        c = self.config
        return [c.cassandra_port, c.cassandra_storage_port, c.cassandra_jmx_port]

    def port_variable(self, port: int) -> str:
        c = self.config
        return {
            c.cassandra_port: "ORDERLOG_CASSANDRA_PORT",
            c.cassandra_storage_port: "ORDERLOG_STACK_CASSANDRA_STORAGE_PORT",
        }.get(port, "ORDERLOG_STACK_CASSANDRA_JMX_PORT")

    @property
    def yaml_file(self) -> Path:
        return self.home / "config" / "cassandra.yaml"

    def prepare(self, java: str) -> None:
        data = self.home / "data"
        for sub in ("data", "commitlog", "saved_caches", "hints", "cdc_raw"):
            (data / sub).mkdir(parents=True, exist_ok=True)
        self.yaml_file.parent.mkdir(parents=True, exist_ok=True)
        _render(
            "cassandra.yaml",
            self.yaml_file,
            cluster_name=self.config.cassandra_cluster_name,
            replication=self.config.replication,
            address=self.config.address,
            storage_port=self.config.cassandra_storage_port,
            native_port=self.config.cassandra_port,
            data_dir=data,
        )
        shutil.copyfile(TEMPLATES / "cassandra-logback.xml", self.home / "config" / "logback.xml")

    def jvm_args(self) -> list[str]:
        heap = self.config.cassandra_heap
        return [
            f"-Xms{heap}", f"-Xmx{heap}", "-Xss512k",
            "-XX:+UseG1GC", "-XX:+ParallelRefProcEnabled", "-XX:MaxTenuringThreshold=1",
            "-XX:G1HeapRegionSize=16m", "-XX:MaxGCPauseMillis=300",
            # Stop rather than limp on with a corrupt state after an OutOfMemoryError.
            "-XX:+ExitOnOutOfMemoryError",
            "-XX:MaxDirectMemorySize=512m",
            *CASSANDRA_JAVA17_FLAGS,
            f"-Dcassandra.config=file://{self.yaml_file}",
            f"-Dcassandra.storagedir={self.home / 'data'}",
            f"-Dcassandra.logdir={self.home / 'logs'}",
            f"-Dlogback.configurationFile={self.home / 'config' / 'logback.xml'}",
            "-Dcassandra-foreground=yes",
            f"-Dcassandra.jmx.local.port={self.config.cassandra_jmx_port}",
            # Nothing to wait for in gossip or ring settling: one node, or a few on loopback.
            "-Dcassandra.skip_wait_for_gossip_to_settle=0",
            "-Dcassandra.ring_delay_ms=1000",
            "-Dcassandra.superuser_setup_delay_ms=0",
            "-Djava.net.preferIPv4Stack=true",
        ]

    def answers(self) -> bool:
        return cassandra_answers(self.config.address, self.config.cassandra_port)

    def bind_address(self, port: int) -> str:
        # Local JMX always binds 127.0.0.1, whatever the node's address.
        return "127.0.0.1" if port == self.config.cassandra_jmx_port else self.config.address

    def start_timeout(self) -> float:
        return self.config.cassandra_start_timeout


def servers(config: StackConfig) -> dict[str, Server]:
    if config.secure:
        from local_stack.secure import secure_servers  # it builds on this module

        return secure_servers(config)
    return {"kafka": Kafka(config), "cassandra": Cassandra(config)}


def find_java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    candidate = Path(java_home) / "bin" / "java" if java_home else None
    java = str(candidate) if candidate and candidate.exists() else shutil.which("java")
    if not java:
        raise StackError(
            "Java not found: install a JDK or JRE 17 (Debian: apt-get install openjdk-17-jre-headless) "
            "or set JAVA_HOME"
        )
    result = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    version_line = (result.stderr or result.stdout).splitlines()[0] if (result.stderr or result.stdout) else ""
    major = _java_major(version_line)
    if major is not None and major < 17:
        raise StackError(f"Java 17 or newer is needed; {java} is {version_line.strip()}")
    return java


def up(config: StackConfig, names: list[str] | None = None, log: Callable[[str], None] = print) -> dict[str, float]:
    """Starts the servers that are not running and waits until they answer (the schema and
    the topic are `python -m local_stack up`'s next step). Returns seconds spent starting
    each server that was started."""
    java = find_java()
    config.root.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    for name in names or ["kafka", "cassandra"]:
        server = servers(config)[name]
        started_at = time.monotonic()
        if server.start(java):
            timings[name] = time.monotonic() - started_at
            log(f"{name} started in {timings[name]:.1f} s (pid {server.pid()}, log {server.log_file})")
        else:
            log(f"{name} already running (pid {server.pid()})")
    return timings


def down(config: StackConfig, names: list[str] | None = None, log: Callable[[str], None] = print) -> None:
    # Kafka first: it holds no state Cassandra needs, and stopping is independent.
    for name in names or ["kafka", "cassandra"]:
        server = servers(config)[name]
        if server.stop():
            log(f"{name} stopped")
        else:
            log(f"{name} was not running")


def status(config: StackConfig) -> list[ServerStatus]:
    return [server.status() for server in servers(config).values()]


def kafka_answers(bootstrap: str) -> bool:
    """True when the broker answers a metadata request."""
    return _tcp_open(*_host_port(bootstrap)) and brokers_answer([bootstrap], 5.0, client_id="local-stack-probe")[0]


def cassandra_answers(host: str, port: int) -> bool:
    """True when the node answers a CQL query."""
    if not _tcp_open(host, port):
        return False
    cluster = Cluster([host], port=port, protocol_version=5, connect_timeout=5, control_connection_timeout=5)
    try:
        session = cluster.connect()
        row = session.execute("SELECT release_version FROM system.local", timeout=5).one()
        return row is not None
    except (NoHostAvailable, OSError, Exception):  # the driver raises many kinds while starting
        return False
    finally:
        cluster.shutdown()


def _render(template: str, target: Path, **values: object) -> None:
    text = Template((TEMPLATES / template).read_text()).substitute({k: str(v) for k, v in values.items()})
    target.write_text(text)


def _kafka_cluster_id() -> str:
    """A random Kafka cluster id: 16 random bytes in URL-safe base64 (like StorageTool
    random-uuid), without the JVM start that asking StorageTool would cost."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def _wait_for(check: Callable[[], bool], timeout: float, keep_going: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not keep_going():
            return False
        if check():
            return True
        time.sleep(0.5)
    return False


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def _tcp_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _java_major(version_line: str) -> int | None:
    match = re.search(r'version "(\d+)(?:\.(\d+))?', version_line)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major
