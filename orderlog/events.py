"""The order event: its fields, the rules every event must meet, and its normal form.

The ingest API validates each request with ``validate_event``; the streaming job applies
the very same function to every Kafka record (records can reach Kafka from other
producers), so an event is valid in one place exactly when it is valid in the other.

An event, as a client sends it::

    {"user_id": "u-1", "timestamp": "2025-05-31T12:34:56+09:00", "menu_type": "japanese",
     "order_id": "optional-client-id"}

Its normal form, as the ingest API produces it to Kafka (``OrderEvent.to_record``)::

    {"order_id": "...", "user_id": "u-1", "menu_type": "japanese",
     "timestamp": "2025-05-31T12:34:56+09:00", "received_at": "2025-05-31T03:34:57.120+00:00"}
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from orderlog.menu import JAPANESE, WESTERN, canonical_menu_type

if TYPE_CHECKING:  # pyspark is only needed by the streaming job (with_canonical_event)
    from pyspark.sql import Column, DataFrame

# json's own C string encoder (ensure_ascii=False): quotes, escapes, nothing else; what the
# canonical record spells a user id with (ingest_api/fast_batch.py writes records too).
json_string_literal = json.encoder.encode_basestring  # type: ignore[attr-defined]

USER_ID_MAX_LENGTH = 128
ORDER_ID_MAX_LENGTH = 64
ORDER_ID_CHARACTERS = r"[A-Za-z0-9._:-]"
ORDER_ID_PATTERN = re.compile(ORDER_ID_CHARACTERS + "+")
# RFC 3339: a date, a time, optional fraction, and a mandatory offset (Z or +HH:MM).
# re.ASCII: without it \d also matches other scripts' digits (e.g. "٢٠٢٥").
ISO_TIMESTAMP_PATTERN = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})", re.ASCII
)
EPOCH_STRING_PATTERN = re.compile(r"-?\d+(\.\d+)?", re.ASCII)
# Epoch values at or above this are milliseconds (1e11 seconds is the year 5138).
EPOCH_MILLIS_THRESHOLD = 100_000_000_000
# Beyond this magnitude (milliseconds: about the year 33658) no epoch value can be a valid
# time; checked before any arithmetic, so a 300-digit integer cannot overflow a float.
EPOCH_MAX_MAGNITUDE = 10**15
# Field names quoted in a reason are cut to this many characters.
QUOTED_NAME_MAX = 64
EARLIEST_TIMESTAMP = datetime(2000, 1, 1, tzinfo=UTC)
# Clocks drift; an order stamped more than a day ahead of the receiver is not plausible.
MAX_FUTURE_SKEW = timedelta(days=1)

REQUIRED_FIELDS: tuple[str, ...] = ("user_id", "timestamp", "menu_type")
OPTIONAL_FIELDS: tuple[str, ...] = ("order_id",)
# Set by the ingest API on the normal form; accepted (not required) on Kafka records.
SERVER_FIELDS: tuple[str, ...] = ("received_at",)
CLIENT_FIELDS = frozenset(REQUIRED_FIELDS + OPTIONAL_FIELDS)
RECORD_FIELDS = CLIENT_FIELDS | frozenset(SERVER_FIELDS)

# Bodies and records larger than this are refused before parsing.
MAX_EVENT_BYTES = 4096


@dataclass(frozen=True)
class FieldError:
    """What is wrong with an event: the field ('' for the event itself) and why."""

    field: str
    reason: str

    def __str__(self) -> str:
        # A field name comes from the input: printable() keeps the text storable as UTF-8
        # (a lone surrogate in a key cannot be) and readable (no control characters).
        return f"{printable(self.field, QUOTED_NAME_MAX)}: {self.reason}" if self.field else self.reason

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "reason": self.reason}


@dataclass(frozen=True)
class OrderEvent:
    """A valid order event in its normal form."""

    order_id: str | None
    user_id: str
    menu_type: str
    timestamp: datetime  # aware, with the offset the client sent (UTC for epoch input)
    received_at: datetime | None = None

    def with_ids(self, received_at: datetime, new_id: str | None = None) -> OrderEvent:
        """The event as the ingest API produces it: an order_id and a receive time."""
        return OrderEvent(
            order_id=self.order_id or new_id or new_order_id(),
            user_id=self.user_id,
            menu_type=self.menu_type,
            timestamp=self.timestamp,
            received_at=received_at,
        )

    def to_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "order_id": self.order_id,
            "user_id": self.user_id,
            "menu_type": self.menu_type,
            "timestamp": format_timestamp(self.timestamp),
        }
        if self.received_at is not None:
            record["received_at"] = format_timestamp(self.received_at.astimezone(UTC))
        return record

    def to_json_bytes(self) -> bytes:
        """The canonical record: compact JSON, keys in to_record's order, UTF-8 as is (what
        json.dumps(to_record(), ensure_ascii=False, separators=(",", ":")) writes; a property
        test holds it to that). Written by hand because the ingest API pays it for every event:
        only the ids can hold characters JSON escapes; the rest is ASCII of a fixed alphabet."""
        received = "" if self.received_at is None else f',"received_at":"{utc_text(self.received_at)}"'
        return (
            f'{{"order_id":{_json_string(self.order_id)},"user_id":{_json_string(self.user_id)},'
            f'"menu_type":"{self.menu_type}","timestamp":"{format_timestamp(self.timestamp)}"{received}}}'
        ).encode()


class InvalidEvent(ValueError):
    def __init__(self, errors: list[FieldError]):
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = errors


def printable(text: str, limit: int | None = None) -> str:
    """text with every non-printable character (controls, lone surrogates, non-ASCII
    spaces) escaped as \\xNN / \\uNNNN, cut to limit characters with an ellipsis."""
    if limit is not None and len(text) > limit:
        text = text[:limit] + "…"
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def new_order_id() -> str:
    """A random (version 4) UUID as 32 hex digits; what uuid.uuid4().hex gives, in a third
    of the time (the ingest API makes one for every event)."""
    return new_order_ids(1)[0]


def new_order_ids(count: int) -> list[str]:
    """count random UUIDs as new_order_id writes them, from one read of the OS's randomness
    (a batch needs one per event; one os.urandom call each was half their cost)."""
    randomness, from_bytes = os.urandom(16 * count), int.from_bytes
    return [f"{from_bytes(randomness[i : i + 16]) & _UUID4_CLEAR | _UUID4_SET:032x}" for i in range(0, 16 * count, 16)]


# The version (4) and variant (RFC 4122) bits of a random UUID.
_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)


def _json_string(value: str | None) -> str:
    return "null" if value is None else json_string_literal(value)


@functools.lru_cache(maxsize=16)
def utc_text(instant: datetime) -> str:
    """The receive time as the canonical record has it. Every event of a request shares
    one receive time: formatted once."""
    return format_timestamp(instant.astimezone(UTC))


def format_timestamp(value: datetime) -> str:
    """ISO-8601 with the value's own offset; milliseconds unless finer precision exists."""
    spec = "microseconds" if value.microsecond % 1000 else "milliseconds"
    return value.isoformat(timespec=spec)


