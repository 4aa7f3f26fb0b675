"""The whole path through secure servers (issue 17): the secure local stack (Kafka only on
SASL_SSL with SCRAM-SHA-512, Cassandra only on TLS with PasswordAuthenticator), and every
part of the pipeline configured for it: generator -> ingest API (gunicorn) -> Kafka ->
streaming job (spark-submit) -> Cassandra -> aggregate (spark-submit) -> viewer, with the
secrets given as files (ORDERLOG_*_FILE), as Docker and Kubernetes mount them.

The secure stack is started when it does not answer and stopped at the end if this run
started it (unless ORDERLOG_KEEP_STACK), like the plain one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from local_stack import supervisor
from local_stack.certificates import make_certificates
from local_stack.secure import (
    create_application_role,
    secure_child_environment,
    secure_environment,
    secure_settings,
)
from local_stack.stack import StackConfig, down, servers, up
from local_stack.supervisor import free_ports
from orderlog.config import Settings, load_settings, secret_variables
from orderlog.kafka_admin import brokers_answer
from orderlog.kafka_security import kafka_python_client, kafka_python_security
from orderlog.schema import apply_cql, topic_configs
from tests.conftest import empty_keyspace, pipeline_services
from tools import pipeline
from tools import replay as replay_cli

pytestmark = [pytest.mark.integration, pytest.mark.secure]

DAY = date(2025, 5, 31)
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def secure_stack(settings: Settings) -> Iterator[Settings]:
    """The secure local stack, up and answering, the application's role made and the
    schema applied on the test keyspace; the settings that reach it."""
    secure = secure_settings(settings)
    config = dataclasses.replace(StackConfig.from_settings(secure), secure=True)
    started = [name for name, server in servers(config).items() if not server.answers()]
    if started:
        up(config, started, log=lambda line: print(f"[secure stack] {line}"))
    create_application_role(secure)
    apply_cql(secure)
    yield secure
    if started and not os.environ.get("ORDERLOG_KEEP_STACK"):
        down(config, started, log=lambda line: print(f"[secure stack] {line}"))


@pytest.fixture
def secure_environ(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """This process's environment pointed at the secure stack, the secrets as files: the
    processes the test starts read the same files (orderlog.config.child_environment)."""
    for variable in secret_variables():
        monkeypatch.delenv(variable, raising=False)
    for name, value in secure_environment(settings).items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def secure_topic(secure_stack: Settings) -> Iterator[str]:
    from kafka.admin import KafkaAdminClient, NewTopic

    name = f"test-secure-{uuid.uuid4().hex[:12]}"
    admin = KafkaAdminClient(**kafka_python_client(secure_stack.kafka), client_id="secure-test")
    admin.create_topics([NewTopic(name, num_partitions=secure_stack.kafka.topic_partitions, replication_factor=1,
                                  topic_configs=topic_configs(secure_stack))])
    yield name
    try:
        admin.delete_topics([name])
    finally:
        admin.close()


def test_the_secure_stack_refuses_clients_without_tls_or_credentials(secure_stack):
    kafka = secure_stack.kafka
    assert brokers_answer(kafka.bootstrap_list, 3.0, security=kafka_python_security(kafka)) == (True, "ok")
    assert brokers_answer(kafka.bootstrap_list, 3.0)[0] is False  # PLAINTEXT
    from orderlog.cassandra_session import CassandraUnavailable, connect_checked, shutdown

    shutdown(connect_checked(secure_stack))
    for without in (secure_stack.replace(cassandra_ssl=False),
                    secure_stack.replace(cassandra_username="", cassandra_password="")):
        with pytest.raises(CassandraUnavailable):
            connect_checked(without)


@pytest.fixture
def secure_pipeline(secure_stack, secure_environ, secure_topic, tmp_path) -> Iterator[tuple[Settings, dict]]:
    """streaming, ingest and viewer on the secure stack, on a keyspace and topic of their own."""
    ingest_port, viewer_port = free_ports(2)
    private = secure_stack.replace(
        cassandra_keyspace=f"{secure_stack.cassandra.keyspace}_secure", kafka_topic=secure_topic,
        stream_checkpoint_location=str(tmp_path / "checkpoint"), ingest_port=ingest_port, viewer_port=viewer_port,
        paths_var=str(tmp_path / "var"), ingest_workers=1, viewer_workers=1, viewer_cache_seconds=0,
    )
    empty_keyspace(private)
    with pipeline_services(private, tmp_path / "logs") as processes:
        yield private, processes


def test_the_whole_path_runs_through_the_secure_servers(secure_pipeline, tmp_path, capsys):
    settings, processes = secure_pipeline
    # The children got the secrets' files, not the secrets.
    env = pipeline.child_environment(settings)
    assert "ORDERLOG_KAFKA_SASL_PASSWORD" not in env and "ORDERLOG_CASSANDRA_PASSWORD" not in env
    truth_file = tmp_path / "truth.json"
    code = replay_cli.main([
        DAY.isoformat(), "--days", "1", "--users", "60", "--orders", "400", "--seed", "17", "--rate", "0",
        "--quiet", "--url", pipeline.ingest_url(settings), "--truth", str(truth_file),
    ])
    assert code == 0
    assert "sent 400, acknowledged 400" in capsys.readouterr().out
    truth = json.loads(truth_file.read_text())

    streaming = processes["streaming"]
    try:
        counts = pipeline.wait_for_raw_orders(settings, truth, timeout=600,
                                              alive=lambda: supervisor.running(streaming))
    except pipeline.PipelineError as exc:
        pytest.fail(f"{exc}\n{supervisor.tail(streaming.log, 60)}")
    assert counts == {d: v["total"] for d, v in truth["daily"].items()}

    pipeline.run_aggregate(settings, DAY, DAY, tmp_path / "aggregate.log")
    assert pipeline.check_viewer(pipeline.viewer_url(settings), truth, sample_users=20) == []


def test_secure_child_environment_names_files_not_secrets(settings):
    env = secure_child_environment(settings)
    assert env["ORDERLOG_KAFKA_SASL_PASSWORD_FILE"].endswith("kafka-password")
    assert not {v for v in secret_variables() if env.get(v)}


# --- refused: a wrong password or an untrusted certificate ends each part with one line ----


@pytest.fixture(scope="session")
def untrusted_ca(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The CA of another stack: the secure servers' certificates are not signed by it."""
    return str(make_certificates(tmp_path_factory.mktemp("other-ca"), common_name="someone-else").ca_pem)


