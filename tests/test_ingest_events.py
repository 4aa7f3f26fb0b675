"""The event rules (orderlog.events) that the ingest API and the streaming job share."""

from __future__ import annotations

import functools
import json
import operator
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orderlog.events import (
    InvalidEvent,
    OrderEvent,
    new_order_id,
    parse_record,
    validate_event,
)

NOW = datetime(2025, 6, 1, 0, 0, tzinfo=UTC)
JST = timezone(timedelta(hours=9))
GOOD = {"user_id": "u-1", "timestamp": "2025-05-31T12:34:56+09:00", "menu_type": "japanese"}

NOT_ISO = (
    "is not ISO-8601 with a UTC offset (e.g. 2025-05-31T12:34:56+09:00) nor epoch seconds/milliseconds"
)
NOT_TIME = "must be an ISO-8601 string with a UTC offset or epoch seconds/milliseconds"
NO_OFFSET = "has no UTC offset (add Z or +09:00, for example)"
MENU = "must be 'japanese' or 'western' (or 和食 / 洋食)"


def errors_of(payload: object) -> list[tuple[str, str]]:
    with pytest.raises(InvalidEvent) as info:
        validate_event(payload, now=NOW)
    return [(e.field, e.reason) for e in info.value.errors]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, ("u-1", "japanese", datetime(2025, 5, 31, 12, 34, 56, tzinfo=JST))),
        ({"menu_type": "WESTERN"}, ("u-1", "western", None)),
        ({"menu_type": " Japanese "}, ("u-1", "japanese", None)),
        ({"menu_type": "和食"}, ("u-1", "japanese", None)),
        ({"menu_type": "洋食"}, ("u-1", "western", None)),
        ({"timestamp": "2025-05-31T03:34:56Z"}, ("u-1", "japanese", datetime(2025, 5, 31, 3, 34, 56, tzinfo=UTC))),
        ({"timestamp": "2025-05-31 03:34:56z"}, ("u-1", "japanese", datetime(2025, 5, 31, 3, 34, 56, tzinfo=UTC))),
        ({"timestamp": 1748662496}, ("u-1", "japanese", datetime(2025, 5, 31, 3, 34, 56, tzinfo=UTC))),
        ({"timestamp": 1748662496123}, ("u-1", "japanese", datetime(2025, 5, 31, 3, 34, 56, 123000, tzinfo=UTC))),
        ({"timestamp": "1748662496"}, ("u-1", "japanese", datetime(2025, 5, 31, 3, 34, 56, tzinfo=UTC))),
        ({"timestamp": 1748662496.5}, ("u-1", "japanese", datetime(2025, 5, 31, 3, 34, 56, 500000, tzinfo=UTC))),
        (
            {"timestamp": "2025-05-31T12:34:56.123456789+09:00"},
            ("u-1", "japanese", datetime(2025, 5, 31, 12, 34, 56, 123456, tzinfo=JST)),
        ),
        ({"user_id": "ユーザー😀"}, ("ユーザー😀", "japanese", None)),
        ({"user_id": "x" * 128}, ("x" * 128, "japanese", None)),
        ({"order_id": "client-1:a.b_c"}, ("u-1", "japanese", None)),
        ({"order_id": None}, ("u-1", "japanese", None)),
        # a day ahead of the server's clock is still plausible (clock skew)
        ({"timestamp": "2025-06-01T23:59:59Z"}, ("u-1", "japanese", None)),
        ({"timestamp": "2000-01-01T00:00:00Z"}, ("u-1", "japanese", None)),
    ],
)
def test_valid_events_are_normalized(changes, expected):
    event = validate_event({**GOOD, **changes}, now=NOW)
    user_id, menu_type, timestamp = expected
    assert (event.user_id, event.menu_type) == (user_id, menu_type)
    if timestamp is not None:
        assert event.timestamp == timestamp
        assert event.timestamp.utcoffset() == timestamp.utcoffset()  # the client's offset is kept


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ([GOOD], [("", "an event must be a JSON object")]),
        ("u-1", [("", "an event must be a JSON object")]),
        (None, [("", "an event must be a JSON object")]),
        ({}, [("user_id", "is required"), ("timestamp", "is required"), ("menu_type", "is required")]),
        ({**GOOD, "price": 100}, [("price", "unknown field")]),
        ({**GOOD, "received_at": "2025-05-31T00:00:00Z"}, [("received_at", "unknown field")]),
        ({**GOOD, "user_id": ""}, [("user_id", "must not be empty")]),
        ({**GOOD, "user_id": "   "}, [("user_id", "must not be empty")]),
        ({**GOOD, "user_id": 42}, [("user_id", "must be a string")]),
        ({**GOOD, "user_id": None}, [("user_id", "must be a string")]),
        ({**GOOD, "user_id": "x" * 129}, [("user_id", "must be at most 128 characters")]),
        ({**GOOD, "user_id": "a\nb"}, [("user_id", "must not contain control characters")]),
        ({**GOOD, "user_id": "a\x7fb"}, [("user_id", "must not contain control characters")]),
        ({**GOOD, "user_id": "a\x85b"}, [("user_id", "must not contain control characters")]),
        ({**GOOD, "user_id": "a\ud800b"}, [("user_id", "must be valid Unicode (no lone surrogates)")]),
        ({**GOOD, "menu_type": "chinese"}, [("menu_type", MENU)]),
        ({**GOOD, "menu_type": ""}, [("menu_type", MENU)]),
        ({**GOOD, "menu_type": 1}, [("menu_type", MENU)]),
        ({**GOOD, "menu_type": ["japanese"]}, [("menu_type", MENU)]),
        ({**GOOD, "timestamp": "2025-05-31T12:34:56"}, [("timestamp", NO_OFFSET)]),
        ({**GOOD, "timestamp": "2025-05-31"}, [("timestamp", NOT_ISO)]),
        ({**GOOD, "timestamp": "yesterday"}, [("timestamp", NOT_ISO)]),
        ({**GOOD, "timestamp": "٢٠٢٥-05-31T12:34:56+09:00"}, [("timestamp", NOT_ISO)]),
        ({**GOOD, "timestamp": "١٧٤٨٦٦٢٤٩٦"}, [("timestamp", NOT_ISO)]),
        ({**GOOD, "timestamp": "2025-02-30T12:34:56+09:00"}, [("timestamp", "is not a real date and time")]),
        ({**GOOD, "timestamp": "2025-05-31T25:00:00+09:00"}, [("timestamp", "is not a real date and time")]),
        ({**GOOD, "timestamp": "2025-05-31T12:00:00+24:00"}, [("timestamp", "is not a real date and time")]),
        ({**GOOD, "timestamp": "1999-12-31T23:59:59Z"}, [("timestamp", "is before 2000-01-01")]),
        ({**GOOD, "timestamp": 0}, [("timestamp", "is before 2000-01-01")]),
        ({**GOOD, "timestamp": -1}, [("timestamp", "is before 2000-01-01")]),
        ({**GOOD, "timestamp": "2025-06-02T00:00:01Z"}, [("timestamp", "is more than a day in the future")]),
        ({**GOOD, "timestamp": 10**30}, [("timestamp", "is out of range")]),
        ({**GOOD, "timestamp": 1e300}, [("timestamp", "is out of range")]),
        ({**GOOD, "timestamp": float("nan")}, [("timestamp", "must be a finite number")]),
        ({**GOOD, "timestamp": True}, [("timestamp", NOT_TIME)]),
        ({**GOOD, "timestamp": None}, [("timestamp", NOT_TIME)]),
        ({**GOOD, "timestamp": {"s": 1}}, [("timestamp", NOT_TIME)]),
        ({**GOOD, "order_id": ""}, [("order_id", "must be 1 to 64 characters")]),
        ({**GOOD, "order_id": "x" * 65}, [("order_id", "must be 1 to 64 characters")]),
        ({**GOOD, "order_id": "a b"}, [("order_id", "may contain only letters, digits and . _ : -")]),
        ({**GOOD, "order_id": "注文1"}, [("order_id", "may contain only letters, digits and . _ : -")]),
        ({**GOOD, "order_id": 7}, [("order_id", "must be a string")]),
        (
            {"user_id": "", "menu_type": "x", "extra": 1},
            [("extra", "unknown field"), ("timestamp", "is required"), ("user_id", "must not be empty"),
             ("menu_type", MENU)],
        ),
    ],
)
def test_invalid_events_name_every_bad_field_and_why(payload, expected):
    assert errors_of(payload) == expected


