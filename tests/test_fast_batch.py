"""The ingest API's two batch paths agree: ``ingest_api.fast_batch`` (msgspec, for bodies of
valid events in the usual form) either defers a body or accepts it with exactly the records
the careful path (``ingest_api.batch`` + ``validate_event`` + ``OrderEvent.to_json_bytes``)
would produce: the same events, fields, keys and order, a client's order_id kept, a new one
a random UUID. It never accepts what the careful path refuses, and it does take the usual
bodies (else it would be no fast path). Pure unit tests: no server."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest_api.batch import BatchRefused, json_array_items, ndjson_items, ndjson_lines
from ingest_api.fast_batch import json_array_records, ndjson_records
from orderlog.events import (
    EARLIEST_TIMESTAMP,
    MAX_EVENT_BYTES,
    MAX_FUTURE_SKEW,
    InvalidEvent,
    OrderEvent,
    validate_event,
)
from tests.hostile import json_values, near_valid_events, valid_events

NOW = datetime(2025, 6, 1, tzinfo=UTC)
MAX_BATCH = 40
ZONES = [UTC, timezone(timedelta(hours=9)), timezone(timedelta(hours=-7, minutes=-30)),
         timezone(timedelta(hours=14)), timezone(timedelta(hours=-12)), timezone(timedelta(hours=5, minutes=45))]
MENUS = ["japanese", "western", "和食", "洋食", " Japanese ", "WESTERN", "sushi", ""]
PROPERTY = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                             HealthCheck.data_too_large])


def careful(body: bytes, ndjson: bool, max_batch: int = MAX_BATCH) -> list[OrderEvent] | None:
    """What the careful path accepts (the events), or None when it refuses the body."""
    items = ndjson_items(body, max_batch) if ndjson else json_array_items(body, max_batch)
    events = []
    try:
        for value, problem in items:
            if problem is not None:
                return None
            events.append(validate_event(value, now=NOW))
    except (BatchRefused, InvalidEvent):
        return None
    return events or None


def fast(body: bytes, ndjson: bool, max_batch: int = MAX_BATCH):
    if ndjson:
        lines = ndjson_lines(body, max_batch)
        return None if lines is None else ndjson_records(lines, NOW, NOW)
    return json_array_records(body, max_batch, NOW, NOW)


def assert_agree(body: bytes, ndjson: bool, max_batch: int = MAX_BATCH) -> bool:
    """The fast path defers, or accepts exactly what the careful path does. True if it accepted."""
    quick = fast(body, ndjson, max_batch)
    if quick is None:
        return False
    events = careful(body, ndjson, max_batch)
    assert events is not None, f"the fast path accepted a body the careful path refuses: {body[:300]!r}"
    records, order_ids = quick
    assert len(records) == len(order_ids) == len(events)
    for (key, value), order_id, event in zip(records, order_ids, events, strict=True):
        if event.order_id is not None:
            assert order_id == event.order_id
        else:
            assert uuid.UUID(hex=order_id).version == 4 and len(order_id) == 32
        assert key == event.user_id.encode("utf-8")
        assert value == event.with_ids(NOW, order_id).to_json_bytes()
    return True


def usual_timestamp(instant: datetime, style: str) -> str:
    if style == "ms":
        return instant.isoformat(timespec="milliseconds")
    if style == "us":
        return instant.isoformat(timespec="microseconds")
    if style == "s":
        return instant.isoformat(timespec="seconds")
    if style == "Z":
        return instant.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if style == "-00:00":
        return instant.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "-00:00")
    digits = int(style)  # a fraction of 1 to 6 digits, cut (not rounded) like parse_timestamp
    text = instant.isoformat(timespec="microseconds")
    return text[:20 + digits] + text[26:]


@st.composite
def usual_events(draw: st.DrawFn) -> dict[str, object]:
    """Valid events as clients usually write them: an ISO timestamp with 'T', at most
    microseconds, Z or an offset; any valid user id and menu spelling."""
    moment = draw(st.datetimes(min_value=datetime(2000, 1, 2), max_value=datetime(2025, 5, 31)))
    instant = moment.replace(tzinfo=draw(st.sampled_from(ZONES)))
    if draw(st.booleans()):
        instant = instant.replace(microsecond=instant.microsecond // 1000 * 1000)
    style = draw(st.sampled_from(["ms", "us", "s", "Z", "-00:00", "1", "2", "3", "4", "5", "6"]))
    event: dict[str, object] = {
        "user_id": draw(st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=128)
                        .filter(lambda text: text.strip() and not any(c < " " or "\x7f" <= c <= "\x9f" for c in text))),
        "timestamp": usual_timestamp(instant, style),
        "menu_type": draw(st.sampled_from(MENUS[:6])),
    }
    if draw(st.booleans()):
        event["order_id"] = draw(st.from_regex(r"[A-Za-z0-9._:-]{1,64}", fullmatch=True) | st.none())
    return event


@st.composite
def edge_events(draw: st.DrawFn) -> dict[str, object]:
    """Usual-looking events at and across every rule's edge."""
    event = draw(usual_events())
    field = draw(st.sampled_from(["user_id", "timestamp", "menu_type", "order_id"]))
    if field == "user_id":
        event["user_id"] = draw(st.sampled_from(
            ["", " ", "\u3000", "\x85", "\x1c", "a\x00", "a\x7f", "a\x9f", "a\xa0", "x" * 128, "x" * 129,
             "é" * 129, "\U0001f600" * 128, "\U0001f600" * 129, "a\u2028", "\t a", "a\n", "\na"])
            | st.text(max_size=130))
    elif field == "timestamp":
        moment = draw(st.sampled_from([EARLIEST_TIMESTAMP, NOW + MAX_FUTURE_SKEW]))
        moment += timedelta(microseconds=draw(st.integers(-2, 2)))
        event["timestamp"] = draw(st.sampled_from([
            usual_timestamp(moment, "us"), "2025-13-01T00:00:00+09:00", "2025-02-30T00:00:00Z",
            "2025-05-31T24:00:00+09:00", "2025-05-31T12:00:00+24:00", "2025-05-31T12:00:00+23:59",
            "2025-05-31T12:00:00.1234567Z", "2025-05-31 12:00:00Z", "2025-05-31t12:00:00z",
            "2025-05-31T12:00:00", "2025-05-31T12:00:00+0900", "20250531T120000Z", "2025-W22-6T12:00:00Z",
            "2025-05-31T12Z", "1999-12-31T23:59:59.999Z", "０２０２5-05-31T12:00:00Z", "1748692800",
        ]))
    elif field == "menu_type":
        event["menu_type"] = draw(st.sampled_from(MENUS) | st.text(max_size=10))
    else:
        event["order_id"] = draw(st.sampled_from(["", "x" * 64, "x" * 65, "a b", "a/b", "é", "ok.id:1-2_3", "abc\n",
                                                  "\nabc"])
                                 | st.text(max_size=70))
    return event


