"""The SparkSession of every job and test: the Cassandra connector wired to the configured
cluster, and the session time zone pinned to UTC (the business day is computed
explicitly in the business time zone, never from the session's)."""

from __future__ import annotations

import os
from pathlib import Path

from pyspark.sql import SparkSession

from orderlog.config import Settings

# Spark's logging for every job and test session (spark-submit.sh uses it as SPARK_CONF_DIR).
SPARK_LOG_CONFIG = Path(__file__).resolve().parent / "conf" / "log4j2.properties"

# Where the project's own Spark drivers listen unless SPARK_LOCAL_IP says otherwise.
LOOPBACK = "127.0.0.1"


def connector_jars(settings: Settings) -> list[str]:
    """The Kafka-source and Cassandra-connector jars that `make setup` resolved."""
    return sorted(str(p) for p in (settings.paths.jars_path / "spark").glob("*.jar"))


def spark_conf(settings: Settings) -> dict[str, str]:
    """Settings every job needs, whatever starts it (spark-submit, a test, a notebook).
    No secret: spark-submit.sh puts these on its command line, which `ps` shows to anyone;
    the secrets are ``secret_spark_conf``'s, set inside the job."""
    conf = {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.extensions": "com.datastax.spark.connector.CassandraSparkExtensions",
        "spark.cassandra.connection.host": settings.cassandra.hosts,
        "spark.cassandra.connection.port": str(settings.cassandra.port),
        "spark.cassandra.connection.localDC": settings.cassandra.local_dc,
        # The same level as our own driver statements (orderlog.cassandra_session):
        # LOCAL_QUORUM by default, which equals ONE on the single local node.
        "spark.cassandra.output.consistency.level": settings.cassandra.consistency,
        "spark.cassandra.input.consistency.level": settings.cassandra.consistency,
        "spark.sql.shuffle.partitions": "8",
        "spark.ui.showConsoleProgress": "false",
    }
    cassandra = settings.cassandra
    if cassandra.username:
        conf["spark.cassandra.auth.username"] = cassandra.username
    if cassandra.ssl:
        conf["spark.cassandra.connection.ssl.enabled"] = "true"
        if cassandra.ssl_truststore_file:
            conf["spark.cassandra.connection.ssl.trustStore.path"] = cassandra.ssl_truststore_file
            conf["spark.cassandra.connection.ssl.trustStore.type"] = cassandra.ssl_truststore_type
    return conf


def secret_spark_conf(settings: Settings) -> dict[str, str]:
    """The connector's secrets: set on the session by the job process itself
    (``build_session``), never passed on a command line. Spark's UI and logs redact them
    (spark.redaction.regex matches "password")."""
    cassandra = settings.cassandra
    conf = {}
    if cassandra.password:
        conf["spark.cassandra.auth.password"] = cassandra.password
    if cassandra.ssl and cassandra.ssl_truststore_password:
        conf["spark.cassandra.connection.ssl.trustStore.password"] = cassandra.ssl_truststore_password
    return conf


def build_session(
    settings: Settings, app_name: str, *, master: str | None = None, extra: dict[str, str] | None = None
) -> SparkSession:
    """A session for a job. Under spark-submit the master and jars come from its flags;
    started directly (tests, a REPL), the local master and the resolved jars are used. The
    secrets are set here, in the job's own process, before the connector is first used."""
    builder = SparkSession.builder.appName(app_name)
    if master:
        builder = builder.master(master)
    for key, value in {**spark_conf(settings), **secret_spark_conf(settings), **(extra or {})}.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def local_session(settings: Settings, app_name: str, extra: dict[str, str] | None = None) -> SparkSession:
    """A local[2] session with the connector jars on its classpath (tests, benchmarks)."""
    jars = connector_jars(settings)
    if not jars:
        raise RuntimeError(f"no connector jars in {settings.paths.jars_path / 'spark'}: run `make setup`")
    # The driver JVM pyspark starts inherits this process's environment, and only
    # SPARK_LOCAL_IP keeps all its ports on loopback (as spark-submit.sh does for the jobs).
    os.environ.setdefault("SPARK_LOCAL_IP", LOOPBACK)
    conf = {
        "spark.jars": ",".join(jars),
        "spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile={SPARK_LOG_CONFIG.as_uri()}",
        "spark.ui.enabled": "false",
        "spark.driver.memory": "2g",
        "spark.sql.shuffle.partitions": "4",
        "spark.default.parallelism": "4",
        **(extra or {}),
    }
    return build_session(settings, app_name, master="local[2]", extra=conf)