def test_the_normal_form_keeps_the_offset_and_adds_ids():
    event = validate_event({**GOOD, "menu_type": "和食"}, now=NOW)
    stamped = event.with_ids(datetime(2025, 5, 31, 3, 34, 57, 120000, tzinfo=UTC), new_id="o-1")
    assert json.loads(stamped.to_json_bytes()) == {
        "order_id": "o-1",
        "user_id": "u-1",
        "menu_type": "japanese",
        "timestamp": "2025-05-31T12:34:56.000+09:00",
        "received_at": "2025-05-31T03:34:57.120+00:00",
    }
    # a client's order_id is kept: retries with the same id stay one order
    kept = validate_event({**GOOD, "order_id": "c-9"}, now=NOW).with_ids(NOW, new_id="o-2")
    assert kept.order_id == "c-9"


def test_a_produced_record_parses_back_to_the_same_event():
    event = validate_event({**GOOD, "user_id": "ユーザー"}, now=NOW).with_ids(NOW, new_id="o-1")
    assert parse_record(event.to_json_bytes(), now=NOW) == event


_ZONES = st.integers(-14 * 60, 14 * 60).map(lambda minutes: timezone(timedelta(minutes=minutes)))
_INSTANTS = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9998, 12, 30), timezones=_ZONES)


