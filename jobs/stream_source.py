"""The streaming job's source: the order topic as a stream of Kafka records."""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession

from orderlog.config import Settings
from orderlog.kafka_security import spark_kafka_options

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
