"""Session fixtures shared by every test.

The real servers are started once per test run (or reused when `make up` already runs
them) and stopped at the end if this run started them. Tests use their own keyspace
(``orderlog_test``) and their own Kafka topics, so a running demo is never disturbed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

# Before anything reads the configuration: tests never touch the demo's keyspace.
os.environ.setdefault("ORDERLOG_CASSANDRA_KEYSPACE", "orderlog_test")
# Spark's Python workers (pandas UDFs) must run this interpreter, which has pandas/pyarrow,
# not whatever `python3` is on PATH.
os.environ.setdefault("PYSPARK_PYTHON", __import__("sys").executable)

from local_stack.supervisor import free_ports  # noqa: E402
from orderlog.config import Settings, load_settings  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Shuts down the Cassandra clusters some tests' apps still hold (a viewer app built for
    one test and dropped): left to interpreter exit, the driver's reconnection threads of a
    cluster whose node a test stopped print "cannot schedule new futures after shutdown"."""
    import gc

    from cassandra.cluster import Cluster

    for cluster in [o for o in gc.get_objects() if type(o) is Cluster]:  # a weak proxy fails isinstance
        if not cluster.is_shutdown:
            cluster.shutdown()


def empty_keyspace(settings: Settings) -> None:
    """The keyspace of ``settings`` with every table of tables.cql, all of them empty."""
    from orderlog.cassandra_session import connect, shutdown
    from orderlog.schema import apply_cql, truncate_tables

    apply_cql(settings)
    session = connect(settings)
    try:
        truncate_tables(session)
    finally:
        shutdown(session)


@contextlib.contextmanager
def pipeline_services(settings: Settings, logs: Path) -> Iterator[dict]:
    """streaming, ingest and viewer (tools.pipeline) running in the background on
    ``settings``: their processes by name; all stopped afterwards, none left running."""
    from local_stack import supervisor
    from tools import pipeline

    processes: dict = {}
    try:
        processes.update(pipeline.start_services(settings, logs, processes.__setitem__))
        yield processes
    finally:
        pipeline.stop_services(processes)
        assert not any(supervisor.running(p) for p in processes.values())


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings()


@pytest.fixture(autouse=True)
def close_ingest_producers(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Closes every producer an in-process ingest app made during the test: a producer left
    open keeps reconnecting to a broker the test has stopped (or never had) until exit."""
    from ingest_api import producer

    made: list[producer.Producer] = []
    make_producer = producer.make_producer

    def tracked(*args: object, **kwargs: object) -> producer.Producer:
        made.append(make_producer(*args, **kwargs))  # type: ignore[arg-type]
        return made[-1]

    monkeypatch.setattr(producer, "make_producer", tracked)
    yield
    for each in made:
        each.close(timeout_s=0)


@pytest.fixture(autouse=True)
def close_viewer_sessions(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Shuts down the Cassandra session of every in-process viewer app the test made: one
    left open keeps reconnecting to a Cassandra the run has stopped, and logs it (with
    tracebacks) to a stream pytest has closed."""
    from viewer import db

    apps: list[object] = []
    init_app = db.init_app

    def tracked(app: object) -> None:
        init_app(app)  # type: ignore[arg-type]
        apps.append(app)

    monkeypatch.setattr(db, "init_app", tracked)
    yield
    for app in apps:
        db.close_app(app)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def stack(settings: Settings) -> Iterator[object]:
    """The local Kafka and Cassandra, up and answering, with the schema applied."""
    from local_stack.stack import StackConfig, cassandra_answers, down, kafka_answers, up
    from orderlog.schema import apply_cql

    config = StackConfig.from_settings(settings)
    # Reuse servers that already answer (`make up`, another checkout's stack); start the rest.
    answering = {
        "kafka": kafka_answers(settings.kafka.bootstrap_servers),
        "cassandra": cassandra_answers(settings.cassandra.host_list[0], settings.cassandra.port),
    }
    started = [name for name, ok in answering.items() if not ok]
    if started:
        up(config, started, log=lambda line: print(f"[stack] {line}"))
    apply_cql(settings)
    yield config
    if started and not os.environ.get("ORDERLOG_KEEP_STACK"):
        down(config, started, log=lambda line: print(f"[stack] {line}"))


@pytest.fixture(scope="session")
def local_cluster() -> Iterator[object]:
    """The local cluster (local_stack/cluster.py), up and answering, with the schema applied
    on the test keyspace: reused when it runs, else started and, at the end, stopped (unless
    ORDERLOG_KEEP_CLUSTER is set)."""
    from local_stack.cluster import Cluster, cluster_settings
    from orderlog.schema import apply_cql, create_topic

    settings = cluster_settings()
    servers = Cluster(settings)
    ran_before = any(server.pid() is not None for server in servers.servers())
    try:
        started = servers.up(log=lambda line: print(f"[cluster] {line}"))
    except BaseException:
        # A start that fails half way must not leave the nodes it did start running.
        if not ran_before and not os.environ.get("ORDERLOG_KEEP_CLUSTER"):
            servers.down(log=lambda line: print(f"[cluster] {line}"))
        raise
    apply_cql(settings)
    create_topic(settings)
    yield servers
    if started and not os.environ.get("ORDERLOG_KEEP_CLUSTER"):
        servers.down(log=lambda line: print(f"[cluster] {line}"))


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
    from orderlog.schema import truncate_tables

    truncate_tables(cassandra)
    return cassandra


@pytest.fixture(scope="module")
def standard_viewer(cassandra: object, settings: Settings) -> Iterator[object]:
    """One viewer app (one Cassandra session) on the standard dataset (tests/viewer_data.py),
    for a module of viewer tests."""
    from tests.viewer_data import load_standard, viewer_app
    from viewer.db import close_app

    load_standard(cassandra)
    app = viewer_app(settings)
    yield app
    close_app(app)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def spark(stack: object, settings: Settings) -> Iterator[object]:
    """A local Spark session with the Kafka source and the Cassandra connector."""
    from jobs.session import local_session

    session = local_session(settings, "orderlog-tests")
    yield session
    session.stop()


@pytest.fixture
def kafka_topic(stack: object, settings: Settings) -> Iterator[str]:
    """A fresh topic with the configured number of partitions and the order topic's
    configuration (orderlog.schema.topic_configs), deleted afterwards."""
    from kafka.admin import KafkaAdminClient, NewTopic

    from orderlog.schema import topic_configs

    name = f"test-{uuid.uuid4().hex[:12]}"
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_list)
    admin.create_topics([NewTopic(name, num_partitions=settings.kafka.topic_partitions, replication_factor=1,
                                  topic_configs=topic_configs(settings))])
    yield name
    try:
        admin.delete_topics([name])
    finally:
        admin.close()


