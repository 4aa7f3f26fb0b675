"""The one configuration of the pipeline: typed sections of one frozen ``Settings``.

Defaults run everything on one laptop (the local stack on 127.0.0.1). Every value can be
overridden by its ``ORDERLOG_*`` environment variable (``ORDERLOG_KAFKA_BOOTSTRAP_SERVERS=
b1:9092,b2:9092``), so pointing at real clusters is configuration, not code; command-line
flags of the entrypoints override the environment (``settings.replace(...)``).

Each setting is declared once, below: its variable, default, type, rule, one line saying
what it is, and whether it is a secret. The validation, ``python -m orderlog.config``
(the effective configuration, secrets masked) and the README's table all come from these
declarations. A value that breaks its rule raises ``ConfigError`` with one line,
``ORDERLOG_X='value': expected <what>``; an entrypoint prints that line and exits 2
(``load_or_exit``).

Older names keep working as deprecated aliases (``DEPRECATED_ALIASES``): a process that sees
one warns once, naming the new variable; an alias and its new name set to different values
is an error naming both.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import json
import math
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from orderlog.logs import report

ENV_PREFIX = "ORDERLOG_"
# Where relative paths of the configuration (var, jars) are resolved: the checkout.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Cassandra refuses a TTL longer than 20 years (630,720,000 seconds).
MAX_TTL_DAYS = 7300
# The driver's consistency levels (cassandra.ConsistencyLevel) usable for both reads and
# writes: ANY only writes, SERIAL/LOCAL_SERIAL only qualify lightweight transactions.
CASSANDRA_CONSISTENCY_LEVELS = (
    "ONE", "TWO", "THREE", "QUORUM", "ALL", "LOCAL_QUORUM", "EACH_QUORUM", "LOCAL_ONE",
)
# Kafka's rule for a topic name: these characters, at most 249, and neither "." nor "..".
TOPIC_NAME = re.compile(r"(?!\.\.?$)[A-Za-z0-9._-]{1,249}", re.ASCII)
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
# Shown instead of a secret's value, wherever a value is printed.
MASK = "********"


class ConfigError(ValueError):
    """A configuration value that cannot be used: one line naming the variable."""


# --- rules: what a value must look like ---------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """How the text of a variable becomes a value, and which values are accepted.
    ``parse`` raises ValueError when the text does not parse; ``accepts`` judges a value
    (also one given in code, through ``Settings.replace``)."""

    expected: str
    parse: Callable[[str], Any]
    accepts: Callable[[Any], bool] = lambda value: True


_WHOLE = re.compile(r"\s*[+-]?[0-9]{1,18}\s*", re.ASCII)
_NUMBER = re.compile(r"\s*[0-9]{1,12}(\.[0-9]{1,9})?\s*", re.ASCII)
# A host name or an IPv4 address (IPv6 literals would need brackets in host:port lists).
_HOST = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,252})"
_PORT = r"[0-9]{1,5}"
_HOST_PORT_LIST = re.compile(rf"{_HOST}:{_PORT}(\s*,\s*{_HOST}:{_PORT})*", re.ASCII)
_HOST_LIST = re.compile(rf"{_HOST}(\s*,\s*{_HOST})*", re.ASCII)
_CQL_TERM = r"(?:'[A-Za-z0-9_.-]{1,64}'|[0-9]{1,3})"
# A CQL replication map, e.g. {'class': 'NetworkTopologyStrategy', 'dc1': 3}. It is put
# into CREATE KEYSPACE as text (DDL has no bound parameters), so nothing else may pass.
_CQL_PAIR = rf"{_CQL_TERM}\s*:\s*{_CQL_TERM}"
_REPLICATION = re.compile(rf"\{{\s*{_CQL_PAIR}(\s*,\s*{_CQL_PAIR})*\s*\}}", re.ASCII)
_KEYSPACE = re.compile(r"[A-Za-z0-9_]{1,48}", re.ASCII)
# Spark's processing-time trigger: a number and a unit ("1 second", "500 milliseconds").
_TRIGGER = re.compile(
    r"[0-9]{1,9}\s*(microseconds?|milliseconds?|ms|seconds?|s|minutes?|hours?|days?)", re.ASCII | re.IGNORECASE
)
_HEAP = re.compile(r"[0-9]{1,6}[kKmMgG]?", re.ASCII)


def _whole(text: str) -> int:
    if not _WHOLE.fullmatch(text):
        raise ValueError(text)
    return int(text)


def _number(text: str) -> float:
    if not _NUMBER.fullmatch(text):
        raise ValueError(text)
    return float(text)


def whole(low: int, high: int | None = None) -> Rule:
    expected = f"a whole number from {low} to {high}" if high is not None else f"a whole number of at least {low}"
    return Rule(
        expected, _whole,
        lambda v: isinstance(v, int) and not isinstance(v, bool) and low <= v and (high is None or v <= high),
    )


def seconds(low: float) -> Rule:
    return Rule(
        f"a number of seconds of at least {low:g}", _number,
        lambda v: isinstance(v, (int, float)) and math.isfinite(v) and v >= low,
    )


def pattern(regex: re.Pattern[str], expected: str, normalize: Callable[[str], str] = str.strip) -> Rule:
    return Rule(expected, normalize, lambda v: isinstance(v, str) and regex.fullmatch(v) is not None)


def choice(values: tuple[str, ...], normalize: Callable[[str], str]) -> Rule:
    return Rule(f"one of {', '.join(values)}", lambda text: normalize(text.strip()),
                lambda v: isinstance(v, str) and v in values)


def _zone(value: Any) -> bool:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        return False
    return True


def _starting_offsets(value: Any) -> bool:
    if value in ("earliest", "latest"):
        return True
    try:
        return isinstance(json.loads(value), dict)
    except (TypeError, ValueError, RecursionError):
        return False


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


def _flag(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered not in _TRUE + _FALSE:
        raise ValueError(text)
    return lowered in _TRUE


TEXT = Rule("any text", str, lambda v: isinstance(v, str))
FLAG = Rule("1 or 0 (or true/false, yes/no, on/off)", _flag, lambda v: isinstance(v, bool))
NON_EMPTY = Rule("a non-empty value", str.strip, lambda v: isinstance(v, str) and bool(v))
PORT = whole(1, 65535)
POSITIVE = whole(1)
HOST = pattern(re.compile(_HOST, re.ASCII), "a host name or IP address")
HOSTS = pattern(_HOST_LIST, "host names, comma-separated")
HOST_PORTS = pattern(_HOST_PORT_LIST, "host:port pairs, comma-separated")
TOPIC = pattern(TOPIC_NAME, "a Kafka topic name (letters, digits, '.', '_', '-'; at most 249)")
KEYSPACE = pattern(_KEYSPACE, "a keyspace name: letters, digits and underscores only, at most 48")
REPLICATION = pattern(
    _REPLICATION, "a CQL replication map such as {'class': 'SimpleStrategy', 'replication_factor': 1}")
ZONE = Rule("an IANA time zone such as Asia/Tokyo", str.strip, _zone)
CONSISTENCY = choice(CASSANDRA_CONSISTENCY_LEVELS, str.upper)
LOG_LEVEL = choice(LOG_LEVELS, str.lower)
KAFKA_CLIENT = choice(("confluent-kafka", "kafka-python"), str.lower)
TRIGGER = pattern(_TRIGGER, "an interval such as '1 second' or '500 milliseconds'")
STARTING_OFFSETS = Rule("earliest, latest or Kafka's JSON form of offsets", str.strip, _starting_offsets)
HEAP = pattern(_HEAP, "a JVM heap size such as 512m or 1g")
TTL_DAYS = whole(1, MAX_TTL_DAYS)


# --- declarations ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Declaration:
    """One setting: its variable, its rule, what it is, and whether it is a secret."""

    env: str
    rule: Rule
    help: str
    secret: bool = False


def setting(env: str, default: Any, rule: Rule, help: str, *, secret: bool = False) -> Any:
    return field(default=default, metadata={"setting": Declaration(env, rule, help, secret)})


def _declaration(f: dataclasses.Field) -> Declaration:
    return f.metadata["setting"]


def _text(value: Any) -> str:
    """A value as its variable would say it (a flag as 1 or 0)."""
    return ("1" if value else "0") if isinstance(value, bool) else str(value)


def _shown(declaration: Declaration, value: Any) -> str:
    return MASK if declaration.secret and value not in ("", None) else _text(value)


def _problem(declaration: Declaration, shown: str) -> ConfigError:
    return ConfigError(f"{declaration.env}={shown!r}: expected {declaration.rule.expected}")


class _Section:
    """A group of settings; every value is checked against its rule when the group is made."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            declaration = _declaration(f)
            value = getattr(self, f.name)
            if not declaration.rule.accepts(value):
                raise _problem(declaration, _shown(declaration, value))

    def replace(self, **changes: Any) -> Any:
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


