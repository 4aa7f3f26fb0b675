"""Rejected records: how much of one is kept, and the Kafka header that marks a replay.

The streaming job writes every record it cannot accept to ``rejected_events``;
``python -m tools.rejected replay`` sends such records back through the topic after a rule
was fixed. A replayed record keeps its key and value and carries one header,

    orderlog-replay-of: <topic>:<partition>:<offset>:<timestamp_ms>

the coordinates of the original record (':' cannot occur in a topic name). The job uses
those coordinates for everything that must not change under a replay (the order_id derived
for a record without one, the rejected_events key and date), so replaying twice adds
nothing twice. A header that is not exactly this shape is ignored, never an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

REPLAY_HEADER = "orderlog-replay-of"
# At most this much of a rejected payload (and of its key) is stored: a flood of 1 MB
# records must not make 1 MB rows. Longer payloads keep their length and SHA-256.
KEPT_PAYLOAD_BYTES = 64 * 1024

# Longer than any well-formed header (a topic name is at most 249 characters).
REPLAY_HEADER_MAX_BYTES = 320
# Kafka's rule for a topic name: these characters, and neither "." nor "..".
_TOPIC_CHARS = r"[A-Za-z0-9._-]{1,249}"
TOPIC_NAME = re.compile(rf"(?!\.\.?$){_TOPIC_CHARS}", re.ASCII)
_HEADER_PATTERN = re.compile(rf"((?!\.\.?:){_TOPIC_CHARS}):(\d{{1,10}}):(\d{{1,19}}):(-?\d{{1,15}})", re.ASCII)
_MAX_PARTITION = 2**31 - 1
_MAX_OFFSET = 2**63 - 1
# A day inside the years 1..9999 on either side: the timestamp's business date, in any
# time zone, is then a date every part (Python, Spark, Cassandra) can represent.
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MIN_TIMESTAMP_MS = (datetime(1, 1, 2, tzinfo=UTC) - _EPOCH) // timedelta(milliseconds=1)
MAX_TIMESTAMP_MS = (datetime(9999, 12, 31, tzinfo=UTC) - _EPOCH) // timedelta(milliseconds=1) - 1


@dataclass(frozen=True)
class KafkaCoordinates:
    """Where a record was first written: its topic, partition, offset and timestamp."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int

    def __str__(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"


def replay_header_value(origin: KafkaCoordinates) -> bytes:
    """The value of the REPLAY_HEADER of a record replayed from ``origin``."""
    value = f"{origin.topic}:{origin.partition}:{origin.offset}:{origin.timestamp_ms}".encode("ascii")
    if parse_replay_header(value) != origin:
        raise ValueError(f"not replayable coordinates: {origin}")
    return value


def parse_replay_header(value: bytes | None) -> KafkaCoordinates | None:
    """The coordinates a REPLAY_HEADER value names, or None when it is not well-formed
    (any bytes at all may arrive here: a hostile producer can set any header)."""
    if value is None or len(value) > REPLAY_HEADER_MAX_BYTES:
        return None
    match = _HEADER_PATTERN.fullmatch(value.decode("ascii", "replace"))
    if match is None:
        return None
    topic, partition, offset, timestamp_ms = match.group(1), *(int(g) for g in match.groups()[1:])
    if partition > _MAX_PARTITION or offset > _MAX_OFFSET:
        return None
    if not MIN_TIMESTAMP_MS <= timestamp_ms <= MAX_TIMESTAMP_MS:
        return None
    return KafkaCoordinates(topic, partition, offset, timestamp_ms)
