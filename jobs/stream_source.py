"""The streaming job's source: the order topic as a stream of Kafka records."""

from __future__ import annotations

import re

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from orderlog.config import Settings
from orderlog.kafka_security import spark_kafka_options

# The columns of Spark's Kafka source (the batch foreachBatch gets), for building batches of
# records by hand: the tests and bench.stream_validation.
KAFKA_HEADERS_TYPE = T.ArrayType(T.StructType([T.StructField("key", T.StringType()),
                                               T.StructField("value", T.BinaryType())]))
KAFKA_SCHEMA = T.StructType([
    T.StructField("key", T.BinaryType()),
    T.StructField("value", T.BinaryType()),
    T.StructField("topic", T.StringType()),
    T.StructField("partition", T.IntegerType()),
    T.StructField("offset", T.LongType()),
    T.StructField("timestamp", T.TimestampType()),
    T.StructField("headers", KAFKA_HEADERS_TYPE),
])

# The Kafka client's exceptions that mean the brokers refuse us; what follows is its reason.
_SASL_REFUSED = re.compile(r"SaslAuthenticationException: ([^\n]{1,300})")
_TLS_REFUSED = re.compile(r"SslAuthenticationException: ([^\n]{1,300})")
_CERTIFICATE_REASON = re.compile(r"(unable to find valid certification path[^\n]{0,100}|No subject alternative "
                                 r"names? [^\n]{0,100}|PKIX path [^\n:]{0,100})")

# What the transformations read of a record (jobs/stream_transforms.py).
KAFKA_COLUMNS = ("key", "value", "topic", "partition", "offset", "timestamp", "headers")


def read_kafka(spark: SparkSession, settings: Settings) -> DataFrame:
    """The records of settings.kafka.topic; where a new checkpoint starts and how many
    records a micro-batch takes at most come from settings.stream. SASL and TLS come from
    settings.kafka, set here at run time: the options hold the password."""
    return (
        spark.readStream.format("kafka")
        .options(**spark_kafka_options(settings.kafka))
        .option("kafka.bootstrap.servers", settings.kafka.bootstrap_servers)
        .option("subscribe", settings.kafka.topic)
        .option("startingOffsets", settings.stream.starting_offsets)
        .option("maxOffsetsPerTrigger", str(settings.stream.max_offsets_per_trigger))
        # The replay header of tools.rejected (orderlog/rejected.py) travels in the headers.
        .option("includeHeaders", "true")
        # Records deleted by retention before we read them are a loss: fail loudly.
        .option("failOnDataLoss", "true")
        .load()
        .select(*KAFKA_COLUMNS)
    )


def kafka_refusal(settings: Settings, failure: str) -> str | None:
    """One line naming what the brokers refused (the SASL login, or our trust of their
    certificate) and the settings to check, out of the text of a failed query; None when
    the failure is something else."""
    where = settings.kafka.bootstrap_servers
    sasl = _SASL_REFUSED.search(failure)
    if sasl:
        return (f"Kafka at {where} refused the SASL login of ORDERLOG_KAFKA_SASL_USERNAME="
                f"{settings.kafka.sasl_username!r} ({sasl.group(1).strip()}): check ORDERLOG_KAFKA_SASL_USERNAME, "
                "ORDERLOG_KAFKA_SASL_PASSWORD and ORDERLOG_KAFKA_SASL_MECHANISM")
    if _TLS_REFUSED.search(failure):
        reason = _CERTIFICATE_REASON.search(failure)
        why = reason.group(1).strip() if reason else "SSL handshake failed"
        return f"the TLS certificate of Kafka at {where} is not trusted ({why}): check ORDERLOG_KAFKA_SSL_CA_FILE"
    return None