@dataclass(frozen=True)
class KafkaSettings(_Section):
    bootstrap_servers: str = setting(
        "ORDERLOG_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092", HOST_PORTS, "Kafka brokers, comma-separated")
    topic: str = setting("ORDERLOG_KAFKA_TOPIC", "order-logs", TOPIC, "the order topic")
    topic_partitions: int = setting(
        "ORDERLOG_KAFKA_TOPIC_PARTITIONS", 3, POSITIVE, "partitions of the topic when it is created")
    replication_factor: int = setting(
        "ORDERLOG_KAFKA_REPLICATION_FACTOR", 1, POSITIVE, "replicas of the topic when it is created")
    # With acks=all, how many replicas must have a record before it is acknowledged.
    min_insync_replicas: int = setting(
        "ORDERLOG_KAFKA_MIN_INSYNC_REPLICAS", 1, POSITIVE,
        "the topic's min.insync.replicas when it is created: replicas that must hold a record before the "
        "ingest API's acks=all write is acknowledged; at most the replication factor (use 2 with 3 replicas)")

    # confluent-kafka (librdkafka, in C) produces about ten times faster than kafka-python.
    client: str = setting(
        "ORDERLOG_KAFKA_CLIENT", "confluent-kafka", KAFKA_CLIENT,
        "the ingest API's Kafka client: `confluent-kafka` (librdkafka) or `kafka-python`, the design's own; "
        "the same acks=all, idempotent, 202-after-acknowledgement contract")

    @property
    def bootstrap_list(self) -> list[str]:
        return [s.strip() for s in self.bootstrap_servers.split(",") if s.strip()]