@pytest.fixture(params=["confluent-kafka", "kafka-python"])
def kafka_client(request: pytest.FixtureRequest) -> str:
    """Each Kafka client the ingest API can produce with (ORDERLOG_KAFKA_CLIENT): a test that
    takes this fixture runs once per client."""
    return request.param


@pytest.fixture
def streaming_jobs() -> Iterator[list]:
    """Append each tests.streaming_job.StreamingJob a test starts: any still running at the
    end is killed with its whole process tree."""
    started: list = []
    yield started
    for job in started:
        job.cleanup()


def stop_process(process: object, timeout: float = 30) -> None:
    """SIGTERM a server a test started, then SIGKILL if it has not exited in time."""
    import subprocess

    process.terminate()  # type: ignore[attr-defined]
    try:
        process.wait(timeout=timeout)  # type: ignore[attr-defined]
    except subprocess.TimeoutExpired:
        process.kill()  # type: ignore[attr-defined]
        process.wait()  # type: ignore[attr-defined]


@contextlib.contextmanager
def gunicorn_server(
    app: str, env: Mapping[str, str | None], log: Path, ready_path: str, timeout: float = 60
) -> Iterator[tuple[subprocess.Popen, str]]:
    """One of our Flask apps (``ingest_api`` or ``viewer``) under gunicorn with its own
    production config, as `make ingest` / `make viewer` run it, on a free port.

    ``env`` is added to this process's environment (``None`` removes a variable). Yields the
    process and its base URL once ``ready_path`` answers 200; stops the server afterwards.
    """
    (port,) = free_ports(1)
    environment = {**os.environ, **env}
    environment = {name: value for name, value in environment.items() if value is not None}
    command = [sys.executable, "-m", "gunicorn", "-c", f"{app}/gunicorn.conf.py", "-b", f"127.0.0.1:{port}",
               f"{app}:create_app()"]
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise AssertionError(f"{app} exited ({process.returncode}):\n{log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(base + ready_path, timeout=5) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                tail = log.read_text()[-2000:]
                raise AssertionError(f"{app} not answering {ready_path} after {timeout:.0f} s:\n{tail}")
            time.sleep(0.3)
        yield process, base
    finally:
        if process.poll() is None:
            stop_process(process)


class PrivateServer:
    """A Kafka or Cassandra of one test's own, on spare ports in a temporary folder, for
    tests that stop, kill or restart a server: the shared stack is never disturbed.

    ``settings`` points the pipeline at this server (pass it to the code under test);
    ``stop()``, ``kill()`` and ``start()`` act on this server only.
    """

    def __init__(self, name: str, config: object):
        from local_stack.stack import servers

        self.name = name
        self.config = config
        self.server = servers(config)[name]  # type: ignore[arg-type]

    @property
    def settings(self) -> Settings:
        return self.config.settings  # type: ignore[attr-defined]

    def start(self) -> None:
        from local_stack.stack import find_java

        self.server.start(find_java())

    def stop(self) -> None:
        self.server.stop()

    def kill(self) -> None:
        self.server.kill()

    def pause(self) -> None:
        """SIGSTOP: the server keeps its sockets but answers nothing (a broker that hangs:
        requests already sent stay in flight until the client gives up on them)."""
        os.kill(self._pid(), signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self._pid(), signal.SIGCONT)

    def _pid(self) -> int:
        pid = self.server.pid()
        assert pid is not None, f"the private {self.name} does not run"
        return pid


@pytest.fixture
def private_kafka(tmp_path, settings: Settings) -> Iterator[PrivateServer]:
    from local_stack.stack import StackConfig
    from orderlog.schema import create_topic

    kafka_port, controller_port = free_ports(2)
    config = StackConfig.from_settings(
        settings.replace(
            kafka_bootstrap_servers=f"127.0.0.1:{kafka_port}",
            stack_dir=str(tmp_path / "private-stack"),
            stack_kafka_controller_port=controller_port,
        )
    )
    server = PrivateServer("kafka", config)
    server.start()
    create_topic(server.settings)
    yield server
    server.stop()


@pytest.fixture
def private_cassandra(tmp_path, settings: Settings) -> Iterator[PrivateServer]:
    from local_stack.stack import StackConfig
    from orderlog.schema import apply_cql

    native, storage, jmx = free_ports(3)
    config = StackConfig.from_settings(
        settings.replace(
            cassandra_port=native,
            stack_dir=str(tmp_path / "private-stack"),
            stack_cassandra_storage_port=storage,
            stack_cassandra_jmx_port=jmx,
            stack_cassandra_heap="768m",
        )
    )
    server = PrivateServer("cassandra", config)
    server.start()
    apply_cql(server.settings)
    yield server
    server.stop()
