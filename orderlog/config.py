"""The one configuration of the pipeline.

Defaults run everything on one laptop (the local stack on 127.0.0.1). Every value can be
overridden by an environment variable of the same name in upper case with the
``ORDERLOG_`` prefix (``ORDERLOG_KAFKA_BOOTSTRAP_SERVERS=b1:9092,b2:9092``), so pointing
at real clusters is configuration, not code. Command-line flags of the entrypoints
override the environment.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

ENV_PREFIX = "ORDERLOG_"
# Cassandra refuses a TTL longer than 20 years (630,720,000 seconds).
MAX_TTL_DAYS = 7300
# The driver's consistency levels (cassandra.ConsistencyLevel) usable for both reads and
# writes: ANY only writes, SERIAL/LOCAL_SERIAL only qualify lightweight transactions.
CASSANDRA_CONSISTENCY_LEVELS = (
    "ONE", "TWO", "THREE", "QUORUM", "ALL", "LOCAL_QUORUM", "EACH_QUORUM", "LOCAL_ONE",
)


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    # Kafka
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_topic: str = "order-logs"
    kafka_topic_partitions: int = 3
    kafka_replication_factor: int = 1
    # min.insync.replicas of the topic when it is created: with acks=all, how many replicas
    # must have a record before it is acknowledged. 1 on one broker; 2 with 3 replicas.
    kafka_min_insync_replicas: int = 1
    # Cassandra
    cassandra_hosts: str = "127.0.0.1"
    cassandra_port: int = 9042
    cassandra_keyspace: str = "orderlog"
    cassandra_local_dc: str = "datacenter1"
    # CQL replication map of the keyspace, e.g.
    # {'class': 'NetworkTopologyStrategy', 'dc1': 3}
    cassandra_replication: str = "{'class': 'SimpleStrategy', 'replication_factor': 1}"
    cassandra_username: str = ""
    cassandra_password: str = ""
    # Consistency level of every statement: our own (driver) and the connector's reads and
    # writes alike. LOCAL_QUORUM reads see every LOCAL_QUORUM write (quorums overlap).
    cassandra_consistency: str = "LOCAL_QUORUM"
    # The business day: an order belongs to the calendar day of its timestamp here.
    business_timezone: str = "Asia/Tokyo"
    # HTTP services
    ingest_host: str = "127.0.0.1"
    ingest_port: int = 8080
    # Ingest API limits: events per batch request, bytes per request body, and how long a
    # request waits for Kafka to acknowledge its records before answering 503.
    ingest_max_batch: int = 10000
    ingest_max_body_bytes: int = 16 * 1024 * 1024
    ingest_ack_timeout_ms: int = 10000
    viewer_host: str = "127.0.0.1"
    viewer_port: int = 8081
    # Spark
    spark_master: str = "local[2]"
    checkpoint_location: str = "var/checkpoints/streaming"
    # How long a rejected record is kept in rejected_events (Cassandra TTL), in days.
    rejected_ttl_days: int = 30
    # Where the local stack and the demo keep data, logs and pids.
    var_dir: str = "var"

    extra: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def kafka_bootstrap_list(self) -> list[str]:
        return [s.strip() for s in self.kafka_bootstrap_servers.split(",") if s.strip()]

    @property
    def cassandra_host_list(self) -> list[str]:
        return [h.strip() for h in self.cassandra_hosts.split(",") if h.strip()]

    @property
    def rejected_ttl_seconds(self) -> int:
        return self.rejected_ttl_days * 86_400

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.business_timezone)

    def replace(self, **changes: object) -> Settings:
        return dataclasses.replace(self, **changes)


def _coerce(name: str, raw: str, to_type: type) -> object:
    if to_type is int:
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{ENV_PREFIX}{name.upper()}={raw!r} is not an integer") from None
    return raw


def load_settings(environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Defaults, then ``ORDERLOG_*`` environment variables, then explicit overrides."""
    environ = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for f in dataclasses.fields(Settings):
        if f.name == "extra":
            continue
        env_name = ENV_PREFIX + f.name.upper()
        if env_name in environ:
            to_type = int if f.type in ("int", int) else str
            values[f.name] = _coerce(f.name, environ[env_name], to_type)
    values.update({k: v for k, v in overrides.items() if v is not None})
    if isinstance(values.get("cassandra_consistency"), str):  # the driver's names, any case
        values["cassandra_consistency"] = values["cassandra_consistency"].strip().upper()  # type: ignore[union-attr]
    settings = Settings(**values)
    _validate(settings)
    return settings


def _validate(settings: Settings) -> None:
    try:
        ZoneInfo(settings.business_timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"{ENV_PREFIX}BUSINESS_TIMEZONE={settings.business_timezone!r} is not an IANA time zone"
        ) from None
    if not settings.cassandra_keyspace.replace("_", "").isalnum():
        raise ConfigError(
            f"{ENV_PREFIX}CASSANDRA_KEYSPACE={settings.cassandra_keyspace!r}: "
            "use letters, digits and underscores only"
        )
    for name in (
        "kafka_topic_partitions", "kafka_replication_factor", "kafka_min_insync_replicas",
        "cassandra_port", "ingest_port", "viewer_port",
        "ingest_max_batch", "ingest_max_body_bytes", "ingest_ack_timeout_ms", "rejected_ttl_days",
    ):
        if int(getattr(settings, name)) <= 0:
            raise ConfigError(f"{ENV_PREFIX}{name.upper()} must be positive")
    if settings.rejected_ttl_days > MAX_TTL_DAYS:
        raise ConfigError(
            f"{ENV_PREFIX}REJECTED_TTL_DAYS={settings.rejected_ttl_days} is longer than Cassandra's "
            f"longest TTL ({MAX_TTL_DAYS} days)"
        )
    if settings.kafka_min_insync_replicas > settings.kafka_replication_factor:
        raise ConfigError(
            f"{ENV_PREFIX}KAFKA_MIN_INSYNC_REPLICAS={settings.kafka_min_insync_replicas} is more than "
            f"{ENV_PREFIX}KAFKA_REPLICATION_FACTOR={settings.kafka_replication_factor}: "
            "no record could ever be acknowledged"
        )
    if settings.cassandra_consistency not in CASSANDRA_CONSISTENCY_LEVELS:
        raise ConfigError(
            f"{ENV_PREFIX}CASSANDRA_CONSISTENCY={settings.cassandra_consistency!r}: "
            f"use one of {', '.join(CASSANDRA_CONSISTENCY_LEVELS)}"
        )