@dataclass(frozen=True)
class CassandraSettings(_Section):
    hosts: str = setting("ORDERLOG_CASSANDRA_HOSTS", "127.0.0.1", HOSTS, "Cassandra contact points, comma-separated")
    port: int = setting("ORDERLOG_CASSANDRA_PORT", 9042, PORT, "Cassandra's native (CQL) port")
    keyspace: str = setting("ORDERLOG_CASSANDRA_KEYSPACE", "orderlog", KEYSPACE,
                            "the keyspace (tests use orderlog_test)")
    replication: str = setting(
        "ORDERLOG_CASSANDRA_REPLICATION", "{'class': 'SimpleStrategy', 'replication_factor': 1}", REPLICATION,
        "replication of the keyspace when it is created")
    local_dc: str = setting("ORDERLOG_CASSANDRA_LOCAL_DC", "datacenter1", NON_EMPTY,
                            "the data centre the drivers prefer")
    username: str = setting("ORDERLOG_CASSANDRA_USERNAME", "", TEXT, "user name, for clusters with authentication")
    password: str = setting("ORDERLOG_CASSANDRA_PASSWORD", "", TEXT, "password, for clusters with authentication",
                            secret=True)
    # LOCAL_QUORUM reads see every LOCAL_QUORUM write (quorums overlap).
    consistency: str = setting(
        "ORDERLOG_CASSANDRA_CONSISTENCY", "LOCAL_QUORUM", CONSISTENCY,
        "consistency of every Cassandra read and write: the jobs', the viewer's and the connector's alike; "
        "lightweight transactions (the aggregate's lock) use LOCAL_SERIAL")

    @property
    def host_list(self) -> list[str]:
        return [h.strip() for h in self.hosts.split(",") if h.strip()]

    @property
    def address(self) -> str:
        """Where Cassandra is, as error messages say it."""
        return f"{self.hosts}:{self.port}"