def element_text(event: object, draw: st.DrawFn, duplicates: bool) -> str:
    """An element as JSON, written as clients do: ASCII escapes or not, any separators, and
    (with duplicates) now and then a key given twice (JSON's last one wins, on both paths; the
    fast path defers when the first one would not pass)."""
    if duplicates and isinstance(event, dict) and event and draw(st.integers(0, 9)) == 0:
        key = draw(st.sampled_from(sorted(event)))
        pairs = [(key, draw(json_values)), *event.items()]
        return "{" + ",".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in pairs) + "}"
    separators = draw(st.sampled_from([(",", ":"), (", ", ": "), (" ,\n", " :\t")]))
    return json.dumps(event, ensure_ascii=draw(st.booleans()), separators=separators)


@st.composite
def bodies(draw: st.DrawFn, events: st.SearchStrategy, duplicates: bool = True) -> tuple[bytes, bool]:
    """A JSON-array or NDJSON body of the events, with any JSON whitespace around them."""
    elements = [element_text(e, draw, duplicates) for e in draw(st.lists(events, min_size=0, max_size=MAX_BATCH + 2))]
    space = st.sampled_from(["", " ", "\n", "\r\n", "\t "])
    ndjson = draw(st.booleans())
    if ndjson:
        text = "".join(e + draw(st.sampled_from(["\n", "\r\n", "\n\n", " \n"])) for e in elements)
    else:
        text = "[" + ",".join(draw(space) + e + draw(space) for e in elements) + "]" + draw(space)
    return text.encode("utf-8", "surrogatepass"), ndjson


ANY_EVENT = usual_events() | edge_events() | valid_events() | near_valid_events() | json_values


@PROPERTY
@given(body=bodies(usual_events(), duplicates=False))
def test_bodies_of_usual_valid_events_take_the_fast_path_with_the_careful_paths_records(body):
    data, ndjson = body
    count = len(careful(data, ndjson, max_batch=10**6) or [])
    accepted = assert_agree(data, ndjson)
    assert accepted == (0 < count <= MAX_BATCH), "a body of usual valid events within the limit must be taken"


@PROPERTY
@given(body=bodies(ANY_EVENT))
def test_any_body_is_deferred_or_accepted_exactly_as_the_careful_path_does(body):
    assert_agree(*body)


@PROPERTY
@given(body=bodies(usual_events()), at=st.integers(min_value=0),
       byte=st.sampled_from(list(b'0Z:+-. "\\{},\x00\x7f\xff')),
       change=st.sampled_from(["replace", "remove", "insert"]))
def test_a_body_with_one_byte_changed_is_deferred_or_judged_alike(body, at, byte, change):
    data, ndjson = body
    if not data:
        return
    at %= len(data)
    data = {"replace": data[:at] + bytes([byte]) + data[at + 1:], "remove": data[:at] + data[at + 1:],
            "insert": data[:at] + bytes([byte]) + data[at:]}[change]
    assert_agree(data, ndjson)


def test_an_element_padded_past_an_events_limit_is_left_to_the_careful_path():
    padded = ('{"user_id": "u-1",' + " " * MAX_EVENT_BYTES
              + '"timestamp": "2025-05-31T12:00:00.000+09:00", "menu_type": "japanese"}')
    body = f"[{padded}]".encode()
    assert fast(body, ndjson=False) is None and careful(body, ndjson=False) is None
    assert fast(padded.encode() + b"\n", ndjson=True) is None


@pytest.mark.parametrize("body", [b"[]", b"", b"[1" + b",1" * 100_000 + b"]", b"[" * 100_000, b"{}", b"null"])
def test_empty_oversized_and_malformed_bodies_are_left_to_the_careful_path(body):
    assert fast(body, ndjson=False) is None


def test_more_events_than_the_limit_are_left_to_the_careful_path_which_says_413():
    event = json.dumps({"user_id": "u", "timestamp": "2025-05-31T12:00:00.000Z", "menu_type": "western"})
    body = f"[{','.join([event] * (MAX_BATCH + 1))}]".encode()
    assert fast(body, ndjson=False) is None
    assert fast(body[1:-1].replace(b"},{", b"}\n{"), ndjson=True) is None
    assert fast(f"[{','.join([event] * MAX_BATCH)}]".encode(), ndjson=False) is not None
