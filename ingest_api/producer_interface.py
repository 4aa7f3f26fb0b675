"""What the ingest API asks of a Kafka producer, whichever client library is behind it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

# (key, value) of one record: the user id and the event's normal form, both UTF-8.
Record = tuple[bytes, bytes]


class KafkaUnavailable(RuntimeError):
    """Kafka did not acknowledge the records (down, slow, or misconfigured)."""


class Producer(Protocol):
    """One per worker process, shared by its request threads."""

    def send_all(self, records: Sequence[Record]) -> None:
        """Produce the records to the topic; return only when Kafka acknowledged every one
        (acks=all). Raise KafkaUnavailable when any is not acknowledged within the ack
        timeout: some may still be written; the client retries with the same order ids."""

    def reachable(self, timeout_s: float = 2.0) -> tuple[bool, str]:
        """Whether a broker answers a metadata request now, and why not if it does not."""

    def close(self, timeout_s: float | None = None) -> None:
        """Flush what is buffered (at most timeout_s; the ack timeout by default) and close."""