@dataclass(frozen=True)
class BusinessSettings(_Section):
    timezone: str = setting("ORDERLOG_BUSINESS_TIMEZONE", "Asia/Tokyo", ZONE,
                            "an order belongs to the calendar day of its timestamp in this zone")

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True)
class IngestSettings(_Section):
    host: str = setting("ORDERLOG_INGEST_HOST", "127.0.0.1", HOST, "the ingest API's bind address")
    port: int = setting("ORDERLOG_INGEST_PORT", 8080, PORT, "the ingest API's port")
    max_batch: int = setting("ORDERLOG_INGEST_MAX_BATCH", 10000, POSITIVE, "events per batch request, at most")
    max_body_bytes: int = setting("ORDERLOG_INGEST_MAX_BODY_BYTES", 16 * 1024 * 1024, POSITIVE,
                                  "bytes per request body, at most (413 beyond)")
    ack_timeout_ms: int = setting("ORDERLOG_INGEST_ACK_TIMEOUT_MS", 10000, POSITIVE,
                                  "how long a request waits for Kafka's acknowledgement before answering 503")
    api_token: str = setting("ORDERLOG_INGEST_API_TOKEN", "", TEXT,
                             "when set, `/api/*` requires `Authorization: Bearer <token>`", secret=True)
    workers: int = setting("ORDERLOG_INGEST_WORKERS", 2, POSITIVE, "gunicorn worker processes")
    threads: int = setting("ORDERLOG_INGEST_THREADS", 16, POSITIVE, "threads per gunicorn worker")
    access_log: str = setting("ORDERLOG_INGEST_ACCESS_LOG", "", TEXT,
                              "gunicorn's access log: a file, `-` for stdout, empty for none")
    log_level: str = setting("ORDERLOG_INGEST_LOG_LEVEL", "info", LOG_LEVEL, "gunicorn's log level")


@dataclass(frozen=True)
class ViewerSettings(_Section):
    host: str = setting("ORDERLOG_VIEWER_HOST", "127.0.0.1", HOST, "the viewer's bind address")
    port: int = setting("ORDERLOG_VIEWER_PORT", 8081, PORT, "the viewer's port")
    user: str = setting("ORDERLOG_VIEWER_USER", "", TEXT,
                        "with the password: HTTP basic auth for every page, API call and asset")
    password: str = setting("ORDERLOG_VIEWER_PASSWORD", "", TEXT, "the basic auth password", secret=True)
    cache_seconds: float = setting(
        "ORDERLOG_VIEWER_CACHE_SECONDS", 5.0, seconds(0),
        "0 turns the viewer's cache off; otherwise each worker keeps its answers until the next aggregate run "
        "finishes, and those that show what the stream writes (late orders, rejected counts) at most this long")
    workers: int = setting("ORDERLOG_VIEWER_WORKERS", 2, POSITIVE, "gunicorn worker processes")
    threads: int = setting("ORDERLOG_VIEWER_THREADS", 8, POSITIVE, "threads per gunicorn worker")
    timeout: int = setting("ORDERLOG_VIEWER_TIMEOUT", 300, POSITIVE,
                           "gunicorn worker timeout, s (a whole-segment CSV streams for a while)")
    log_level: str = setting("ORDERLOG_VIEWER_LOG_LEVEL", "info", LOG_LEVEL, "gunicorn's log level")


@dataclass(frozen=True)
class StreamSettings(_Section):
    checkpoint_location: str = setting(
        "ORDERLOG_CHECKPOINT_LOCATION", "var/checkpoints/streaming", NON_EMPTY,
        "the streaming job's checkpoint (shared storage on a cluster)")
    trigger: str = setting("ORDERLOG_STREAM_TRIGGER", "1 second", TRIGGER, "processing-time trigger interval")
    max_offsets_per_trigger: int = setting(
        "ORDERLOG_STREAM_MAX_OFFSETS_PER_TRIGGER", 50000, POSITIVE,
        "cap on records per micro-batch (bounds a catch-up batch)")
    starting_offsets: str = setting(
        "ORDERLOG_STREAM_STARTING_OFFSETS", "earliest", STARTING_OFFSETS,
        "where a new checkpoint starts; an existing checkpoint always wins")
    write_retry_seconds: float = setting(
        "ORDERLOG_STREAM_WRITE_RETRY_SECONDS", 120.0, seconds(0),
        "how long a batch retries an unreachable Cassandra before the job exits 1")
    metrics_port: int = setting(
        "ORDERLOG_STREAM_METRICS_PORT", 8082, whole(0, 65535),
        "the streaming job's Prometheus /metrics, served by its driver on 127.0.0.1; 0 turns it off "
        "(a port in use costs the metrics, not the job)")


@dataclass(frozen=True)
class LogSettings(_Section):
    format: str = setting(
        "ORDERLOG_LOG_FORMAT", "text", choice(("text", "json"), str.lower),
        "`json`: every process (the APIs, the jobs' own lines, the tools) logs one JSON object per line; "
        "Spark's JVM logs stay text")


