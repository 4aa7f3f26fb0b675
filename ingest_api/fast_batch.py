"""The fast path of a batch: the usual body, decoded and checked in C, stamped in one pass.

A batch of well-formed events is what clients send nearly always. For it, the careful path
(ingest_api/batch.py reading one element at a time, then ``validate_event`` on each dict)
spends about 20 us of CPython per event before librdkafka sees a record; here msgspec (a JSON
decoder written in C) splits the body into its elements and decodes each into a typed struct
(the fields, their types and lengths: the constants of ``orderlog/events.py``), and one
Python loop checks the rest of its rules and writes the canonical record, with no call per
event it can spare (about 4 us per event, 14 on the careful path).

The fast path only ever *accepts*: it returns the records of a body it can judge exactly, or
None, and then the careful path reads the body again and says what is wrong (or accepts it:
an epoch timestamp, a lone surrogate, an unknown field... are judged there). A hypothesis
property test holds the two to the same decision and the same fields on generated bodies,
valid and not, canonical and not (tests/test_fast_batch.py).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

import msgspec

from orderlog.events import (
    EARLIEST_TIMESTAMP,
    MAX_EVENT_BYTES,
    MAX_FUTURE_SKEW,
    ORDER_ID_CHARACTERS,
    ORDER_ID_MAX_LENGTH,
    USER_ID_BAD_CHARACTER,
    USER_ID_MAX_LENGTH,
    format_timestamp,
    json_string_literal,
    new_order_ids,
    utc_text,
)
from orderlog.menu import JAPANESE, WESTERN, canonical_menu_type

# The ISO form nearly every client sends: 'T', at most microseconds, 'Z' or an offset. Other
# forms (epoch numbers, ' ' or 't', finer fractions) take the careful path.
TIMESTAMP_FORM = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})"
)
# Bodies with more commas than this per accepted event cannot be all events (an event has at
# most four fields): the careful path counts them, so a body of a million tiny elements is
# never split into a million objects here.
_COMMAS_PER_EVENT = 5


class ClientEvent(msgspec.Struct, forbid_unknown_fields=True):
    """An event's fields and types as a client sends them. The user id's characters and the
    timestamp's form are checked in Python (a regular expression called by msgspec costs
    more than the same call from the loop); the rare order_id is checked here."""

    user_id: Annotated[str, msgspec.Meta(max_length=USER_ID_MAX_LENGTH)]
    timestamp: str
    menu_type: str
    order_id: (
        Annotated[str, msgspec.Meta(max_length=ORDER_ID_MAX_LENGTH, pattern=rf"\A{ORDER_ID_CHARACTERS}+\Z")] | None
    ) = None


_SPLIT_ARRAY = msgspec.json.Decoder(list[msgspec.Raw])
_DECODE_EVENT = msgspec.json.Decoder(ClientEvent)
_MENU_AS_SENT = {JAPANESE: JAPANESE, WESTERN: WESTERN}

Record = tuple[bytes, bytes]
# What msgspec raises for bytes that are not such an event (RecursionError: deep nesting).
_UNDECODABLE = (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError)


class Defer(Exception):
    """The body is not one the fast path judges: the careful path reads it."""


def _canonical_time(text: str, timestamp: datetime) -> str:
    """format_timestamp(timestamp), spelled from the text as sent (TIMESTAMP_FORM) where that
    takes no arithmetic: formatting a datetime costs more than the rest of an event.
    format_timestamp writes milliseconds unless there are finer digits, and +00:00 for UTC."""
    if text[-1] == "Z":
        main, offset = text[:-1], "+00:00"
    else:
        main, offset = text[:-6], text[-6:]
        if offset == "-00:00":
            offset = "+00:00"
    length = len(main)
    if length == 19:
        return f"{main}.000{offset}"
    if length == 23 or (length == 26 and main[23:] != "000"):
        return main + offset
    if length == 26:
        return main[:23] + offset
    return format_timestamp(timestamp)  # 1, 2, 4 or 5 digits of a second


def _stamped(raw_events: list, now: datetime, received_at: datetime) -> tuple[list[Record], list[str]]:
    """The (key, value) record and order id of each event; Defer at the first one that is
    not valid in the usual form. One loop, no call per event it can spare: this is the
    ingest API's hot path."""
    received = utc_text(received_at)
    latest = now + MAX_FUTURE_SKEW
    records: list[Record] = []
    order_ids: list[str] = []
    decode, bad_character, timestamp_form = _DECODE_EVENT.decode, USER_ID_BAD_CHARACTER.search, TIMESTAMP_FORM.fullmatch
    for raw, new_id in zip(raw_events, new_order_ids(len(raw_events)), strict=True):
        if len(raw) > MAX_EVENT_BYTES:
            raise Defer
        try:
            event = decode(raw)
        except _UNDECODABLE:
            raise Defer from None
        # orderlog.events.validate_event's rules: a user id not only whitespace (str.strip()
        # and validate_event agree: the same call), no control character (msgspec never
        # decodes a lone surrogate); the menu type in any accepted spelling; the time real,
        # from 2000 on and at most a day ahead.
        user_id, text = event.user_id, event.timestamp
        if not user_id.strip() or bad_character(user_id) or timestamp_form(text) is None:
            raise Defer
        menu_type = _MENU_AS_SENT.get(event.menu_type) or canonical_menu_type(event.menu_type)
        if menu_type is None:
            raise Defer
        try:
            # What parse_timestamp makes of this form (datetime.fromisoformat reads a
            # fraction of 1 to 6 digits as parse_timestamp's padding does), Z as +00:00.
            timestamp = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1] == "Z" else text)
        except ValueError:
            raise Defer from None
        if timestamp < EARLIEST_TIMESTAMP or timestamp > latest:
            raise Defer
        order_id = event.order_id or new_id
        # OrderEvent.to_json_bytes, field for field (a property test holds them equal).
        records.append((user_id.encode(), (
            f'{{"order_id":"{order_id}","user_id":{json_string_literal(user_id)},"menu_type":"{menu_type}",'
            f'"timestamp":"{_canonical_time(text, timestamp)}","received_at":"{received}"}}'
        ).encode()))
        order_ids.append(order_id)
    return records, order_ids


def json_array_records(
    data: bytes, max_batch: int, now: datetime, received_at: datetime
) -> tuple[list[Record], list[str]] | None:
    """The (key, value) records and order ids of a JSON-array body of valid events, stamped
    with received_at; None for any body the careful path must judge."""
    if data.count(b",") > _COMMAS_PER_EVENT * max_batch:
        return None
    try:
        raw_events = _SPLIT_ARRAY.decode(data)
        if not 0 < len(raw_events) <= max_batch:
            return None
        return _stamped(raw_events, now, received_at)
    except (Defer, *_UNDECODABLE):
        return None


def ndjson_records(
    lines: list[memoryview], now: datetime, received_at: datetime
) -> tuple[list[Record], list[str]] | None:
    """The same for the non-blank lines of an NDJSON body (batch.ndjson_lines: counted, each
    within an event's limit)."""
    if not lines:
        return None
    try:
        return _stamped(lines, now, received_at)
    except Defer:
        return None