@settings(max_examples=500, deadline=None)
@given(
    # Any text JSON can carry (no lone surrogates: UTF-8 cannot), quotes, backslashes, controls.
    user_id=st.text(st.characters(blacklist_categories=("Cs",))),
    order_id=st.none() | st.text(st.characters(blacklist_categories=("Cs",))),
    menu_type=st.sampled_from(["japanese", "western"]),
    timestamp=_INSTANTS,
    received_at=st.none() | _INSTANTS,
)
def test_the_canonical_bytes_are_what_json_dumps_writes(user_id, order_id, menu_type, timestamp, received_at):
    # The streaming job, the replay tool and the records already in Kafka rely on these bytes.
    event = OrderEvent(order_id, user_id, menu_type, timestamp, received_at)
    expected = json.dumps(event.to_record(), ensure_ascii=False, separators=(",", ":")).encode()
    assert event.to_json_bytes() == expected


def test_order_ids_are_random_uuid4_hex():
    ids = [new_order_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    for order_id in ids[:1000]:
        parsed = uuid.UUID(hex=order_id)
        assert (parsed.hex, parsed.version, parsed.variant) == (order_id, 4, uuid.RFC_4122)
    # every one of the 122 random bits varies; the 6 version and variant bits do not
    never_set = (0xB000 << 64) | (0x4000 << 48)
    assert functools.reduce(operator.or_, (int(i, 16) for i in ids)) == (2**128 - 1) & ~never_set


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "record has no value"),
        (b"\xff\xfe", "record is not UTF-8"),
        (b"{", "record is not JSON (Expecting property name enclosed in double quotes)"),
        (b"x" * 5000, "record is larger than 4096 bytes"),
        (b"[]", "an event must be a JSON object"),
    ],
)
def test_bad_records_are_refused_with_the_reason(value, reason):
    with pytest.raises(InvalidEvent) as info:
        parse_record(value, now=NOW)
    assert [(e.field, e.reason) for e in info.value.errors] == [("", reason)]


def test_records_may_carry_received_at_but_clients_may_not():
    record = {**GOOD, "order_id": "o-1", "received_at": "2025-05-31T03:34:57.120+00:00"}
    event = parse_record(json.dumps(record).encode(), now=NOW)
    assert isinstance(event, OrderEvent)
    assert event.received_at == datetime(2025, 5, 31, 3, 34, 57, 120000, tzinfo=UTC)
    assert errors_of(record) == [("received_at", "unknown field")]