@dataclass(frozen=True)
class AccessSettings(_Section):
    allow_unauthenticated: bool = setting(
        "ORDERLOG_ALLOW_UNAUTHENTICATED", False, FLAG,
        "1 lets the ingest API and the viewer listen on a non-loopback address without their credentials "
        "(the token; the viewer's user and password), e.g. behind a proxy that authenticates; otherwise they "
        "refuse to start")


@dataclass(frozen=True)
class SparkSettings(_Section):
    master: str = setting("ORDERLOG_SPARK_MASTER", "local[2]", NON_EMPTY,
                          "the Spark master of ./spark-submit.sh (its --master flag overrides it)")


@dataclass(frozen=True)
class RejectedSettings(_Section):
    ttl_days: int = setting("ORDERLOG_REJECTED_TTL_DAYS", 30, TTL_DAYS,
                            "how long a rejected record is kept in rejected_events (Cassandra TTL), in days")

    @property
    def ttl_seconds(self) -> int:
        return self.ttl_days * 86_400


@dataclass(frozen=True)
class PathSettings(_Section):
    var: str = setting("ORDERLOG_VAR_DIR", "var", NON_EMPTY,
                       "where the local stack and the demo keep data, logs and pids (relative: to the checkout)")
    jars: str = setting("ORDERLOG_JARS_DIR", "build/jars", NON_EMPTY,
                        "the jars `make setup` resolved (relative: to the checkout)")

    @property
    def var_path(self) -> Path:
        return PROJECT_ROOT / self.var  # an absolute path stays itself

    @property
    def jars_path(self) -> Path:
        return PROJECT_ROOT / self.jars


@dataclass(frozen=True)
class StackSettings(_Section):
    dir: str = setting("ORDERLOG_STACK_DIR", "", TEXT,
                       "the local stack's data, logs and configuration (default: `stack/` in ORDERLOG_VAR_DIR)")
    kafka_controller_port: int = setting("ORDERLOG_STACK_KAFKA_CONTROLLER_PORT", 9093, PORT,
                                         "the local Kafka's controller port")
    kafka_heap: str = setting("ORDERLOG_STACK_KAFKA_HEAP", "512m", HEAP, "the local Kafka's JVM heap")
    cassandra_storage_port: int = setting("ORDERLOG_STACK_CASSANDRA_STORAGE_PORT", 7000, PORT,
                                          "the local Cassandra's storage (gossip) port")
    cassandra_jmx_port: int = setting("ORDERLOG_STACK_CASSANDRA_JMX_PORT", 7199, PORT,
                                      "the local Cassandra's JMX port")
    cassandra_heap: str = setting("ORDERLOG_STACK_CASSANDRA_HEAP", "1g", HEAP, "the local Cassandra's JVM heap")


@dataclass(frozen=True)
class ClusterSettings(_Section):
    # The cluster's ports are fixed (local_stack/cluster.py): it is a stand-in for real
    # clusters on one machine, never run twice on it.
    dir: str = setting("ORDERLOG_CLUSTER_DIR", "", TEXT,
                       "the local cluster's data, logs and configuration (default: `cluster/` in ORDERLOG_VAR_DIR)")
    kafka_heap: str = setting("ORDERLOG_CLUSTER_KAFKA_HEAP", "256m", HEAP,
                              "each of the 3 cluster Kafka nodes' JVM heap")
    cassandra_heap: str = setting("ORDERLOG_CLUSTER_CASSANDRA_HEAP", "512m", HEAP,
                                  "each of the 3 cluster Cassandra nodes' JVM heap")
    spark_daemon_heap: str = setting("ORDERLOG_CLUSTER_SPARK_DAEMON_HEAP", "256m", HEAP,
                                     "the cluster's Spark master's and workers' JVM heap")
    # Slots, not CPUs: enough that, with one worker dead, the streaming job (its lost
    # executor started again on the survivor) and an aggregate still fit on the other.
    spark_worker_cores: int = setting("ORDERLOG_CLUSTER_SPARK_WORKER_CORES", 4, POSITIVE,
                                      "cores (task slots) each of the 2 Spark workers offers executors")
    spark_worker_memory: str = setting("ORDERLOG_CLUSTER_SPARK_WORKER_MEMORY", "4g", HEAP,
                                       "memory each of the 2 Spark workers offers executors (1g each by default)")


