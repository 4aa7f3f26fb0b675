"""Whether Kafka answers, through kafka-python's admin client: the ingest API's health
check and the local stack's start-up wait ask the same question the same way."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Mapping, Sequence
from typing import Any

from kafka import KafkaAdminClient
from kafka.errors import KafkaError, for_code

from orderlog.config import KafkaSettings
from orderlog.kafka_security import hide_kafka_python_secrets

hide_kafka_python_secrets()  # its admin clients are made here


def brokers_answer(bootstrap_servers: Sequence[str], timeout_s: float = 2.0,
                   client_id: str = "orderlog-probe", topic: str | None = None,
                   security: Mapping[str, Any] | None = None) -> tuple[bool, str]:
    """Whether a broker answers a metadata request now (a fresh round trip with a client of
    its own: cached metadata would say "up" with the broker gone), and, given a ``topic``,
    whether the cluster has it; why not otherwise. Returns within about twice ``timeout_s``.
    ``security``: kafka-python's security settings (orderlog.kafka_security)."""
    timeout_ms = max(1, int(timeout_s * 1000))
    try:
        admin = KafkaAdminClient(bootstrap_servers=list(bootstrap_servers), request_timeout_ms=timeout_ms,
                                 bootstrap_timeout_ms=timeout_ms, client_id=client_id, **(security or {}))
    except (KafkaError, OSError, ValueError) as exc:
        return False, describe(exc)
    try:
        if topic is None:
            admin.describe_cluster()
            return True, "ok"
        [described] = admin.describe_topics([topic])
        if described["error_code"]:
            raise for_code(described["error_code"])(topic)
        return True, "ok"
    except (KafkaError, OSError) as exc:
        return False, f"metadata request failed ({describe(exc)})"
    finally:
        admin.close()


def refusal(kafka: KafkaSettings, timeout_s: float = 5.0) -> str | None:
    """Why the brokers refuse us, found by a TLS handshake of our own with the first
    broker, as one line naming the settings to check; None when it is not a refusal
    (nothing listens, say). kafka-python only says "Unable to bootstrap" when a certificate
    is not trusted or a SASL login fails; this says which."""
    server = kafka.bootstrap_list[0]
    host, _, port = server.rpartition(":")
    try:
        raw = socket.create_connection((host, int(port)), timeout=timeout_s)
    except (OSError, ValueError):
        return None
    with raw:
        if kafka.uses_tls:
            context = ssl.create_default_context(cafile=kafka.ssl_ca_file or None)
            try:
                context.wrap_socket(raw, server_hostname=host).close()
            except ssl.SSLCertVerificationError as exc:
                return (f"the TLS certificate of Kafka at {server} is not trusted ({exc.verify_message}): check "
                        "ORDERLOG_KAFKA_SSL_CA_FILE")
            except (ssl.SSLError, OSError) as exc:
                return (f"the TLS handshake with Kafka at {server} failed ({describe(exc)}): does the listener take "
                        f"ORDERLOG_KAFKA_SECURITY_PROTOCOL={kafka.security_protocol}?")
    if kafka.uses_sasl:
        return (f"Kafka at {server} answers but refused the SASL login of ORDERLOG_KAFKA_SASL_USERNAME="
                f"{kafka.sasl_username!r} ({kafka.sasl_mechanism}): check ORDERLOG_KAFKA_SASL_USERNAME, "
                "ORDERLOG_KAFKA_SASL_PASSWORD and ORDERLOG_KAFKA_SASL_MECHANISM")
    return None


def describe(exc: BaseException) -> str:
    """An exception as one line that names its kind."""
    text = str(exc)
    name = type(exc).__name__
    return text if name in text else f"{name}: {text}"
