"""How every Kafka client of ours connects, from the one configuration: SASL (PLAIN or
SCRAM) and TLS, in each client's own names. One mapping per client library, so a new
setting reaches the ingest producers, the admin clients, the tools and the streaming job
alike (docs/cluster.md, "Secure clusters")."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, NamedTuple

from orderlog.config import MASK, KafkaSettings

# The JAAS login module of each SASL mechanism, for Java clients (the Spark Kafka source).
_LOGIN_MODULES = {
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
}


class _ClientNames(NamedTuple):
    """What a Python client library calls each security setting."""

    protocol: str
    mechanism: str
    username: str
    password: str
    ca_file: str
    cert_file: str
    key_file: str


_LIBRDKAFKA = _ClientNames("security.protocol", "sasl.mechanism", "sasl.username", "sasl.password",
                           "ssl.ca.location", "ssl.certificate.location", "ssl.key.location")
_KAFKA_PYTHON = _ClientNames("security_protocol", "sasl_mechanism", "sasl_plain_username", "sasl_plain_password",
                             "ssl_cafile", "ssl_certfile", "ssl_keyfile")


def _security(kafka: KafkaSettings, names: _ClientNames, protocol: str) -> dict[str, Any]:
    config: dict[str, Any] = {names.protocol: protocol}
    if kafka.uses_sasl:
        config |= {names.mechanism: kafka.sasl_mechanism, names.username: kafka.sasl_username,
                   names.password: kafka.sasl_password}
    if kafka.uses_tls:
        if kafka.ssl_ca_file:
            config[names.ca_file] = kafka.ssl_ca_file
        if kafka.ssl_cert_file:
            config |= {names.cert_file: kafka.ssl_cert_file, names.key_file: kafka.ssl_key_file}
    return config


def librdkafka_security(kafka: KafkaSettings) -> dict[str, Any]:
    """librdkafka's (confluent-kafka's) security settings."""
    return _security(kafka, _LIBRDKAFKA, kafka.security_protocol.lower())


def kafka_python_security(kafka: KafkaSettings) -> dict[str, Any]:
    """kafka-python's security settings (its producers, consumers and admin clients)."""
    return _security(kafka, _KAFKA_PYTHON, kafka.security_protocol)


def kafka_python_client(kafka: KafkaSettings) -> dict[str, Any]:
    """What every kafka-python client of ours (admin, producer, consumer) starts from: the
    brokers and the security settings."""
    return {"bootstrap_servers": kafka.bootstrap_list, **kafka_python_security(kafka)}


def spark_kafka_options(kafka: KafkaSettings) -> dict[str, str]:
    """The Spark Kafka source's ``kafka.*`` options. Set in the job at run time, never on a
    command line: they hold the password. The PEM files travel as their content
    (``*.certificates``, ``*.key``), so the executors need no copy of them."""
    options = {"kafka.security.protocol": kafka.security_protocol}
    if kafka.uses_sasl:
        options |= {"kafka.sasl.mechanism": kafka.sasl_mechanism, "kafka.sasl.jaas.config": jaas_config(kafka)}
    if kafka.uses_tls:
        if kafka.ssl_ca_file:
            options |= {"kafka.ssl.truststore.type": "PEM",
                        "kafka.ssl.truststore.certificates": _pem(kafka.ssl_ca_file)}
        if kafka.ssl_cert_file:
            options |= {"kafka.ssl.keystore.type": "PEM",
                        "kafka.ssl.keystore.certificate.chain": _pem(kafka.ssl_cert_file),
                        "kafka.ssl.keystore.key": _pem(kafka.ssl_key_file)}
    return options


def jaas_config(kafka: KafkaSettings) -> str:
    """The JAAS line of the SASL login, the user name and password quoted as JAAS reads them."""
    return (f'{_LOGIN_MODULES[kafka.sasl_mechanism]} required username="{_jaas_quoted(kafka.sasl_username)}" '
            f'password="{_jaas_quoted(kafka.sasl_password)}";')


def _jaas_quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _pem(path: str) -> str:
    return Path(path).read_text(encoding="ascii", errors="replace")


# kafka-python's admin client logs its whole configuration at DEBUG, the SASL password too.
_KAFKA_PYTHON_SECRETS = ("sasl_plain_password", "ssl_password")


class _MaskKafkaPythonSecrets(logging.Filter):
    """Masks the secrets of a configuration kafka-python logs as an argument of a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else (record.args,)
        if any(isinstance(a, dict) and any(a.get(k) for k in _KAFKA_PYTHON_SECRETS) for a in args):
            record.args = tuple({k: MASK if k in _KAFKA_PYTHON_SECRETS and v else v for k, v in a.items()}
                                if isinstance(a, dict) else a for a in args)
        return True


def hide_kafka_python_secrets() -> None:
    """No log line of kafka-python shows a password, whatever its level (idempotent)."""
    logger = logging.getLogger("kafka.admin.client")
    if not any(isinstance(f, _MaskKafkaPythonSecrets) for f in logger.filters):
        logger.addFilter(_MaskKafkaPythonSecrets())


hide_kafka_python_secrets()