@dataclass(frozen=True)
class Settings:
    """Every setting of the pipeline, by section: ``settings.cassandra.port``."""

    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    cassandra: CassandraSettings = field(default_factory=CassandraSettings)
    business: BusinessSettings = field(default_factory=BusinessSettings)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    viewer: ViewerSettings = field(default_factory=ViewerSettings)
    stream: StreamSettings = field(default_factory=StreamSettings)
    access: AccessSettings = field(default_factory=AccessSettings)
    log: LogSettings = field(default_factory=LogSettings)
    spark: SparkSettings = field(default_factory=SparkSettings)
    rejected: RejectedSettings = field(default_factory=RejectedSettings)
    paths: PathSettings = field(default_factory=PathSettings)
    stack: StackSettings = field(default_factory=StackSettings)
    cluster: ClusterSettings = field(default_factory=ClusterSettings)

    def __post_init__(self) -> None:
        kafka = self.kafka
        if kafka.min_insync_replicas > kafka.replication_factor:
            raise ConfigError(
                f"ORDERLOG_KAFKA_MIN_INSYNC_REPLICAS='{kafka.min_insync_replicas}': expected at most "
                f"ORDERLOG_KAFKA_REPLICATION_FACTOR ({kafka.replication_factor}), or no record could ever be "
                "acknowledged"
            )
        viewer = self.viewer
        if bool(viewer.user) != bool(viewer.password):
            missing, given = (
                ("ORDERLOG_VIEWER_PASSWORD", f"ORDERLOG_VIEWER_USER={viewer.user!r}") if viewer.user
                else ("ORDERLOG_VIEWER_USER", f"ORDERLOG_VIEWER_PASSWORD='{MASK}'")
            )
            raise ConfigError(f"{given}: expected {missing} too (basic auth needs both, or neither)")

    @property
    def stack_dir(self) -> Path:
        return Path(self.stack.dir) if self.stack.dir else self.paths.var_path / "stack"

    @property
    def cluster_dir(self) -> Path:
        return Path(self.cluster.dir) if self.cluster.dir else self.paths.var_path / "cluster"

    def replace(self, **changes: Any) -> Settings:
        """A copy with some values changed, named ``<section>_<field>``:
        ``settings.replace(cassandra_port=19042, kafka_topic="t")``. Checked like loaded values."""
        by_section: dict[str, dict[str, Any]] = {}
        for name, value in changes.items():
            section, _, key = name.partition("_")
            if section not in SECTIONS or key not in _field_names(section):
                raise TypeError(f"no setting {name!r}")
            by_section.setdefault(section, {})[key] = value
        return dataclasses.replace(
            self, **{s: getattr(self, s).replace(**values) for s, values in by_section.items()}
        )


SECTIONS: dict[str, type[_Section]] = {f.name: f.default_factory for f in dataclasses.fields(Settings)}  # type: ignore[misc]


def _field_names(section: str) -> set[str]:
    return {f.name for f in dataclasses.fields(SECTIONS[section])}  # type: ignore[arg-type]


def declarations() -> Iterator[tuple[str, str, Declaration, Any]]:
    """(section, field, declaration, default) of every setting, in the order declared."""
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            yield section, f.name, _declaration(f), f.default


# --- deprecated names --------------------------------------------------------------------------

# Older variable -> the variable that replaces it. Both work; the older one warns.
DEPRECATED_ALIASES: dict[str, str] = {
    "INGEST_API_TOKEN": "ORDERLOG_INGEST_API_TOKEN",
    "INGEST_WORKERS": "ORDERLOG_INGEST_WORKERS",
    "INGEST_THREADS": "ORDERLOG_INGEST_THREADS",
    "INGEST_ACCESS_LOG": "ORDERLOG_INGEST_ACCESS_LOG",
    "INGEST_LOG_LEVEL": "ORDERLOG_INGEST_LOG_LEVEL",
    "VIEWER_USER": "ORDERLOG_VIEWER_USER",
    "VIEWER_PASSWORD": "ORDERLOG_VIEWER_PASSWORD",
    "VIEWER_CACHE_SECONDS": "ORDERLOG_VIEWER_CACHE_SECONDS",
    "VIEWER_WORKERS": "ORDERLOG_VIEWER_WORKERS",
    "VIEWER_THREADS": "ORDERLOG_VIEWER_THREADS",
    "VIEWER_TIMEOUT": "ORDERLOG_VIEWER_TIMEOUT",
    "VIEWER_LOG_LEVEL": "ORDERLOG_VIEWER_LOG_LEVEL",
}
# host:port, which overrode ORDERLOG_VIEWER_HOST and _PORT; now it sets them both.
VIEWER_BIND = "VIEWER_BIND"
_warned: set[str] = set()


