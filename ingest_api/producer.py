"""The one owner of the ingest API's Kafka producer: which client library is behind it
(``ORDERLOG_KAFKA_CLIENT``), made once per worker process, closed at worker exit.

Both backends keep one contract (``producer_interface.Producer``): a request is
acknowledged only when Kafka has acknowledged every one of its records (acks=all,
idempotence); anything else is ``KafkaUnavailable``, which the routes turn into ``503``.
"""

from __future__ import annotations

from flask import Flask, current_app

from ingest_api.confluent_backend import ConfluentProducer, confluent_config
from ingest_api.kafka_python_backend import KafkaPythonProducer, kafka_python_config
from ingest_api.producer_interface import KafkaUnavailable, Producer, Record
from orderlog.config import Settings
from orderlog.kafka_security import kafka_python_security, librdkafka_security

__all__ = ["KafkaUnavailable", "Producer", "Record", "close_app_producer", "get_producer", "init_app",
           "make_producer"]

EXTENSION_KEY = "orderlog_kafka"


def make_producer(settings: Settings, **overrides: object) -> Producer:
    """The configured client's producer (unconnected: it connects on first use), with the
    configured security (SASL, TLS). ``overrides`` are extra settings in that client's own names."""
    ack_timeout_ms = settings.ingest.ack_timeout_ms
    bootstrap, topic, ack_timeout_s = settings.kafka.bootstrap_list, settings.kafka.topic, ack_timeout_ms / 1000
    if settings.kafka.client == "kafka-python":
        extra = {**kafka_python_security(settings.kafka), **overrides}
        return KafkaPythonProducer(topic, kafka_python_config(bootstrap, ack_timeout_ms, **extra), ack_timeout_s,
                                   settings.kafka)
    extra = {**librdkafka_security(settings.kafka), **overrides}
    return ConfluentProducer(topic, confluent_config(bootstrap, ack_timeout_ms, **extra), ack_timeout_s)


def init_app(app: Flask) -> None:
    """Attach an (unconnected) producer to the app; it connects on first use."""
    app.extensions[EXTENSION_KEY] = make_producer(app.config["SETTINGS"], **app.config["KAFKA_PRODUCER_CONFIG"])


def get_producer(app: Flask | None = None) -> Producer:
    return (app or current_app).extensions[EXTENSION_KEY]


def close_app_producer(app: Flask) -> None:
    producer = app.extensions.get(EXTENSION_KEY)
    if producer is not None:
        producer.close()
