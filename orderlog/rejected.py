"""Rejected records: how much of one is kept, how it is shown, and the Kafka header that
marks a replay.

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

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from orderlog.events import printable

REPLAY_HEADER = "orderlog-replay-of"
# At most this much of a rejected payload (and of its key) is stored: a flood of 1 MB
# records must not make 1 MB rows. Longer payloads keep their length and SHA-256.
KEPT_PAYLOAD_BYTES = 64 * 1024

# How many characters of a payload `tools.rejected list` and the viewer show.
PREVIEW_CHARS = 200


@dataclass(frozen=True)
class KeptBytes:
    """What rejected_events keeps of a record's key and value: at most KEPT_PAYLOAD_BYTES
    of each, their full lengths, and the whole value's SHA-256 (hex); None where the record
    has no key or no value. The streaming job computes the same in Spark
    (jobs.stream_transforms.to_rejected_events); a test holds the two together."""

    key: bytes | None
    key_length: int | None
    value: bytes | None
    value_length: int | None
    value_sha256: str | None


def kept_bytes(key: bytes | None, value: bytes | None) -> KeptBytes:
    return KeptBytes(
        key=None if key is None else key[:KEPT_PAYLOAD_BYTES],
        key_length=None if key is None else len(key),
        value=None if value is None else value[:KEPT_PAYLOAD_BYTES],
        value_length=None if value is None else len(value),
        value_sha256=None if value is None else hashlib.sha256(value).hexdigest(),
    )


def payload_preview(data: bytes | None, full_length: int | None, chars: int = PREVIEW_CHARS) -> str:
    """Stored key or value bytes as one line of text: invalid UTF-8 as \\xNN, every
    non-printable character escaped (orderlog.events.printable), cut to ``chars``, and a
    note when only the first bytes were stored. Any bytes at all give a printable line."""
    if data is None:
        return "(none)"
    if not data:
        return "(empty)"
    text = printable(data.decode("utf-8", "backslashreplace"), chars)
    if full_length is not None and full_length > len(data):
        text += f"  (first {len(data)} of {full_length} bytes stored)"
    return text


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