def log_format_of(environ: Mapping[str, str] | None = None) -> str:
    """The log format ORDERLOG_LOG_FORMAT asks for, read directly: a line about the
    configuration itself is written before (or instead of) the settings being loaded; a
    value that is not `json` (a bad one too) means text."""
    value = (os.environ if environ is None else environ).get("ORDERLOG_LOG_FORMAT", "")
    return "json" if value.strip().lower() == "json" else "text"


def _warn(line: str) -> None:
    report("orderlog", f"warning: {line}", level="warning", log_format=log_format_of())


def _with_aliases(environ: Mapping[str, str], warn: Callable[[str], None]) -> dict[str, str]:
    """The ORDERLOG_* values, the deprecated names' values moved to their new names."""
    values = {name: value for name, value in environ.items() if name.startswith(ENV_PREFIX)}
    aliased = {old: new for old, new in DEPRECATED_ALIASES.items() if old in environ}
    for old, new in aliased.items():
        _adopt(values, old, new, environ[old])
    if VIEWER_BIND in environ:
        host, _, port = environ[VIEWER_BIND].rpartition(":")
        if not host:
            raise ConfigError(f"{VIEWER_BIND}={environ[VIEWER_BIND]!r}: expected host:port")
        _adopt(values, VIEWER_BIND, "ORDERLOG_VIEWER_HOST", host)
        _adopt(values, VIEWER_BIND, "ORDERLOG_VIEWER_PORT", port)
        aliased[VIEWER_BIND] = "ORDERLOG_VIEWER_HOST and ORDERLOG_VIEWER_PORT"
    for old, new in aliased.items():
        if old not in _warned:
            _warned.add(old)
            warn(f"{old} is deprecated: use {new}")
    return values


def _adopt(values: dict[str, str], old: str, new: str, value: str) -> None:
    if new in values and values[new] != value:
        secret = any(d.secret and d.env == new for _, _, d, _ in declarations())
        shown = MASK if secret else values[new]
        raise ConfigError(
            f"{new}={shown!r}: expected the value of {old}, its deprecated name, which is set too and differs "
            f"(set only {new})"
        )
    values[new] = value


# --- loading -----------------------------------------------------------------------------------

_cache: dict[tuple[tuple[str, str], ...], Settings] = {}


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """The defaults, then the ``ORDERLOG_*`` variables of ``environ`` (the process's own by
    default), then ``overrides`` (flat names, as ``Settings.replace`` takes them; None is
    "not given"). ConfigError names the first bad value. The same environment gives the same
    object: a process that asks again gets what it loaded, checked and warned about once."""
    environ = os.environ if environ is None else environ
    values = _with_aliases(environ, _warn)
    key = tuple(sorted(values.items()))
    settings = _cache.get(key)
    if settings is None:
        settings = _cache.setdefault(key, _from_values(values))
    given = {name: value for name, value in overrides.items() if value is not None}
    return settings.replace(**given) if given else settings


def _from_values(values: Mapping[str, str]) -> Settings:
    sections: dict[str, dict[str, Any]] = {}
    for section, name, declaration, _ in declarations():
        if declaration.env not in values:
            continue
        raw = values[declaration.env]
        try:
            value = declaration.rule.parse(raw)
        except ValueError:
            raise _problem(declaration, _shown(declaration, raw)) from None
        if not declaration.rule.accepts(value):
            raise _problem(declaration, _shown(declaration, raw))
        sections.setdefault(section, {})[name] = value
    return Settings(**{s: SECTIONS[s](**v) for s, v in sections.items()})


def flag(rule: Rule) -> Callable[[str], Any]:
    """An argparse ``type`` that applies a setting's rule to the flag that overrides it."""

    def parse(text: str) -> Any:
        try:
            value = rule.parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: expected {rule.expected}") from None
        if not rule.accepts(value):
            raise argparse.ArgumentTypeError(f"{text!r}: expected {rule.expected}")
        return value

    return parse


def load_or_exit(prog: str, environ: Mapping[str, str] | None = None) -> Settings:
    """The settings of an entrypoint; a bad value prints its one line and exits 2."""
    try:
        return load_settings(environ)
    except ConfigError as exc:
        _exit(prog, exc)


def _exit(prog: str, exc: ConfigError) -> NoReturn:
    report(prog, f"error: {exc}", log_format=log_format_of())
    raise SystemExit(2)