def parse_timestamp(value: Any) -> datetime:
    """An aware datetime from an ISO-8601 string with offset or epoch seconds/millis.

    Raises ValueError with the reason.
    """
    if isinstance(value, bool) or value is None:
        raise ValueError("must be an ISO-8601 string with a UTC offset or epoch seconds/milliseconds")
    if isinstance(value, (int, float)):
        return _from_epoch(value)
    if not isinstance(value, str):
        raise ValueError("must be an ISO-8601 string with a UTC offset or epoch seconds/milliseconds")
    if EPOCH_STRING_PATTERN.fullmatch(value):
        if len(value.partition(".")[0].lstrip("-")) > 16:  # int() of thousands of digits is slow
            raise ValueError("is out of range")
        return _from_epoch(float(value) if "." in value else int(value))
    if not ISO_TIMESTAMP_PATTERN.fullmatch(value):
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?", value, re.ASCII):
            raise ValueError("has no UTC offset (add Z or +09:00, for example)")
        raise ValueError(
            "is not ISO-8601 with a UTC offset (e.g. 2025-05-31T12:34:56+09:00) "
            "nor epoch seconds/milliseconds"
        )
    text = value[:10] + "T" + value[11:]
    text = text[:-1] + "+00:00" if text[-1] in "Zz" else text
    main, _, rest = text.partition(".")
    if rest:  # Python keeps microseconds: truncate finer fractions
        digits = re.match(r"\d+", rest, re.ASCII).group(0)  # type: ignore[union-attr]
        text = f"{main}.{digits[:6].ljust(6, '0')}{rest[len(digits):]}"
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise ValueError("is not a real date and time") from None


def _from_epoch(value: int | float) -> datetime:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must be a finite number")
    if abs(value) > EPOCH_MAX_MAGNITUDE:
        raise ValueError("is out of range")
    seconds = value / 1000 if abs(value) >= EPOCH_MILLIS_THRESHOLD else value
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise ValueError("is out of range") from None


def _check_range(instant: datetime, now: datetime) -> None:
    if instant < EARLIEST_TIMESTAMP:
        raise ValueError(f"is before {EARLIEST_TIMESTAMP.date().isoformat()}")
    if instant > now + MAX_FUTURE_SKEW:
        raise ValueError("is more than a day in the future")


