"""The Cassandra connector, as both jobs use it: a table read as a DataFrame, a DataFrame
upserted into a table, and the one line that says why a connector call failed."""

from __future__ import annotations

import re

from pyspark.sql import DataFrame, SparkSession

from orderlog.config import Settings

CASSANDRA_FORMAT = "org.apache.spark.sql.cassandra"
# The connector's default keep-alive; a session epoch is added to it (see write_table).
KEEP_ALIVE_MS = 3_600_000
# The connector's batches in flight per task (its default: 5), a write option.
CONCURRENT_WRITES = "spark.cassandra.output.concurrent.writes"


def read_table(spark: SparkSession, settings: Settings, table: str, **options: str) -> DataFrame:
    return spark.read.format(CASSANDRA_FORMAT).options(keyspace=settings.cassandra.keyspace, table=table,
                                                       **options).load()


def write_table(
    df: DataFrame, settings: Settings, table: str, *, ttl_seconds: int | None = None, session_epoch: int | None = None,
    options: dict[str, str] | None = None,
) -> None:
    """Upserts the rows of df (the connector's writes are idempotent on the primary key).
    ``ttl_seconds`` gives the rows a TTL. ``session_epoch`` makes the connector use a
    session of its own: a different connector configuration (here its keep-alive) is
    another session, so a new epoch never reuses one cut off by an outage.
    ``options`` are connector output settings of this write only (e.g. CONCURRENT_WRITES)."""
    writer = df.write.format(CASSANDRA_FORMAT).mode("append").options(keyspace=settings.cassandra.keyspace,
                                                                       table=table, **(options or {}))
    if session_epoch is not None:
        writer = writer.option("spark.cassandra.connection.keepAliveMS", str(KEEP_ALIVE_MS + session_epoch))
    if ttl_seconds is not None:
        writer = writer.option("ttl", str(ttl_seconds))
    writer.save()


# Causes worth naming when a connector call fails, most specific first.
CASSANDRA_CAUSES = (
    "Failed to open native connection to Cassandra",
    "AllNodesFailedException",
    "NoNodeAvailableException",
    "Control channel not available",
    "WriteTimeoutException",
    "UnavailableException",
    "DriverTimeoutException",
    "Connection refused",
)
JAVA_EXCEPTION_LINE = re.compile(r"^:?\s*((?:[a-z]\w*\.)+[A-Z]\w*(?:Exception|Error)\b.*)$", re.MULTILINE)


def short_cause(exc: BaseException) -> str:
    """One line saying why a connector call failed, out of a Py4J error with a Java stack trace."""
    text = str(exc)
    for marker in CASSANDRA_CAUSES:
        if marker in text:
            return marker
    match = JAVA_EXCEPTION_LINE.search(text)
    line = match.group(1) if match else (text.strip().splitlines() or [type(exc).__name__])[0]
    return line[:200]
