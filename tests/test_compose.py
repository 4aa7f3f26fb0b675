"""docker-compose.yml and the Dockerfile, validated without a Docker engine: Debian's
``docker-compose config`` parses and checks the file (as ``make compose-check`` does),
then the resolved configuration is checked for what the pipeline needs: every service,
healthchecks, a start ordered by them, configuration through ORDERLOG_* only."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

from orderlog.config import ENV_PREFIX, ConfigError, check_exposure, declarations, load_settings

# Needs the docker-compose tool (make system-deps / make compose-check install it).
pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
LONG_RUNNING = {"kafka", "cassandra", "spark-master", "spark-worker", "ingest", "streaming", "viewer"}
SPARK = {"spark-master", "spark-worker"}
# How the jobs' drivers start in their containers: spark-submit.sh, telling the executors on
# the worker the container's address.
DRIVER = "exec ./spark-submit.sh --conf spark.driver.host=$(hostname -i) --conf spark.driver.bindAddress=0.0.0.0"
JOBS = {"aggregate", "replay"}


def compose_config(path: Path = COMPOSE, **env: str) -> subprocess.CompletedProcess:
    tool = shutil.which("docker-compose")
    assert tool, "docker-compose is not installed: run `make compose-check` (apt-get install docker-compose)"
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(ENV_PREFIX) and k not in ("KAFKA_VERSION", "INGEST_API_TOKEN", "VIEWER_USER",
                                                           "VIEWER_PASSWORD")}
    return subprocess.run(
        [tool, "-f", str(path), "config"], cwd=path.parent, env={**clean, **env},
        capture_output=True, text=True, timeout=120,
    )


def volume_mount(volume: str | dict) -> tuple[str, str]:
    """(target, source) of a volume in the short form (docker-compose 1.x prints
    ``source:target:rw``) or the long form (compose v2)."""
    if isinstance(volume, dict):
        return volume["target"], volume["source"]
    source, target = volume.split(":")[:2]
    return target, source


def published_port(port: str | dict) -> tuple[str | None, int]:
    """(host ip, container port) of a short (``127.0.0.1:8080:8080/tcp``) or long port."""
    if isinstance(port, dict):
        return port.get("host_ip"), int(port["target"])
    parts = port.split("/")[0].split(":")
    return (parts[0] if len(parts) == 3 else None), int(parts[-1])


@pytest.fixture(scope="module")
def config() -> dict:
    result = compose_config()
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_docker_compose_config_accepts_the_file(config):
    assert set(config["services"]) == LONG_RUNNING | {"schema"} | JOBS
    assert set(config["volumes"]) == {"kafka-data", "cassandra-data", "checkpoints", "replay-output"}


def test_the_validator_is_real_it_refuses_a_broken_file(tmp_path):
    broken = COMPOSE.read_text().replace("condition: service_completed_successfully", "condition: done", 1)
    (tmp_path / "docker-compose.yml").write_text(broken)
    result = compose_config(tmp_path / "docker-compose.yml")
    assert result.returncode != 0
    assert "condition" in result.stderr and "done" in result.stderr


def test_every_long_running_service_has_a_healthcheck(config):
    for name in LONG_RUNNING:
        check = config["services"][name].get("healthcheck")
        assert check and check["test"][0] in ("CMD", "CMD-SHELL"), name
    services = config["services"]
    kafka_check = services["kafka"]["healthcheck"]["test"][1]
    assert "kafka-broker-api-versions.sh --bootstrap-server localhost:9092" in kafka_check
    assert "cqlsh -e" in services["cassandra"]["healthcheck"]["test"][1]
    assert "http://127.0.0.1:8080/readyz" in services["ingest"]["healthcheck"]["test"][-1]
    assert "http://127.0.0.1:8081/readyz" in services["viewer"]["healthcheck"]["test"][-1]
    assert "http://127.0.0.1:4040/api/v1/applications" in services["streaming"]["healthcheck"]["test"][-1]


def test_the_start_is_ordered_by_healthchecks(config):
    services = config["services"]

    def after(name: str) -> dict[str, str]:
        return {dep: spec["condition"] for dep, spec in services[name].get("depends_on", {}).items()}

    assert after("schema") == {"kafka": "service_healthy", "cassandra": "service_healthy"}
    for name in ("ingest", "viewer"):
        assert after(name) == {"schema": "service_completed_successfully"}, name
    for name in ("streaming", "aggregate"):  # the Spark jobs also wait for a worker
        assert after(name) == {"schema": "service_completed_successfully", "spark-worker": "service_healthy"}, name
    assert after("spark-worker") == {"spark-master": "service_healthy"}
    assert after("replay") == {"ingest": "service_healthy"}
    assert services["schema"]["restart"] == "no"  # one-shot
    assert services["schema"]["command"] == ["python", "-m", "orderlog.schema", "apply"]


def test_the_services_run_the_projects_commands(config):
    services = config["services"]
    assert services["ingest"]["command"] == [
        "gunicorn", "-c", "ingest_api/gunicorn.conf.py", "ingest_api:create_app()"
    ]
    assert services["viewer"]["command"] == ["gunicorn", "-c", "viewer/gunicorn.conf.py", "viewer:create_app()"]
    # Compose prints a command's $ escaped as $$.
    assert services["streaming"]["command"] == ["sh", "-c", f"{DRIVER} streaming".replace("$", "$$")]
    assert services["aggregate"]["entrypoint"] == ["sh", "-c", f'{DRIVER} aggregate "$@"'.replace("$", "$$"),
                                                   "aggregate"]
    assert services["replay"]["entrypoint"] == ["python", "-m", "tools.replay", "--url", "http://ingest:8080"]
    for path in ("spark-submit.sh", "jobs/streaming.py", "jobs/aggregate.py", "ingest_api/gunicorn.conf.py",
                 "viewer/gunicorn.conf.py", "tools/replay.py", "orderlog/schema.py"):
        assert (ROOT / path).is_file(), path


def test_aggregate_and_replay_run_only_on_demand(config):
    for name in JOBS:
        assert config["services"][name]["profiles"] == ["jobs"]
    for name in LONG_RUNNING | {"schema"}:
        assert "profiles" not in config["services"][name]


def test_configuration_is_the_orderlog_variables_and_flows_from_the_shell(config):
    fields = {declaration.env for _, _, declaration, _ in declarations()}
    ours = {n: s for n, s in config["services"].items() if n not in {"kafka", "cassandra"} | SPARK}
    for name, service in ours.items():
        env = service["environment"]
        assert set(env) <= fields, (name, set(env) - fields)  # no misspelt variable
        assert env["ORDERLOG_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
        assert env["ORDERLOG_CASSANDRA_HOSTS"] == "cassandra"
        assert env["ORDERLOG_BUSINESS_TIMEZONE"] == "Asia/Tokyo"
    assert ours["ingest"]["environment"]["ORDERLOG_INGEST_HOST"] == "0.0.0.0"
    assert ours["viewer"]["environment"]["ORDERLOG_VIEWER_HOST"] == "0.0.0.0"

    result = compose_config(ORDERLOG_BUSINESS_TIMEZONE="Europe/Paris", ORDERLOG_CASSANDRA_KEYSPACE="shop2")
    assert result.returncode == 0, result.stderr
    overridden = yaml.safe_load(result.stdout)["services"]
    for name in ours:
        assert overridden[name]["environment"]["ORDERLOG_BUSINESS_TIMEZONE"] == "Europe/Paris"
        assert overridden[name]["environment"]["ORDERLOG_CASSANDRA_KEYSPACE"] == "shop2"


def _refusal(service: dict, server: str) -> str | None:
    """What the app of a resolved service says when it starts: None, or why it refuses."""
    env = service["environment"]
    try:
        check_exposure(load_settings(env), server, [env[f"ORDERLOG_{server.upper()}_HOST"]])
    except ConfigError as exc:
        return str(exc)
    return None


def test_without_credentials_the_exposed_apps_refuse_to_start(config):
    services = config["services"]
    for server in ("ingest", "viewer"):
        env = services[server]["environment"]
        assert env["ORDERLOG_ALLOW_UNAUTHENTICATED"] == "0"
        assert "ORDERLOG_ALLOW_UNAUTHENTICATED=1" in (_refusal(services[server], server) or "")
    assert services["ingest"]["environment"]["ORDERLOG_INGEST_API_TOKEN"] == ""
    assert services["viewer"]["environment"]["ORDERLOG_VIEWER_PASSWORD"] == ""


def test_the_credentials_flow_from_the_env_file(tmp_path):
    (tmp_path / "docker-compose.yml").write_text(COMPOSE.read_text())
    example = (ROOT / ".env.example").read_text()
    # every variable the example names is a setting, or a publish address of the compose file
    named = set(re.findall(r"^#? ?([A-Z_]+)=", example, re.M))
    settings = {declaration.env for _, _, declaration, _ in declarations()}
    assert named - settings == {"ORDERLOG_INGEST_PUBLISH", "ORDERLOG_VIEWER_PUBLISH"}
    assert {"ORDERLOG_INGEST_API_TOKEN", "ORDERLOG_VIEWER_USER", "ORDERLOG_VIEWER_PASSWORD"} <= named
    filled = (example.replace("ORDERLOG_INGEST_API_TOKEN=\n", "ORDERLOG_INGEST_API_TOKEN=t0ken-from-env\n")
              .replace("ORDERLOG_VIEWER_USER=\n", "ORDERLOG_VIEWER_USER=analyst\n")
              .replace("ORDERLOG_VIEWER_PASSWORD=\n", "ORDERLOG_VIEWER_PASSWORD=s3cret from env\n"))
    (tmp_path / ".env").write_text(filled)
    result = compose_config(tmp_path / "docker-compose.yml")
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    for name in ("ingest", "viewer", "replay"):
        env = services[name]["environment"]
        assert env["ORDERLOG_INGEST_API_TOKEN"] == "t0ken-from-env", name
        assert (env["ORDERLOG_VIEWER_USER"], env["ORDERLOG_VIEWER_PASSWORD"]) == ("analyst", "s3cret from env")
    assert _refusal(services["ingest"], "ingest") is None
    assert _refusal(services["viewer"], "viewer") is None
    # the explicit override, from the shell this time
    result = compose_config(ORDERLOG_ALLOW_UNAUTHENTICATED="1")
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert _refusal(services["viewer"], "viewer") is None


def test_secrets_stay_out_of_git_and_the_image():
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()
    assert ".env" in (ROOT / ".dockerignore").read_text().splitlines()


def test_data_and_the_streaming_checkpoint_live_on_named_volumes(config):
    services = config["services"]

    def mounts(name: str) -> dict[str, str]:
        return dict(volume_mount(v) for v in services[name].get("volumes", []))

    assert mounts("kafka") == {"/var/lib/kafka/data": "kafka-data"}
    assert services["kafka"]["environment"]["KAFKA_LOG_DIRS"] == "/var/lib/kafka/data"
    assert mounts("cassandra") == {"/var/lib/cassandra": "cassandra-data"}
    checkpoint = services["streaming"]["environment"]["ORDERLOG_CHECKPOINT_LOCATION"]
    assert any(checkpoint.startswith(target + "/") for target, source in mounts("streaming").items()
               if source == "checkpoints")


def test_kafka_is_a_single_kraft_node_and_the_versions_match_the_local_stack(config):
    pom = (ROOT / "local_stack/jvm/pom.xml").read_text()
    kafka_version = re.search(r"<kafka.version>([^<]+)<", pom).group(1)
    cassandra_version = re.search(r"<cassandra.version>([^<]+)<", pom).group(1)
    kafka = config["services"]["kafka"]
    assert kafka["image"] == f"apache/kafka:{kafka_version}"
    assert config["services"]["cassandra"]["image"] == f"cassandra:{cassandra_version}"
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka:9093"
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", env["CLUSTER_ID"])  # a base64 UUID, as KRaft requires
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"


def test_published_ports_are_on_localhost_only(config):
    published = {}
    for name, service in config["services"].items():
        for port in service.get("ports", []):
            host_ip, target = published_port(port)
            published[(name, target)] = host_ip
    assert published == {
        ("kafka", 29092): "127.0.0.1", ("cassandra", 9042): "127.0.0.1",
        ("ingest", 8080): "127.0.0.1", ("viewer", 8081): "127.0.0.1",
    }


def test_the_dockerfile_builds_our_services_with_java_and_the_resolved_jars_as_non_root():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim", text, re.M)
    assert "openjdk-17-jdk-headless maven make" in text  # build stage: make runtime resolves the jars
    assert re.search(r"^RUN make runtime", text, re.M)  # the runtime packages only, no test tools
    assert "openjdk-17-jre-headless" in text  # runtime stage: a Java 17 runtime for Spark
    assert "COPY --from=build /app/build/jars/spark /app/build/jars/spark" in text
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1] == "orderlog"
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", "build", "var"} <= ignored


def test_the_jobs_run_on_a_spark_master_and_worker_of_the_pinned_spark(config):
    services = config["services"]
    spark_version = version("pyspark")
    assert services["spark-master"]["image"] == f"apache/spark:{spark_version}"
    assert services["spark-master"]["command"][:2] == ["/opt/spark/bin/spark-class",
                                                       "org.apache.spark.deploy.master.Master"]
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(rf"^ARG SPARK_IMAGE=apache/spark:{re.escape(spark_version)}$", text, re.M)
    # The worker: that image's Spark, with the driver's Python and its pandas and pyarrow.
    assert services["spark-worker"]["build"]["target"] == "spark-worker"
    assert "FROM app AS spark-worker" in text and "COPY --from=spark-dist /opt/spark /opt/spark" in text
    assert "pandas" in (ROOT / "requirements.txt").read_text() and "pyarrow" in (ROOT / "requirements.txt").read_text()
    for name in ("schema", "ingest", "streaming", "viewer", "aggregate", "replay"):
        assert services[name]["build"]["target"] == "app", name
        assert services[name]["environment"]["ORDERLOG_SPARK_MASTER"] == "spark://spark-master:7077", name
