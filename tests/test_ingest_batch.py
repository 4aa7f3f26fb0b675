"""The batch readers of the ingest API (ingest_api/batch.py), as pure functions of the
body's bytes: they read exactly what json.loads reads, one event at a time, and refuse
the rest with a clear message (unit tests, no servers)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest_api.batch import (
    WINDOW_BYTES,
    BatchRefused,
    count_ndjson_events,
    json_array_items,
    loads,
    ndjson_items,
)
from orderlog.events import MAX_EVENT_BYTES

TOO_LARGE = f"event is larger than {MAX_EVENT_BYTES} bytes (the limit of one event)"


def read(items: Any) -> list[Any]:
    return list(items)


def refused(body: bytes, max_batch: int = 100, ndjson: bool = False) -> tuple[int, str]:
    with pytest.raises(BatchRefused) as caught:
        read(ndjson_items(body, max_batch) if ndjson else json_array_items(body, max_batch))
    return caught.value.status, caught.value.message


# -- JSON arrays: what is read ------------------------------------------------------------------


def test_elements_are_read_in_order_with_any_whitespace() -> None:
    body = b' \r\n[ {"a": 1} ,\n\t[2, 3],"\xe3\x83\xa6",null , 4.5e1,true]\n '
    assert read(json_array_items(body, 100)) == [({"a": 1}, None), ([2, 3], None), ("ユ", None), (None, None),
                                                  (45.0, None), (True, None)]


def test_an_element_larger_than_an_event_is_an_error_for_its_index_and_reading_goes_on() -> None:
    big = {"user_id": "x" * MAX_EVENT_BYTES}
    body = json.dumps([{"a": 1}, big, {"b": 2}]).encode()
    assert read(json_array_items(body, 100)) == [({"a": 1}, None), (None, TOO_LARGE), ({"b": 2}, None)]
    # Measured in UTF-8 bytes, not characters: 1,368 Japanese characters are 4,104 bytes.
    body = json.dumps([{"u": "ユ" * 1368}, 1], ensure_ascii=False).encode()
    assert read(json_array_items(body, 100)) == [(None, TOO_LARGE), (1, None)]


def test_an_element_larger_than_a_window_stops_the_scan_at_its_index() -> None:
    body = json.dumps([{"a": 1}, ["x"] * 5000, "not read", "nor this"]).encode()
    assert read(json_array_items(body, 100)) == [
        ({"a": 1}, None), (None, f"{TOO_LARGE}; the events after it were not read")
    ]
    endless_number = b"[" + b"1" * 20_000 + b"]"
    assert read(json_array_items(endless_number, 100)) == [
        (None, f"{TOO_LARGE}; the events after it were not read")
    ]


def test_an_element_of_exactly_the_limit_is_read() -> None:
    element = json.dumps({"u": "y" * (MAX_EVENT_BYTES - 9)}).encode()
    assert len(element) == MAX_EVENT_BYTES
    body = b"[" + b" " * (WINDOW_BYTES - 3) + b"0," + element + b"]"  # the element straddles two windows
    assert read(json_array_items(body, 100)) == [(0, None), (json.loads(element), None)]
    # The window ends inside a number: it is not taken for a shorter one.
    body = b"[" + b" " * (WINDOW_BYTES - 4) + b"12345678, " + "\"ユ\"".encode() + b"]"
    assert read(json_array_items(body, 100)) == [(12345678, None), ("ユ", None)]
    # ... nor inside a character of several bytes.
    body = b"[" + b" " * (WINDOW_BYTES - 3) + "\"ユーザー\"".encode() + b"]"
    assert read(json_array_items(body, 100)) == [("ユーザー", None)]


def test_the_413_comes_as_the_element_after_the_limit_begins() -> None:
    assert refused(b"[{}, {}, {}, {} this is never looked at", max_batch=3) == (
        413, "the batch has more than 3 events; at most 3 are accepted per request"
    )
    assert read(json_array_items(b"[{}, {}, {}]", 3)) == [({}, None)] * 3


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "a batch must be a JSON array of events (or NDJSON)"),
        (b'{"user_id": "u"}', "a batch must be a JSON array of events (or NDJSON)"),
        (b"\xef\xbb\xbf[]", "a batch must be a JSON array of events (or NDJSON)"),  # a BOM is not JSON
        (b"[", "malformed JSON: Expecting value: line 1 column 2 (byte 1)"),
        (b"[{}", "malformed JSON: Expecting ',' delimiter: line 1 column 4 (byte 3)"),
        (b"[1,]", "malformed JSON: Expecting value: line 1 column 4 (byte 3)"),
        (b"[{} {}]", "malformed JSON: Expecting ',' delimiter: line 1 column 5 (byte 4)"),
        (b"[{}] []", "malformed JSON: Extra data: line 1 column 6 (byte 5)"),
        (b'[\n  {"a": 1},\n  {"b" 2}\n]', "malformed JSON: Expecting ':' delimiter: line 3 column 8 (byte 21)"),
        ('["ユーザー", {"a" 1}]'.encode(), "malformed JSON: Expecting ':' delimiter: line 1 column 23 (byte 22)"),
        (b'[{"a": NaN}]', "malformed JSON: NaN is not valid JSON (event 0)"),
        (b"[0, -Infinity]", "malformed JSON: -Infinity is not valid JSON (event 1)"),
        (b'[{}, "\xff"]', "malformed JSON: the body is not UTF-8 (byte 6)"),
        (b"[{}, " + b"[" * 3000 + b"]" * 3000 + b"]", "malformed JSON: event 1 is nested too deeply"),
    ],
)
def test_malformed_arrays_are_refused_saying_where(body: bytes, message: str) -> None:
    assert refused(body) == (400, message)


# -- JSON arrays: the same as json.loads, whatever the body -------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=30,
)
# Long strings and runs of whitespace move elements across the windows' edges.
elements = st.one_of(json_values, st.text(min_size=500, max_size=1400), st.text(alphabet="ユ😀x\\\"", max_size=1500))
spaces = st.text(alphabet=" \t\r\n", max_size=30) | st.integers(0, 6000).map(lambda n: " " * n)


@st.composite
def arrays(draw: st.DrawFn) -> tuple[bytes, list[int]]:
    """A JSON array body, and the size in bytes of each of its elements."""
    values = draw(st.lists(elements, max_size=12))
    ascii_only = draw(st.booleans())
    parts = [json.dumps(v, ensure_ascii=ascii_only) for v in values]
    gaps = [draw(spaces) for _ in range(2 * len(parts) + 2)]
    inner = ",".join(f"{gaps[2 * n]}{p}{gaps[2 * n + 1]}" for n, p in enumerate(parts)) or gaps[0]
    return f"{gaps[-2]}[{inner}]{gaps[-1]}".encode(), [len(p.encode()) for p in parts]


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(array=arrays())
def test_a_valid_array_reads_exactly_as_json_loads_does(array: tuple[bytes, list[int]]) -> None:
    """Every element within the limit is read as json.loads reads it; every larger one is
    refused by index, and one larger than a window ends the scan."""
    body, sizes = array
    expected, got = loads(body), read(json_array_items(body, 100))
    for n, size in enumerate(sizes):
        if size <= MAX_EVENT_BYTES:
            assert got[n] == (expected[n], None)
        else:
            assert got[n][0] is None and got[n][1].startswith(TOO_LARGE)
            if got[n][1] != TOO_LARGE:
                assert len(got) == n + 1 and size > WINDOW_BYTES - 32
                return
    assert len(got) == len(sizes)


@st.composite
def damaged_bodies(draw: st.DrawFn) -> bytes:
    """A valid array with a few bytes replaced, inserted or removed."""
    body = bytearray(draw(arrays())[0])
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(body)))
        edit = draw(st.sampled_from(["replace", "insert", "delete"]))
        byte = draw(st.sampled_from(b'[]{},:"\\ 0e-.nx\xff\xe3'))
        if edit == "insert" or not body:
            body[at:at] = bytes([byte])
        elif edit == "replace":
            body[min(at, len(body) - 1)] = byte
        else:
            del body[min(at, len(body) - 1)]
    return bytes(body)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(body=st.one_of(damaged_bodies(), st.binary(max_size=200)))
def test_any_body_is_read_as_json_loads_reads_it_or_refused_with_a_message(body: bytes) -> None:
    """Total: a list of (value, problem), or BatchRefused; never another exception. What is
    read without complaint is what json.loads reads; what json.loads refuses is refused."""
    try:
        expected: Any = loads(body)
    except (ValueError, RecursionError):
        expected = None
    try:
        got = read(json_array_items(body, 100))
    except BatchRefused as exc:
        assert exc.status in (400, 413) and exc.message
        return
    if all(problem is None for _, problem in got):
        assert isinstance(expected, list) and [value for value, _ in got] == expected
    else:
        assert all(problem == TOO_LARGE or problem.startswith(TOO_LARGE) for _, problem in got if problem)


# -- NDJSON ---------------------------------------------------------------------------------------


def test_ndjson_counts_non_blank_lines_and_stops_at_the_limit() -> None:
    body = b"{}\n \r\n\t\x0b\x0c\n{}\r\n" * 3
    assert count_ndjson_events(body, 100) == 6
    assert count_ndjson_events(b"{}\n" * 1000, 11) == 11


def test_ndjson_over_the_limit_is_refused_before_any_line_is_decoded() -> None:
    assert refused(b"not json\n" * 6, max_batch=5, ndjson=True) == (
        413, "the batch has more than 5 events; at most 5 are accepted per request"
    )


def test_ndjson_lines_are_read_one_by_one_each_with_its_problem() -> None:
    body = b'{"a": 1}\n\n  [2]\r\n\xff\nNaN\n' + b'"' + b"x" * MAX_EVENT_BYTES + b'"\n{oops\n'
    assert read(ndjson_items(body, 100)) == [
        ({"a": 1}, None),
        ([2], None),
        (None, "line is not UTF-8"),
        (None, "line is not JSON (NaN is not valid JSON)"),
        (None, f"line is larger than {MAX_EVENT_BYTES} bytes (the limit of one event)"),
        (None, "line is not JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1))"),
    ]


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(body=st.binary(max_size=300) | damaged_bodies())
def test_any_ndjson_body_gives_one_item_per_non_blank_line(body: bytes) -> None:
    items = read(ndjson_items(body, 1000))
    lines = [line for line in body.split(b"\n") if line.strip()]
    assert len(items) == len(lines)
    for (value, problem), line in zip(items, lines, strict=True):
        if problem is None:
            assert value == loads(line)
        else:
            assert problem.startswith(("line is not UTF-8", "line is not JSON (", "line is larger than"))
