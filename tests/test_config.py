"""The one configuration: every setting declared once, read only by orderlog.config, loaded
once, shown with secrets masked, and a bad value one line and exit 2 at every entrypoint."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import hypothesis
import pytest
from hypothesis import given
from hypothesis import strategies as st

from orderlog.config import (
    DEPRECATED_ALIASES,
    MASK,
    ConfigError,
    Settings,
    child_environment,
    declarations,
    effective_lines,
    load_settings,
    markdown_table,
)

ROOT = Path(__file__).resolve().parent.parent
VARIABLES = [declaration.env for _, _, declaration, _ in declarations()]


def test_every_setting_is_declared_once_with_a_valid_default_and_a_description():
    assert len(VARIABLES) == len(set(VARIABLES))
    assert all(name.startswith("ORDERLOG_") for name in VARIABLES)
    for section, name, declaration, default in declarations():
        assert declaration.help and "\n" not in declaration.help, declaration.env
        assert declaration.rule.accepts(default), declaration.env
        assert getattr(getattr(Settings(), section), name) == default


def test_replace_takes_section_and_field_and_checks_like_loading():
    settings = Settings().replace(cassandra_port=19042, kafka_topic="t", stream_trigger="2 seconds")
    assert (settings.cassandra.port, settings.kafka.topic, settings.stream.trigger) == (19042, "t", "2 seconds")
    with pytest.raises(ConfigError, match=re.escape("ORDERLOG_CASSANDRA_PORT='0': expected a whole number")):
        Settings().replace(cassandra_port=0)
    with pytest.raises(TypeError, match="no setting 'cassandra_prot'"):
        Settings().replace(cassandra_prot=1)


def test_the_same_environment_is_loaded_once():
    env = {"ORDERLOG_KAFKA_TOPIC": "once"}
    assert load_settings(environ=env) is load_settings(environ=dict(env))
    assert load_settings(environ={"ORDERLOG_KAFKA_TOPIC": "twice"}).kafka.topic == "twice"


def test_a_deprecated_name_still_works_and_warns_once_naming_the_new_one(capsys):
    import orderlog.config as config

    config._warned.discard("VIEWER_CACHE_SECONDS")
    env = {"VIEWER_CACHE_SECONDS": "0"}
    assert load_settings(environ=env).viewer.cache_seconds == 0
    assert load_settings(environ={**env, "ORDERLOG_KAFKA_TOPIC": "other"}).viewer.cache_seconds == 0
    assert capsys.readouterr().err.splitlines() == [
        "orderlog: warning: VIEWER_CACHE_SECONDS is deprecated: use ORDERLOG_VIEWER_CACHE_SECONDS"
    ]
    assert load_settings(environ={"INGEST_API_TOKEN": "t", "ORDERLOG_INGEST_API_TOKEN": "t"}).ingest.api_token == "t"


def test_a_deprecated_name_and_its_new_name_that_differ_are_an_error_naming_both():
    with pytest.raises(ConfigError) as error:
        load_settings(environ={"INGEST_WORKERS": "3", "ORDERLOG_INGEST_WORKERS": "4"})
    assert str(error.value) == (
        "ORDERLOG_INGEST_WORKERS='4': expected the value of INGEST_WORKERS, its deprecated name, which is set too "
        "and differs (set only ORDERLOG_INGEST_WORKERS)"
    )
    with pytest.raises(ConfigError) as error:  # a secret is not repeated in the message
        load_settings(environ={"VIEWER_PASSWORD": "a", "ORDERLOG_VIEWER_PASSWORD": "b", "VIEWER_USER": "u"})
    assert str(error.value).startswith(f"ORDERLOG_VIEWER_PASSWORD='{MASK}': expected the value of VIEWER_PASSWORD")


def test_viewer_bind_sets_host_and_port_and_no_longer_overrides_them():
    settings = load_settings(environ={"VIEWER_BIND": "0.0.0.0:9000"})
    assert (settings.viewer.host, settings.viewer.port) == ("0.0.0.0", 9000)
    with pytest.raises(ConfigError, match="^ORDERLOG_VIEWER_PORT='8081': expected the value of VIEWER_BIND"):
        load_settings(environ={"VIEWER_BIND": "0.0.0.0:9000", "ORDERLOG_VIEWER_PORT": "8081"})
    with pytest.raises(ConfigError, match=re.escape("VIEWER_BIND='9000': expected host:port")):
        load_settings(environ={"VIEWER_BIND": "9000"})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ORDERLOG_CASSANDRA_REPLICATION": "{'class': 'SimpleStrategy'}; DROP KEYSPACE x"},
         "ORDERLOG_CASSANDRA_REPLICATION=\"{'class': 'SimpleStrategy'}; DROP KEYSPACE x\": expected a CQL "
         "replication map such as {'class': 'SimpleStrategy', 'replication_factor': 1}"),
        ({"ORDERLOG_CASSANDRA_KEYSPACE": "キー"},
         "ORDERLOG_CASSANDRA_KEYSPACE='キー': expected a keyspace name: letters, digits and underscores only, "
         "at most 48"),
        ({"ORDERLOG_KAFKA_BOOTSTRAP_SERVERS": "kafka"},
         "ORDERLOG_KAFKA_BOOTSTRAP_SERVERS='kafka': expected host:port pairs, comma-separated"),
        ({"ORDERLOG_STREAM_TRIGGER": "soon"},
         "ORDERLOG_STREAM_TRIGGER='soon': expected an interval such as '1 second' or '500 milliseconds'"),
        ({"ORDERLOG_STREAM_STARTING_OFFSETS": "[1]"},
         "ORDERLOG_STREAM_STARTING_OFFSETS='[1]': expected earliest, latest or Kafka's JSON form of offsets"),
        ({"ORDERLOG_VIEWER_CACHE_SECONDS": "-1"},
         "ORDERLOG_VIEWER_CACHE_SECONDS='-1': expected a number of seconds of at least 0"),
        ({"ORDERLOG_KAFKA_CLIENT": "librdkafka"},
         "ORDERLOG_KAFKA_CLIENT='librdkafka': expected one of confluent-kafka, kafka-python"),
        ({"ORDERLOG_INGEST_LOG_LEVEL": "loud"},
         "ORDERLOG_INGEST_LOG_LEVEL='loud': expected one of debug, info, warning, error, critical"),
        ({"ORDERLOG_STACK_KAFKA_HEAP": "lots"}, "ORDERLOG_STACK_KAFKA_HEAP='lots': expected a JVM heap size such as "
         "512m or 1g"),
        ({"ORDERLOG_VIEWER_PASSWORD": "s3cret"},
         "ORDERLOG_VIEWER_PASSWORD='********': expected ORDERLOG_VIEWER_USER too (basic auth needs both, or neither)"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable_and_what_it_expects(env, message):
    with pytest.raises(ConfigError) as error:
        load_settings(environ=env)
    assert str(error.value) == message


@hypothesis.settings(max_examples=500, deadline=None)
@given(st.dictionaries(st.sampled_from(VARIABLES), st.text(max_size=30), max_size=3))
def test_any_value_of_any_variable_is_a_setting_or_one_line_naming_a_variable(env):
    try:
        loaded = load_settings(environ=env)
    except ConfigError as exc:
        message = str(exc)
        assert "\n" not in message and message.split("=", 1)[0] in VARIABLES
    else:
        assert isinstance(loaded, Settings)


def test_python_m_orderlog_config_prints_the_effective_configuration_with_secrets_masked():
    env = {"ORDERLOG_CASSANDRA_PASSWORD": "hunter2", "ORDERLOG_CASSANDRA_USERNAME": "app",
           "ORDERLOG_KAFKA_TOPIC": "shop-orders", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-m", "orderlog.config"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert f"ORDERLOG_CASSANDRA_PASSWORD={MASK}  # environment" in lines
    assert "ORDERLOG_CASSANDRA_USERNAME=app  # environment" in lines
    assert "ORDERLOG_KAFKA_TOPIC=shop-orders  # environment" in lines
    assert "ORDERLOG_CASSANDRA_PORT=9042  # default" in lines
    assert "hunter2" not in result.stdout
    assert {line.split("=", 1)[0] for line in lines if not line.startswith("#")} == set(VARIABLES)
    assert lines == effective_lines(load_settings(environ=env), env)


def test_the_readme_table_is_the_declarations():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert markdown_table() in readme


def test_a_child_process_gets_exactly_these_settings():
    settings = Settings().replace(kafka_topic="child", viewer_cache_seconds=0, ingest_api_token="t0k")
    env = child_environment(settings, {"PATH": "/bin", "VIEWER_USER": "old", "INGEST_WORKERS": "9"})
    assert env["PATH"] == "/bin" and not set(DEPRECATED_ALIASES) & set(env)
    assert load_settings(environ=env) == settings


# Variables code may read from the environment outside orderlog/config.py: none is a
# setting of the pipeline, each is another program's convention.
NOT_SETTINGS = {
    "JAVA_HOME": "which Java the local stack runs (the JDK's own convention)",
    "PYSPARK_PYTHON": "which Python Spark's workers run (Spark's own variable)",
    "SPARK_LOCAL_IP": "the address Spark binds (Spark's own variable): loopback unless set",
    "PROMETHEUS_MULTIPROC_DIR": "where gunicorn's workers keep their metrics (prometheus-client's own variable), "
                                "set by orderlog/metrics.py for each server start",
}


def _python_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True, check=True)
    return [ROOT / name for name in listed.stdout.split()
            if not name.startswith("tests/") and name != "orderlog/config.py"]


def _environment_reads(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, what) of every use of os.environ / os.getenv / environ imported from os that
    is not a read of one NOT_SETTINGS variable by name."""
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "os":
            found += [(node.lineno, f"from os import {a.name}") for a in node.names if a.name in ("environ", "getenv")]
        if not (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "os"
                and node.attr in ("environ", "getenv", "environb", "putenv")):
            continue
        name = _name_read(node, parents)
        if name not in NOT_SETTINGS:
            found.append((node.lineno, name or f"os.{node.attr} as a whole"))
    return found