@pytest.fixture(scope="session")
def wrong_password(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("wrong") / "password"
    path.write_text("not-the-password\n")
    return str(path)


# (the variable made wrong, a pattern of the one line that must name it). librdkafka words
# it in its own way; our other clients name the settings to check.
KAFKA_REFUSALS = {
    "wrong password": ("ORDERLOG_KAFKA_SASL_PASSWORD_FILE",
                       r"refused the SASL login of ORDERLOG_KAFKA_SASL_USERNAME='orderlog'|SASL authentication error: "
                       r"Authentication failed during authentication due to invalid credentials"),
    "untrusted CA": ("ORDERLOG_KAFKA_SSL_CA_FILE",
                     r"the TLS certificate of Kafka at \S+ is not trusted|SSL handshake failed: .*certificate verify "
                     r"failed"),
}
CASSANDRA_REFUSALS = {
    "wrong password": ("ORDERLOG_CASSANDRA_PASSWORD_FILE", r"refused the login of ORDERLOG_CASSANDRA_USERNAME="
                       r"'orderlog' \(Provided username orderlog and/or password are incorrect\)"),
    "untrusted CA": ("ORDERLOG_CASSANDRA_SSL_CA_FILE", r"the TLS certificate of Cassandra at \S+ is not trusted"),
}


def _refused_environment(variable: str, wrong_password: str, untrusted_ca: str) -> dict[str, str]:
    return {variable: untrusted_ca if variable.endswith("CA_FILE") else wrong_password}


def _one_clear_line(output: str, expected: str) -> None:
    """The output names the refusal in one line, and holds no traceback of any language."""
    assert "Traceback" not in output and not re.search(r"^\s+at [\w$.]+\(", output, re.MULTILINE), output[-3000:]
    lines = [line for line in output.splitlines() if re.search(expected, line)]
    assert len(lines) == 1, output[-3000:]


@pytest.mark.parametrize("client", ["confluent-kafka", "kafka-python"])
@pytest.mark.parametrize("case", list(KAFKA_REFUSALS))
def test_ingest_readiness_names_a_kafka_refusal(secure_stack, secure_environ, monkeypatch, wrong_password,
                                                untrusted_ca, client, case):
    from ingest_api import create_app

    variable, expected = KAFKA_REFUSALS[case]
    for name, value in {**_refused_environment(variable, wrong_password, untrusted_ca),
                        "ORDERLOG_KAFKA_CLIENT": client}.items():
        monkeypatch.setenv(name, value)
    started = time.monotonic()
    response = create_app(load_settings()).test_client().get("/readyz")
    assert time.monotonic() - started < 30
    assert response.status_code == 503
    assert re.search(expected, response.json["error"]), response.json


@pytest.mark.parametrize("case", list(CASSANDRA_REFUSALS))
def test_viewer_readiness_names_a_cassandra_refusal(secure_stack, secure_environ, monkeypatch, wrong_password,
                                                    untrusted_ca, case):
    from viewer import create_app

    variable, expected = CASSANDRA_REFUSALS[case]
    for name, value in _refused_environment(variable, wrong_password, untrusted_ca).items():
        monkeypatch.setenv(name, value)
    response = create_app(load_settings()).test_client().get("/readyz")
    assert response.status_code == 503
    assert re.search(expected, response.json["error"]), response.json


@pytest.mark.parametrize("case", [*(f"kafka {c}" for c in KAFKA_REFUSALS), *(f"cassandra {c}" for c in
                                                                             CASSANDRA_REFUSALS)])
def test_schema_apply_names_a_refusal_in_one_line(secure_stack, secure_environ, monkeypatch, wrong_password,
                                                  untrusted_ca, case):
    server, _, refusal = case.partition(" ")
    variable, expected = (KAFKA_REFUSALS if server == "kafka" else CASSANDRA_REFUSALS)[refusal]
    env = {**os.environ, **_refused_environment(variable, wrong_password, untrusted_ca)}
    done = subprocess.run([sys.executable, "-m", "orderlog.schema", "apply"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    _one_clear_line(done.stdout + done.stderr, expected)
    assert done.stderr.strip().splitlines()[-1].startswith("python -m orderlog.schema: error: ")


@pytest.mark.parametrize("case", list(KAFKA_REFUSALS))
def test_the_streaming_job_ends_with_one_line_naming_a_kafka_refusal(secure_stack, secure_environ, secure_topic,
                                                                    wrong_password, untrusted_ca, tmp_path, case):
    variable, expected = KAFKA_REFUSALS[case]
    env = {**os.environ, **_refused_environment(variable, wrong_password, untrusted_ca),
           "ORDERLOG_KAFKA_TOPIC": secure_topic, "ORDERLOG_CHECKPOINT_LOCATION": str(tmp_path / "checkpoint"),
           "ORDERLOG_STREAM_METRICS_PORT": "0"}
    done = subprocess.run(["./spark-submit.sh", "streaming"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    _one_clear_line(done.stdout + done.stderr, expected)
    assert [line for line in (done.stdout + done.stderr).splitlines()
            if line.startswith("streaming: error: ") and re.search(expected, line)]


@pytest.mark.parametrize("case", list(CASSANDRA_REFUSALS))
def test_the_aggregate_ends_with_one_line_naming_a_cassandra_refusal(secure_stack, secure_environ, wrong_password,
                                                                    untrusted_ca, case):
    variable, expected = CASSANDRA_REFUSALS[case]
    env = {**os.environ, **_refused_environment(variable, wrong_password, untrusted_ca)}
    done = subprocess.run(["./spark-submit.sh", "aggregate", "--date", DAY.isoformat()], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    _one_clear_line(done.stdout + done.stderr, expected)
