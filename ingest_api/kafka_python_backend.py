"""The ingest API's producer on kafka-python (pure Python), the client the design names.

A request is acknowledged only when Kafka has acknowledged every one of its records
(acks=all, idempotent producer). Anything else - the broker is down, slow, or the
producer cannot even be created - becomes ``KafkaUnavailable``, which the routes turn
into ``503`` with ``Retry-After``.

The producer is created lazily, per process (gunicorn forks workers: a producer's
sockets and sender thread must not cross a fork), and re-created after a failure to
connect or a request whose records were not all acknowledged, so the API recovers by itself
when Kafka comes back.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError

from ingest_api.producer_interface import KafkaUnavailable, Record
from orderlog.config import KafkaSettings
from orderlog.kafka_admin import brokers_answer, describe, refusal

log = logging.getLogger(__name__)

# After a failed attempt to create the producer, answer 503 at once for this long rather
# than making every request wait for another bootstrap timeout.
CREATE_BACKOFF_S = 1.0
# The producer's settings its health check's admin client needs too (orderlog.kafka_security).
SECURITY_PREFIXES = ("security_", "sasl_", "ssl_")


def kafka_python_config(bootstrap_servers: list[str], ack_timeout_ms: int, **overrides: Any) -> dict[str, Any]:
    """The producer settings: durable (acks=all, idempotent, retries) and batched."""
    # The producer gives up on a record (delivery_timeout_ms) about when the request does,
    # so it does not go on retrying a record for long after its request got a 503. A record
    # already sent may still be written (its answer lost or late): the 503 says to retry
    # with the same order_ids, which is idempotent.
    request_timeout_ms = max(1000, ack_timeout_ms // 2)
    config: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers,
        "acks": "all",
        "enable_idempotence": True,
        "retries": 2**31 - 1,
        "max_in_flight_requests_per_connection": 5,
        "compression_type": "lz4",
        "linger_ms": 5,
        "batch_size": 256 * 1024,
        "request_timeout_ms": request_timeout_ms,
        "delivery_timeout_ms": ack_timeout_ms,
        "max_block_ms": ack_timeout_ms // 2,
        "bootstrap_timeout_ms": min(5000, ack_timeout_ms),
        # Reconnect quickly once the broker is back (the default backs off to 30 s).
        "reconnect_backoff_ms": 50,
        "reconnect_backoff_max_ms": 1000,
        "client_id": f"orderlog-ingest-{os.getpid()}",
    }
    config.update(overrides)
    config["linger_ms"] = min(config["linger_ms"], ack_timeout_ms)
    config["delivery_timeout_ms"] = max(
        config["delivery_timeout_ms"], config["linger_ms"] + config["request_timeout_ms"]
    )
    return config


class KafkaPythonProducer:
    """Sends records to one topic and waits until Kafka has every one of them."""

    def __init__(self, topic: str, config: dict[str, Any], ack_timeout_s: float, kafka: KafkaSettings | None = None):
        self.topic = topic
        self.kafka = kafka  # to say why the brokers refuse us (orderlog.kafka_admin.refusal)
        self.config = config
        self.ack_timeout_s = ack_timeout_s
        self._producer: KafkaProducer | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()
        self._failed_at = 0.0
        self._last_error = ""

    def _get(self) -> KafkaProducer:
        producer = self._producer
        if producer is not None and self._pid == os.getpid():
            return producer
        with self._lock:
            if self._producer is not None and self._pid == os.getpid():
                return self._producer
            # A producer inherited through fork() belongs to the parent: never use it.
            self._producer = None
            if time.monotonic() - self._failed_at < CREATE_BACKOFF_S:
                raise KafkaUnavailable(f"Kafka is unavailable ({self._last_error})")
            try:
                self._producer = KafkaProducer(**self.config)
            except Exception as exc:  # NoBrokersAvailable, timeouts, DNS errors...
                self._failed_at = time.monotonic()
                self._last_error = (self.kafka and refusal(self.kafka)) or describe(exc)
                log.warning("cannot create the Kafka producer: %s", self._last_error)
                raise KafkaUnavailable(f"Kafka is unavailable ({self._last_error})") from exc
            self._pid = os.getpid()
            return self._producer

    def send_all(self, records: Sequence[Record]) -> None:
        """Produce (key, value) records; return only when Kafka acknowledged all of them.

        Raises KafkaUnavailable when any record is not acknowledged within the timeout.
        """
        producer = self._get()
        deadline = time.monotonic() + self.ack_timeout_s
        try:
            futures = [producer.send(self.topic, key=key, value=value) for key, value in records]
            for future in futures:
                future.get(timeout=max(0.0, deadline - time.monotonic()))
        except (KafkaError, TimeoutError) as exc:
            # kafka-python 3.0.12's idempotent producer can be stuck for good after such a
            # failure (a batch already sent expires: its producer id is reset to -1 and never
            # asked for again, and nothing public tells), so it is replaced every time.
            self._replace(producer)
            raise KafkaUnavailable(f"Kafka did not acknowledge the records ({describe(exc)})") from exc

    def _replace(self, producer: KafkaProducer) -> None:
        """The next request makes a new producer; the old one is closed in the background."""
        with self._lock:
            if self._producer is not producer:
                return  # another thread did already
            self._producer = None
        log.warning("replacing the Kafka producer after a request whose records were not all acknowledged")
        threading.Thread(target=self._close_quietly, args=(producer,), name="close-replaced-producer",
                         daemon=True).start()

    def _close_quietly(self, producer: KafkaProducer) -> None:
        """Give the old producer's records (other requests' too) their own deadline, then close.
        kafka-python's close() raises instead of closing while a record is pending (the stuck
        producer's never complete): then only its sender thread is left, idle."""
        try:
            producer.close(timeout=self.ack_timeout_s)
        except Exception as exc:  # noqa: BLE001 - a replaced producer must not hurt anyone
            log.warning("the replaced Kafka producer did not close: %s", describe(exc))

    def reachable(self, timeout_s: float = 2.0) -> tuple[bool, str]:
        """Whether a broker answers a metadata request now and has the topic, and why not."""
        client_id = f"{self.config['client_id']}-health"
        security = {k: v for k, v in self.config.items() if k.startswith(SECURITY_PREFIXES)}
        ok, reason = brokers_answer(self.config["bootstrap_servers"], timeout_s, client_id=client_id,
                                    topic=self.topic, security=security)
        refused = None if ok or self.kafka is None else refusal(self.kafka, timeout_s)
        return ok, refused or reason

    def close(self, timeout_s: float | None = None) -> None:
        """Flush what is buffered and close (used at worker exit)."""
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None and self._pid == os.getpid():
            producer.close(timeout=self.ack_timeout_s if timeout_s is None else timeout_s)