def validate_event(
    payload: Any, *, allowed_fields: frozenset[str] = CLIENT_FIELDS, now: datetime | None = None
) -> OrderEvent:
    """The event in normal form, or InvalidEvent listing every field that is wrong."""
    if not isinstance(payload, dict):
        raise InvalidEvent([FieldError("", "an event must be a JSON object")])
    now = now or datetime.now(UTC)
    errors: list[FieldError] = []
    if not payload.keys() <= allowed_fields:  # the usual case, without building a set
        errors.extend(FieldError(name, "unknown field") for name in sorted(set(payload) - allowed_fields))
    for name in REQUIRED_FIELDS:
        if name not in payload:
            errors.append(FieldError(name, "is required"))

    user_id = payload.get("user_id")
    if "user_id" in payload:
        reason = _user_id_problem(user_id)
        if reason:
            errors.append(FieldError("user_id", reason))

    timestamp = None
    if "timestamp" in payload:
        try:
            timestamp = parse_timestamp(payload["timestamp"])
            _check_range(timestamp, now)
        except ValueError as exc:
            errors.append(FieldError("timestamp", str(exc)))
            timestamp = None

    menu_type = None
    if "menu_type" in payload:
        raw = payload["menu_type"]
        menu_type = canonical_menu_type(raw) if isinstance(raw, str) else None
        if menu_type is None:
            errors.append(FieldError("menu_type", "must be 'japanese' or 'western' (or 和食 / 洋食)"))

    order_id = payload.get("order_id")
    if order_id is not None:
        reason = _order_id_problem(order_id)
        if reason:
            errors.append(FieldError("order_id", reason))

    received_at = None
    if payload.get("received_at") is not None and "received_at" in allowed_fields:
        try:
            received_at = parse_timestamp(payload["received_at"])
        except ValueError as exc:
            errors.append(FieldError("received_at", str(exc)))

    if errors:
        raise InvalidEvent(errors)
    assert timestamp is not None and menu_type is not None and isinstance(user_id, str)
    return OrderEvent(order_id, user_id, menu_type, timestamp, received_at)


# C0 and C1 control characters, DEL, and lone surrogates: one scan instead of one per rule.
USER_ID_BAD_CHARACTER = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def user_id_character_problem(text: str) -> str | None:
    """What is wrong with the characters of a user id (or of a prefix of one), or None:
    the rule every part applies, the ingest API, the streaming job and the viewer alike."""
    bad = USER_ID_BAD_CHARACTER.search(text)
    if bad is None:
        return None
    # JSON can spell a lone surrogate ("\\ud800"); it cannot be encoded as UTF-8 for Kafka.
    if bad.group() >= "\ud800":
        return "must be valid Unicode (no lone surrogates)"
    return "must not contain control characters"


def _user_id_problem(value: Any) -> str | None:
    if not isinstance(value, str):
        return "must be a string"
    if not value.strip():
        return "must not be empty"
    if len(value) > USER_ID_MAX_LENGTH:
        return f"must be at most {USER_ID_MAX_LENGTH} characters"
    return user_id_character_problem(value)


def _order_id_problem(value: Any) -> str | None:
    if not isinstance(value, str):
        return "must be a string"
    if not value or len(value) > ORDER_ID_MAX_LENGTH:
        return f"must be 1 to {ORDER_ID_MAX_LENGTH} characters"
    if not ORDER_ID_PATTERN.fullmatch(value):
        return "may contain only letters, digits and . _ : -"
    return None


def parse_record(value: bytes | None, *, now: datetime | None = None) -> OrderEvent:
    """Validate a raw Kafka record value (what the streaming job does for each record)."""
    if value is None:
        raise InvalidEvent([FieldError("", "record has no value")])
    if len(value) > MAX_EVENT_BYTES:
        raise InvalidEvent([FieldError("", f"record is larger than {MAX_EVENT_BYTES} bytes")])
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidEvent([FieldError("", "record is not UTF-8")]) from None
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidEvent([FieldError("", f"record is not JSON ({exc.msg})")]) from None
    except ValueError:  # an integer of more digits than Python converts
        raise InvalidEvent([FieldError("", "record is not JSON (a number is too long)")]) from None
    except RecursionError:
        raise InvalidEvent([FieldError("", "record is not JSON (nested too deeply)")]) from None
    return validate_event(payload, allowed_fields=RECORD_FIELDS, now=now)


def derived_order_id(topic: str, partition: int, offset: int) -> str:
    """The id of a record that carries no order_id: stable under replay of the topic."""
    return f"kafka:{topic}:{partition}:{offset}"


# --- parse_record's Spark twin, for the ingest API's canonical records -------------------

