"""Whether Kafka answers, through kafka-python's admin client: the ingest API's health
check and the local stack's start-up wait ask the same question the same way."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kafka import KafkaAdminClient
from kafka.errors import KafkaError, for_code


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


def describe(exc: BaseException) -> str:
    """An exception as one line that names its kind."""
    text = str(exc)
    name = type(exc).__name__
    return text if name in text else f"{name}: {text}"