# --- serving beyond this machine -----------------------------------------------------------

# What each HTTP server needs before it may listen beyond loopback, and its bind variable.
_CREDENTIALS = {
    "ingest": ("ORDERLOG_INGEST_HOST", "ORDERLOG_INGEST_API_TOKEN", "it"),
    "viewer": ("ORDERLOG_VIEWER_HOST", "ORDERLOG_VIEWER_USER and ORDERLOG_VIEWER_PASSWORD", "them"),
}


def is_loopback(host: str) -> bool:
    """Whether an address only this machine reaches: 127.0.0.0/8, ::1, localhost. Any other
    name may resolve to anything, so it counts as reachable from outside."""
    host = host.strip().strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _has_credentials(settings: Settings, server: str) -> bool:
    return bool(settings.ingest.api_token) if server == "ingest" else bool(settings.viewer.user)


def check_exposure(settings: Settings, server: str, hosts: Iterable[str], source: str | None = None) -> None:
    """ConfigError when ``server`` (``ingest`` or ``viewer``) would listen on one of
    ``hosts`` beyond loopback without its credentials, unless ORDERLOG_ALLOW_UNAUTHENTICATED:
    anyone on the network could then post orders, or read every user id. ``source`` names
    where the hosts come from (the server's host variable by default)."""
    if settings.access.allow_unauthenticated or _has_credentials(settings, server):
        return
    variable, credentials, pronoun = _CREDENTIALS[server]
    for host in hosts:
        if not is_loopback(host):
            raise ConfigError(
                f"{source or variable}={host!r}: expected a loopback address (127.0.0.1, ::1, localhost) "
                f"without {credentials}: set {pronoun}, or ORDERLOG_ALLOW_UNAUTHENTICATED=1 to serve without "
                "credentials anyway"
            )


def exit_if_exposed(prog: str, settings: Settings, server: str, hosts: Iterable[str],
                    source: str | None = None) -> None:
    """``check_exposure`` for an entrypoint: its one line and exit 2."""
    try:
        check_exposure(settings, server, hosts, source)
    except ConfigError as exc:
        _exit(prog, exc)


def child_environment(settings: Settings, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment that gives a child process exactly these settings: ``base`` (this
    process's environment by default) with every ORDERLOG_* variable set, and the deprecated
    names removed (they would conflict)."""
    env = {k: v for k, v in (os.environ if base is None else base).items()
           if k not in DEPRECATED_ALIASES and k != VIEWER_BIND}
    for section, name, declaration, _ in declarations():
        env[declaration.env] = _text(getattr(getattr(settings, section), name))
    return env


# --- showing it --------------------------------------------------------------------------------


def effective_lines(settings: Settings, environ: Mapping[str, str] | None = None) -> list[str]:
    """``VARIABLE=value  # origin`` for every setting, under a ``# section`` line each,
    secrets masked; the origin is the environment, the default, or code (a flag)."""
    given = _with_aliases(os.environ if environ is None else environ, lambda line: None)
    lines: list[str] = []
    for section, name, declaration, default in declarations():
        if f"# {section}" not in lines:
            lines.append(f"# {section}")
        value = getattr(getattr(settings, section), name)
        origin = "environment" if declaration.env in given else ("default" if value == default else "set")
        lines.append(f"{declaration.env}={_shown(declaration, value)}  # {origin}")
    return lines


def markdown_table() -> str:
    """The README's table of every variable, from the declarations."""
    formerly: dict[str, list[str]] = {}
    for old, new in [*DEPRECATED_ALIASES.items(), (VIEWER_BIND, "ORDERLOG_VIEWER_HOST"),
                     (VIEWER_BIND, "ORDERLOG_VIEWER_PORT")]:
        formerly.setdefault(new, []).append(f"`{old}`")
    rows = ["| variable | default | what |", "|---|---|---|"]
    for _, _, declaration, default in declarations():
        shown = "unset" if default == "" else f"`{_text(default)}`"
        older = f" (formerly {', '.join(formerly[declaration.env])})" if declaration.env in formerly else ""
        rows.append(f"| `{declaration.env}` | {shown} | {declaration.help}{older} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m orderlog.config",
        description="Prints the effective configuration (secrets masked), or the README's table of variables.",
    )
    parser.add_argument("--markdown", action="store_true", help="the table of every variable, as in the README")
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown_table())
        return 0
    print("\n".join(effective_lines(load_or_exit("python -m orderlog.config"))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