# A record exactly as the ingest API writes it (OrderEvent.with_ids(...).to_json_bytes()):
# the five keys in that order, no spaces, only characters that JSON takes literally (no
# escapes, no non-ASCII byte: an invalid UTF-8 byte cannot match either), the timestamp as
# format_timestamp writes it with an offset of a real zone (up to 14 hours, quarter hours),
# received_at in UTC. A Java regex (\A, \z: Java's $ would also match before a final newline).
# Years 2000 to 9999 only: the API's clock is in them, and Spark takes the year 0 that Python refuses.
_CANONICAL_TIME = r"[2-9]\d{3}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.(?:\d{3}|\d{6})"
# Printable ASCII but '"' and '\\': a user_id the Python rules need not judge character by character.
_CANONICAL_USER_ID = rf"[ !#-\[\]-~]{{1,{USER_ID_MAX_LENGTH}}}"
CANONICAL_RECORD_PATTERN = (
    rf'\A\{{"order_id":"({ORDER_ID_CHARACTERS}{{1,{ORDER_ID_MAX_LENGTH}}})",'
    rf'"user_id":"({_CANONICAL_USER_ID})",'
    rf'"menu_type":"({JAPANESE}|{WESTERN})",'
    rf'"timestamp":"({_CANONICAL_TIME}[+-](?:0\d|1[0-4]):(?:00|15|30|45))",'
    rf'"received_at":"({_CANONICAL_TIME}\+00:00)"\}}\z'
)
# Longer than any canonical record: the regex never scans a large value.
CANONICAL_RECORD_MAX_BYTES = 512


def with_canonical_event(df: DataFrame, name: str, value: Column, now: Column, eligible: Column) -> DataFrame:
    """Adds ``name``: ``parse_record``'s verdict as a Spark column, for the records it can
    judge exactly. An ``eligible`` canonical record (CANONICAL_RECORD_PATTERN) that every
    rule accepts at ``now`` gives the struct (order_id, user_id, menu_type, timestamp,
    timestamp_text, received_at) of the OrderEvent parse_record returns (timestamp_text: the
    timestamp as sent); any other record gives null, and is left to parse_record. It never
    rejects: a refusal's reason is parse_record's alone. tests/test_streaming_native.py
    proves the two agree."""
    stages, helpers = canonical_event_columns(name, value, now, eligible)
    return with_columns_in_turn(df, stages, helpers)


def with_columns_in_turn(df: DataFrame, stages: list[dict[str, Column]], dropped: list[str]) -> DataFrame:
    """df with each stage's columns added (a projection per stage), then ``dropped`` dropped."""
    for stage in stages:
        df = df.withColumns(stage)
    return df.drop(*dropped)


def canonical_event_columns(
    name: str, value: Column, now: Column, eligible: Column
) -> tuple[list[dict[str, Column]], list[str]]:
    """with_canonical_event's projections (the columns of each, in turn) and its helper
    columns, dropped after them. Columns are plain expressions: a caller that applies them to
    many frames (a stream's micro-batches) builds them once.

    Three projections, not one column: Spark does not share a subexpression between the
    branches of a CASE WHEN, so one column split the text and parsed each time once per
    use (about eight splits a record); the optimizer keeps a projection whose costly
    columns are used more than once, so each is computed once."""
    from pyspark.sql import functions as F

    text = value.cast("string")
    canonical = eligible & (F.length(value) <= CANONICAL_RECORD_MAX_BYTES) & text.rlike(CANONICAL_RECORD_PATTERN)
    # Once the pattern matched, no field holds a '"': the values sit at fixed places between
    # the quotes, and one split is cheaper than a regex per field.
    parts, timestamp, received_at = (f"_{name}_{part}" for part in ("parts", "timestamp", "received_at"))
    quoted = F.col(parts)
    order_id, user_id, menu_type, timestamp_text = quoted[3], quoted[7], quoted[11], quoted[15]
    split = {parts: F.when(canonical, F.split(text, '"'))}
    # Spark's own ISO parser (no format: several times cheaper than a pattern's), null for a
    # date or time that does not exist (February 30th, 24:00, a 60th second).
    times = {timestamp: F.try_to_timestamp(timestamp_text), received_at: F.try_to_timestamp(quoted[19])}
    # A null (a time that does not exist) leaves the record to parse_record, like false.
    accepted = (
        quoted.isNotNull()
        & (F.trim(user_id) != F.lit(""))  # only spaces: "must not be empty"
        & F.col(received_at).isNotNull()
        & (F.col(timestamp) >= F.lit(EARLIEST_TIMESTAMP))
        & (F.col(timestamp) <= now + F.expr(f"INTERVAL {MAX_FUTURE_SKEW.days} DAYS"))
    )
    event = F.struct(
        order_id.alias("order_id"),
        user_id.alias("user_id"),
        menu_type.alias("menu_type"),
        F.col(timestamp).alias("timestamp"),
        timestamp_text.alias("timestamp_text"),
        F.col(received_at).alias("received_at"),
    )
    return [split, times, {name: F.when(accepted, event)}], [parts, timestamp, received_at]