def _name_read(node: ast.Attribute, parents: dict) -> str | None:
    """The variable named by os.environ[...] / .get(...) / .setdefault(...) / os.getenv(...)."""
    parent = parents.get(node)
    if node.attr == "getenv" and isinstance(parent, ast.Call) and parent.args:
        return _constant(parent.args[0])
    if isinstance(parent, ast.Subscript):
        return _constant(parent.slice)
    if isinstance(parent, ast.Attribute) and parent.attr in ("get", "setdefault"):
        call = parents.get(parent)
        if isinstance(call, ast.Call) and call.args:
            return _constant(call.args[0])
    return None


def _constant(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def test_only_orderlog_config_reads_the_environment_for_a_setting():
    offenders = [f"{path.relative_to(ROOT)}:{line}: {what}" for path in _python_files()
                 for line, what in _environment_reads(ast.parse(path.read_text(encoding="utf-8")))]
    assert offenders == []
    # Shell and make files pass ORDERLOG_* settings through but never read them.
    for name in ("spark-submit.sh", "Makefile"):
        assert not re.search(r"\$\{?ORDERLOG_", (ROOT / name).read_text()), name


def test_the_environment_scan_finds_what_it_must():
    code = (
        "import os\nfrom os import environ\n"
        "a = os.environ.get('VIEWER_USER')\nb = os.environ['ORDERLOG_X']\nc = os.getenv('INGEST_API_TOKEN')\n"
        "d = {**os.environ}\ne = os.environ.get('JAVA_HOME')\n"
    )
    assert sorted(line for line, _ in _environment_reads(ast.parse(code))) == [2, 3, 4, 5, 6]


# Every command a user or a container runs, with a value no setting accepts.
ENTRYPOINTS = {
    "python -m orderlog.config": [sys.executable, "-m", "orderlog.config"],
    "python -m orderlog.schema": [sys.executable, "-m", "orderlog.schema", "cql"],
    "python -m local_stack": [sys.executable, "-m", "local_stack", "status"],
    "python -m tools.replay": [sys.executable, "-m", "tools.replay", "2025-05-31", "--dry-run"],
    "python -m tools.rejected": [sys.executable, "-m", "tools.rejected", "list", "--date", "2025-06-01"],
    "python -m tools.demo": [sys.executable, "-m", "tools.demo", "status"],
    "streaming job": [sys.executable, "-m", "jobs.streaming"],
    "aggregate job": [sys.executable, "-m", "jobs.aggregate", "--date", "2025-05-31"],
    "./spark-submit.sh streaming": ["./spark-submit.sh", "streaming"],
    "./spark-submit.sh aggregate": ["./spark-submit.sh", "aggregate"],
    "gunicorn ingest API": [sys.executable, "-m", "gunicorn", "-c", "ingest_api/gunicorn.conf.py",
                            "ingest_api:create_app()"],
    "gunicorn viewer": [sys.executable, "-m", "gunicorn", "-c", "viewer/gunicorn.conf.py", "viewer:create_app()"],
    **{f"bench.{name}": [sys.executable, "-m", f"bench.{name}"] for name in (
        "ingest_throughput", "streaming_throughput", "aggregate_day", "viewer_latency", "replay_generator")},
}


@pytest.mark.parametrize("command", list(ENTRYPOINTS.values()), ids=list(ENTRYPOINTS))
def test_every_entrypoint_stops_on_a_bad_value_with_one_line_and_exit_2(command):
    env = {**child_environment(Settings()), "ORDERLOG_CASSANDRA_PORT": "ninety"}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].endswith(": error: ORDERLOG_CASSANDRA_PORT='ninety': expected a whole number from 1 to 65535")
