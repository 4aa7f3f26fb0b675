"""The streaming job's two paths agree: ``orderlog.events.with_canonical_event`` (Spark, for
records in the ingest API's canonical form) either defers a record or yields exactly what
``parse_record`` yields for it (accepted, with the same fields), and ``with_parsed`` gives
every record, whichever path judged it, the verdict of ``parse_kafka_record``.

Records: the ingest API's own (``OrderEvent.to_json_bytes``), canonical-shaped events with
any field content (invalid dates, times before 2000 or beyond the future-skew bound, every
offset), those with one byte changed, removed or added, and the hostile records of
``tests/hostile.py``. Each hypothesis example is one small batch through the local Spark
session (one Spark job per example). Needs no server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from jobs.stream_source import KAFKA_SCHEMA
from jobs.stream_transforms import (
    PARSED_FIELDS,
    natively_parsed,
    parse_kafka_record,
    parsed_by_python,
    with_native_verdict,
    with_parsed,
)
from orderlog.events import (
    EARLIEST_TIMESTAMP,
    MAX_FUTURE_SKEW,
    OrderEvent,
    parse_record,
    with_canonical_event,
)
from orderlog.rejected import REPLAY_HEADER
from tests.hostile import HOSTILE_HEADERS, header_values, record_values
from tests.test_streaming_totality import KAFKA_TS, TOPIC

# No shrinking: each step would be a Spark job (minutes for a batch of 40); the assertion
# names the record instead.
BATCH = hsettings(
    max_examples=30, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
# Offsets a canonical timestamp may carry: real zones (taken natively) and others (deferred).
ZONES = [UTC, timezone(timedelta(hours=9)), timezone(timedelta(hours=-7, minutes=-30)),
         timezone(timedelta(hours=14)), timezone(timedelta(hours=-12)), timezone(timedelta(hours=5, minutes=45)),
         timezone(timedelta(hours=14, minutes=45)), timezone(timedelta(hours=18)),
         timezone(timedelta(hours=23, minutes=59)), timezone(timedelta(hours=5, seconds=30)),
         timezone(timedelta(minutes=-1))]
NATIVE_ZONES = ZONES[:6]
KAFKA_TIMES = [KAFKA_TS, datetime(2025, 5, 1, 23, 59, 59, 999000, tzinfo=UTC), datetime(1600, 1, 1, tzinfo=UTC),
               datetime(2300, 1, 1, tzinfo=UTC), None]
# A user_id made of characters JSON writes literally: the ones the native path takes.
SAFE_USER_ID = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters='"\\'),
                       min_size=1, max_size=128).filter(str.strip)
ORDER_ID = st.from_regex(r"[A-Za-z0-9._:-]{1,64}", fullmatch=True)


def instants(low: datetime, high: datetime, zones: list[timezone]) -> st.SearchStrategy[datetime]:
    """Aware datetimes between low and high (naive, in the zone's wall time), in the zones,
    with a whole millisecond or any microsecond (format_timestamp writes 3 or 6 digits)."""
    return st.builds(
        lambda moment, zone, whole_ms: moment.replace(tzinfo=zone, microsecond=moment.microsecond // 1000 * 1000)
        if whole_ms else moment.replace(tzinfo=zone),
        st.datetimes(min_value=low, max_value=high), st.sampled_from(zones), st.booleans(),
    )


@st.composite
def api_records(draw: st.DrawFn) -> tuple[bytes, datetime | None, bool]:
    """A record as the ingest API writes it, a Kafka time, and whether the native path must
    take it (valid, a literal user_id, a real zone's offset)."""
    kafka_ts = draw(st.sampled_from(KAFKA_TIMES[:2]))
    timestamp = draw(instants(datetime(2000, 1, 2), datetime(2025, 4, 30), NATIVE_ZONES))
    received = draw(instants(datetime(2000, 1, 1), datetime(9999, 12, 31), [UTC]))
    event = OrderEvent(draw(ORDER_ID), draw(SAFE_USER_ID), draw(st.sampled_from(["japanese", "western"])), timestamp,
                       received)
    return event.to_json_bytes(), kafka_ts, True


def _near(instant: datetime) -> st.SearchStrategy[datetime]:
    return st.integers(-3, 3).map(lambda us: instant + timedelta(microseconds=us))


@st.composite
def canonical_shaped(draw: st.DrawFn) -> tuple[bytes, datetime | None, bool]:
    """An OrderEvent's canonical bytes with any content: valid or not, at the rules' edges."""
    kafka_ts = draw(st.sampled_from(KAFKA_TIMES))
    edge = draw(st.sampled_from(["any", "earliest", "future"]))
    if edge == "earliest":
        moment = draw(_near(EARLIEST_TIMESTAMP))
    elif edge == "future" and kafka_ts is not None:
        moment = draw(_near(kafka_ts + MAX_FUTURE_SKEW))
    else:
        moment = draw(instants(datetime(1, 1, 2), datetime(9999, 12, 30), ZONES))
    zone = draw(st.sampled_from(ZONES))
    try:
        timestamp = moment.astimezone(zone)
    except OverflowError:
        timestamp = moment
    user_id = draw(SAFE_USER_ID | st.text(max_size=130) | st.sampled_from([" ", "   ", "\x7f", "a\\b", "é"]))
    menu = draw(st.sampled_from(["japanese", "western", "Japanese", "和食", "WESTERN", " western", "x"]))
    order_id = draw(ORDER_ID | st.text(max_size=70))
    received = draw(instants(datetime(1, 1, 1), datetime(9999, 12, 31), [UTC]))
    return OrderEvent(order_id, user_id, menu, timestamp, received).to_json_bytes(), kafka_ts, False


@st.composite
def one_byte_off(draw: st.DrawFn) -> tuple[bytes, datetime | None, bool]:
    """A canonical record with one byte replaced (often by a digit or a quote), removed or added."""
    value, kafka_ts, _ = draw(api_records() | canonical_shaped())
    at = draw(st.integers(0, len(value) - 1))
    byte = draw(st.sampled_from(list(b'0123456789"\\:-+.TZ ,{}\x00\x7f\xff')) | st.integers(0, 255))
    change = draw(st.sampled_from(["replace", "remove", "insert"]))
    if change == "replace":
        value = value[:at] + bytes([byte]) + value[at + 1:]
    elif change == "remove":
        value = value[:at] + value[at + 1:]
    else:
        value = value[:at] + bytes([byte]) + value[at:]
    return value, kafka_ts, False


@st.composite
def hostile_records(draw: st.DrawFn) -> tuple[bytes | None, datetime | None, bool]:
    return draw(record_values()), draw(st.sampled_from(KAFKA_TIMES)), False


@st.composite
def kafka_records(draw: st.DrawFn) -> tuple[bytes | None, datetime | None, list | None, bool]:
    value, kafka_ts, must_be_native = draw(api_records() | canonical_shaped() | one_byte_off() | hostile_records())
    headers = draw(st.sampled_from([None, [], [("x-trace", b"1")]]) | st.sampled_from(HOSTILE_HEADERS)
                   | header_values().map(lambda v: [(REPLAY_HEADER, v)]))
    replayed = any(key == REPLAY_HEADER for key, _ in headers or [])
    return value, kafka_ts, headers, must_be_native and not replayed


NESTED_TOO_DEEPLY = "record is not JSON (nested too deeply)"


def micros(instant: datetime | None) -> int | None:
    """Exact epoch microseconds (a float would round those of the year 2300)."""
    return None if instant is None else (instant - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


@pytest.fixture(scope="module")
def spark() -> SparkSession:
    from jobs.session import local_session
    from orderlog.config import load_settings

    return local_session(load_settings(), "orderlog-tests")


def kafka_frame(spark: SparkSession, records: list):
    """The records as Spark's Kafka source gives them, offsets 0, 1, ..."""
    rows = [
        (None, value, TOPIC, offset % 3, offset, None if ts is None else ts.astimezone(UTC).replace(tzinfo=None),
         headers)
        for offset, (value, ts, headers, _) in enumerate(records)
    ]
    return spark.createDataFrame(rows, KAFKA_SCHEMA)


def judge_in_spark(spark: SparkSession, records: list) -> list:
    """(native verdict, with_parsed's parsed) of each record, in offset order."""
    now = F.least(F.col("timestamp"), F.current_timestamp())
    judged = (
        kafka_frame(spark, records)
        .transform(with_parsed)
        .transform(with_canonical_event, "native", F.col("value"), now, F.lit(True))
        # Instants as epoch microseconds: collected datetimes would be in this process's zone.
        .select("offset", "parsed", F.struct(
            "native.order_id", "native.user_id", "native.menu_type", "native.timestamp_text",
            F.unix_micros("native.timestamp").alias("timestamp_us"),
            F.unix_micros("native.received_at").alias("received_at_us"),
        ).alias("native"), F.col("native").isNull().alias("deferred"))
        .collect()
    )
    return [(None if row.deferred else row.native, row.parsed) for row in sorted(judged, key=lambda row: row.offset)]


def python_verdict(value: bytes | None, kafka_ts: datetime | None):
    """parse_record's event (None when it refuses), judged at the time parse_one uses."""
    wall = datetime.now(UTC)
    try:
        return parse_record(value, now=wall if kafka_ts is None else min(kafka_ts, wall))
    except ValueError:
        return None


@BATCH
@given(records=st.lists(kafka_records(), min_size=1, max_size=30))
def test_the_native_path_defers_or_yields_exactly_what_parse_record_yields(spark: SparkSession, records):
    for offset, ((value, kafka_ts, headers, must_be_native), (native, parsed)) in enumerate(
        zip(records, judge_in_spark(spark, records), strict=True)
    ):
        if must_be_native:  # the ingest API's records take the fast path
            assert native is not None, value
        if native is not None:
            event = python_verdict(value, kafka_ts)
            assert event is not None, f"accepted natively, refused by parse_record: {value!r}"
            assert (native.order_id, native.user_id, native.menu_type) == (
                event.order_id, event.user_id, event.menu_type)
            assert (native.timestamp_us, native.received_at_us) == (micros(event.timestamp), micros(event.received_at))
            assert native.timestamp_text == value.decode().split('"')[15]
        # Whichever path judged it, the job's verdict is parse_kafka_record's.
        replay = [v for k, v in headers or [] if k == REPLAY_HEADER]
        expected = parse_kafka_record(
            value, TOPIC, offset % 3, offset, micros(kafka_ts), replay[0] if len(replay) == 1 else None
        )
        expected, got = dict(zip(PARSED_FIELDS, expected, strict=True)), parsed.asDict()
        if NESTED_TOO_DEEPLY in (expected["reason"], got["reason"]):
            # Where json gives up on nesting depends on the caller's stack (this test's is
            # deeper than a Python worker's): a refusal either way, for one reason or another.
            expected["reason"] = got["reason"] = expected["reason"] and got["reason"] and NESTED_TOO_DEEPLY
        assert expected == got, value


def physical_plan(df) -> str:
    return df._jdf.queryExecution().executedPlan().toString()


@BATCH
@given(records=st.lists(kafka_records(), min_size=1, max_size=30))
def test_the_sink_s_two_steps_judge_every_record_once_as_with_parsed_does(spark: SparkSession, records):
    """The streaming sink writes natively_parsed's records, then parsed_by_python's: between
    them every record once, with with_parsed's verdict; the native step accepts only."""
    frame = kafka_frame(spark, records)
    whole = {r.offset: r.parsed for r in frame.transform(with_parsed).select("offset", "parsed").collect()}
    judged = frame.transform(with_native_verdict)
    native = [(r.offset, r.parsed) for r in judged.transform(natively_parsed).select("offset", "parsed").collect()]
    python = [(r.offset, r.parsed) for r in judged.transform(parsed_by_python).select("offset", "parsed").collect()]
    assert sorted(offset for offset, _ in native + python) == sorted(whole)
    assert all(parsed.reason is None for _, parsed in native)
    for offset, parsed in native + python:
        if NESTED_TOO_DEEPLY in (parsed.reason or "", whole[offset].reason or ""):
            continue  # a refusal either way (see the test above)
        assert parsed == whole[offset], records[offset][0]


def test_the_native_step_runs_no_python_and_the_deferred_step_does(spark: SparkSession):
    noon = datetime(2025, 4, 30, 12, tzinfo=UTC)
    event = OrderEvent("o-1", "u-1", "japanese", noon, noon)
    judged = kafka_frame(spark, [(event.to_json_bytes(), KAFKA_TS, None, True)]).transform(with_native_verdict)
    assert "ArrowEvalPython" not in physical_plan(judged.transform(natively_parsed))
    assert "ArrowEvalPython" in physical_plan(judged.transform(parsed_by_python))


EDGES = [
    # (timestamp as sent, received_at, parse_record accepts it at KAFKA_TS; None: it does, and
    # the native path defers it)
    ("2000-01-01T00:00:00.000+00:00", "2025-05-31T03:00:00.120+00:00", True),
    ("1999-12-31T23:59:59.999999+00:00", "2025-05-31T03:00:00.120+00:00", False),
    ("2000-01-01T08:59:59.999+09:00", "2025-05-31T03:00:00.120+00:00", False),
    ("2025-06-02T00:00:00.000+00:00", "2025-05-31T03:00:00.120+00:00", True),
    ("2025-06-02T00:00:00.001+00:00", "2025-05-31T03:00:00.120+00:00", False),
    ("2025-02-29T12:00:00.000+09:00", "2025-05-31T03:00:00.120+00:00", False),
    ("2024-02-29T12:00:00.000+09:00", "2025-05-31T03:00:00.120+00:00", True),
    ("2025-04-31T12:00:00.000+09:00", "2025-05-31T03:00:00.120+00:00", False),
    ("2025-05-31T24:00:00.000+09:00", "2025-05-31T03:00:00.120+00:00", False),
    ("2025-05-31T23:59:60.000+09:00", "2025-05-31T03:00:00.120+00:00", False),
    ("2025-13-01T00:00:00.000+09:00", "2025-05-31T03:00:00.120+00:00", False),
    ("2025-05-31T12:00:00.000-00:00", "2025-05-31T03:00:00.120+00:00", True),
    ("2025-05-31T12:00:00.000+14:45", "2025-05-31T03:00:00.120+00:00", True),
    ("2025-05-31T12:00:00.000-14:00", "2025-05-31T03:00:00.120+00:00", True),
    ("2025-05-31T12:00:00.000+09:00", "0001-01-01T00:00:00.000+00:00", None),  # valid, deferred
    ("2025-05-31T12:00:00.000+09:00", "9999-12-31T23:59:59.999999+00:00", True),
    ("2025-05-31T12:00:00.000+09:00", "0000-12-31T23:59:59.999+00:00", False),
    ("2025-05-31T12:00:00.000+09:00", "2025-02-29T00:00:00.000+00:00", False),
]


@pytest.mark.parametrize("user_id", ["u-1", " ", "a b ~!#$%&'()*+,-./:;<=>?@[]^_`{|}"])
def test_edges_of_the_rules_are_judged_alike_on_both_paths(spark: SparkSession, user_id: str):
    records = [
        (f'{{"order_id":"o-{n}","user_id":"{user_id}","menu_type":"western","timestamp":"{ts}",'
         f'"received_at":"{received}"}}'.encode(), KAFKA_TS, None, False)
        for n, (ts, received, _) in enumerate(EDGES)
    ]
    for (value, *_), (native, parsed), (_, _, accepted) in zip(
        records, judge_in_spark(spark, records), EDGES, strict=True
    ):
        valid = accepted is not False and bool(user_id.strip())
        assert (python_verdict(value, KAFKA_TS) is not None) == valid, value
        assert (native is not None) == (valid and accepted is True), value
        assert (parsed.reason is None) == valid


def test_a_record_with_a_trailing_newline_or_a_replay_header_is_left_to_parse_record(spark: SparkSession):
    good = OrderEvent("o-1", "u-1", "japanese", datetime(2025, 5, 31, 12, tzinfo=UTC),
                      datetime(2025, 5, 31, 12, 0, 1, tzinfo=UTC)).to_json_bytes()
    records = [(good, KAFKA_TS, None, True), (good + b"\n", KAFKA_TS, None, False),
               (b" " + good, KAFKA_TS, None, False), (good, KAFKA_TS, [(REPLAY_HEADER, b"t:1:2:3")], False)]
    judged = judge_in_spark(spark, records)
    assert [native is not None for native, _ in judged] == [True, False, False, True]
    # All four are valid; the replayed one is keyed by its header's coordinates.
    assert [parsed.reason for _, parsed in judged] == [None] * 4
    assert [parsed.replay_offset for _, parsed in judged] == [None, None, None, 2]


def test_the_python_path_keeps_every_microsecond_of_times_far_from_1970(spark: SparkSession):
    # Ints beside a None went through float64 in the UDF's frame: 0321-07-19T11:55:13.003999Z
    # came out one microsecond off, and so could a replay header's Kafka time in 9999.
    far = b'{"user_id": "u", "menu_type": "western", "timestamp": "2025-05-31T12:00:00Z", ' \
          b'"received_at": "0321-07-19T11:55:13.003999+00:00"}'
    records = [(far, KAFKA_TS, [(REPLAY_HEADER, b"t:0:0:253402214399999")], False), (b"{}", KAFKA_TS, None, False)]
    (_, parsed), (_, rejected) = judge_in_spark(spark, records)
    assert parsed.received_at_us == -52_020_187_486_996_001
    assert parsed.replay_timestamp_us == 253_402_214_399_999_000
    assert rejected.reason is not None
