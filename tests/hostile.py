"""Hostile Kafka records: what any producer can put on the order topic.

Three forms of the same kinds of input (bytes of any sort, JSON of every shape and number,
deep nesting, other encodings, near-valid events, keys with surrogates and control
characters, binary keys, any headers):

- ``HOSTILE``: named records with the reason each must get (unit cases, the fault test);
- hypothesis strategies (``record_values``, ``header_values``) for the property tests;
- ``hostile_batch``: a seeded, reproducible batch of a few hundred mixed records for one
  run through Spark (hypothesis would spend several Spark jobs on one property).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import strategies as st

from orderlog.rejected import REPLAY_HEADER, KafkaCoordinates, replay_header_value

VALID = {"user_id": "u-1", "timestamp": "2025-05-31T12:00:00+09:00", "menu_type": "japanese"}
NOT_AN_OBJECT = "an event must be a JSON object"
MISSING_ALL = "user_id: is required; timestamp: is required; menu_type: is required"


def event_bytes(**fields: object) -> bytes:
    """VALID with some fields changed (``...`` removes one), as compact UTF-8 JSON."""
    merged = {**VALID, **fields}
    return json.dumps({k: v for k, v in merged.items() if v is not ...}, ensure_ascii=False).encode()


@dataclass(frozen=True)
class Hostile:
    name: str
    value: bytes | None
    reason: str  # what rejected_events must say


_VALID_TEXT = json.dumps(VALID)
HOSTILE: list[Hostile] = [
    Hostile("330-digit integer timestamp", event_bytes(timestamp=int("9" * 330)), "timestamp: is out of range"),
    Hostile("330-digit string timestamp", event_bytes(timestamp="9" * 330), "timestamp: is out of range"),
    Hostile("3,000 nested brackets", b"[" * 3000, "record is not JSON (nested too deeply)"),
    Hostile("100,000 nested brackets", b"[" * 100_000 + b"]" * 100_000, "record is larger than 4096 bytes"),
    Hostile("lone surrogate in an unknown key", b'{"\\ud800x": 1, ' + _VALID_TEXT[1:].encode(),
            "\\ud800x: unknown field"),
    Hostile("control character in an unknown key", b'{"a\\u0000\\u001b[31m": 1}',
            f"a\\x00\\x1b[31m: unknown field; {MISSING_ALL}"),
    Hostile("null value (tombstone)", None, "record has no value"),
    Hostile("empty value", b"", "record is not JSON (Expecting value)"),
    Hostile("not UTF-8", b"\xff\xfe\xfd{}", "record is not UTF-8"),
    Hostile("UTF-16 (with BOM)", _VALID_TEXT.encode("utf-16"), "record is not UTF-8"),
    Hostile("UTF-16-LE (no BOM)", _VALID_TEXT.encode("utf-16-le"),
            "record is not JSON (Expecting property name enclosed in double quotes)"),
    Hostile("UTF-8 with BOM", _VALID_TEXT.encode("utf-8-sig"),
            "record is not JSON (Unexpected UTF-8 BOM (decode using utf-8-sig))"),
    Hostile("1,000,000 bytes", b'{"user_id": "' + b"x" * 1_000_000 + b'"}', "record is larger than 4096 bytes"),
    Hostile("NaN", b"NaN", NOT_AN_OBJECT),
    Hostile("NaN timestamp", event_bytes().replace(b'"2025-05-31T12:00:00+09:00"', b"NaN"),
            "timestamp: must be a finite number"),
    Hostile("top-level array", b'[{"user_id": "u-1"}]', NOT_AN_OBJECT),
    Hostile("top-level string", b'"hello"', NOT_AN_OBJECT),
    Hostile("top-level number", b"-1.5e308", NOT_AN_OBJECT),
    Hostile("top-level true", b"true", NOT_AN_OBJECT),
    Hostile("top-level null", b"null", NOT_AN_OBJECT),
    Hostile("5,000-digit number", b'{"timestamp": ' + b"7" * 5000 + b"}", "record is larger than 4096 bytes"),
    Hostile("4,000-digit number", b'{"timestamp": ' + b"7" * 4000 + b"}",
            "user_id: is required; menu_type: is required; timestamp: is out of range"),
    Hostile("user_id with a lone surrogate", event_bytes().replace(b'"u-1"', b'"u\\udfff"'),
            "user_id: must be valid Unicode (no lone surrogates)"),
    Hostile("epoch 1e308", event_bytes(timestamp=1e308), "timestamp: is out of range"),
    Hostile("epoch -0.0", event_bytes(timestamp=-0.0), "timestamp: is before 2000-01-01"),
]

# Headers any producer may set; none of them may change how a record is judged or keyed.
HOSTILE_HEADERS: list[list[tuple[str, bytes]]] = [
    [("x-trace", b"\xff\x00\xfe")],
    [(REPLAY_HEADER, b"garbage")],
    [(REPLAY_HEADER, b"\xff" * 5000)],
    [(REPLAY_HEADER, b"t:0:0:-99999999999999999")],  # timestamp out of range
    [(REPLAY_HEADER, b"../x:0:0:0")],
    [(REPLAY_HEADER, b"t:0:0:0"), (REPLAY_HEADER, b"t:1:1:1")],  # two: ambiguous, ignored
    [(REPLAY_HEADER, b"")],
    [("", b""), ("\u00e9\u6f22", b"v")],
]


# --- hypothesis strategies ----------------------------------------------------------------

# Every code point, lone surrogates and control characters included.
_any_char = st.characters(exclude_categories=())
_names = st.sampled_from(["user_id", "timestamp", "menu_type", "order_id", "received_at"]) | st.text(
    _any_char, max_size=12
)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(_any_char, max_size=30)
)
json_values = st.recursive(
    _scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_names, inner, max_size=5), max_leaves=25
)


def _encode(value: object, ensure_ascii: bool, encoding: str) -> bytes:
    # surrogatepass: a lone surrogate becomes the (invalid UTF-8) bytes a careless producer sends.
    return json.dumps(value, ensure_ascii=ensure_ascii, allow_nan=True).encode(encoding, "surrogatepass")


ENCODINGS = ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "latin-1"]


@st.composite
def encoded_json(draw: st.DrawFn, values: st.SearchStrategy[object] = json_values) -> bytes:
    value = draw(values)
    encoding = draw(st.sampled_from(ENCODINGS))
    try:
        return _encode(value, draw(st.booleans()), encoding)
    except UnicodeEncodeError:  # latin-1 cannot hold every character: fall back to escapes
        return _encode(value, True, encoding)


_stamps = st.datetimes(
    min_value=datetime(2000, 1, 2), max_value=datetime(2025, 5, 30),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=9)), timezone(timedelta(hours=-7, minutes=-30))]),
)


@st.composite
def valid_events(draw: st.DrawFn) -> dict[str, object]:
    """Events every rule accepts (judged at 2025-06-01), in every accepted spelling."""
    instant = draw(_stamps)
    seconds = instant.timestamp()
    timestamp = draw(st.sampled_from([
        instant.isoformat(), instant.isoformat().replace("+00:00", "Z"), int(seconds), int(seconds * 1000),
        str(int(seconds)), round(seconds, 3),
    ]))
    event: dict[str, object] = {
        "user_id": draw(st.text(st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=128)
                        .filter(lambda text: text.strip() and not any("\x7f" <= c <= "\x9f" for c in text))),
        "timestamp": timestamp,
        "menu_type": draw(st.sampled_from(["japanese", "western", "和食", "洋食", " Japanese ", "WESTERN"])),
    }
    if draw(st.booleans()):
        event["order_id"] = draw(st.from_regex(r"[A-Za-z0-9._:-]{1,64}", fullmatch=True))
    if draw(st.booleans()):
        event["received_at"] = draw(st.sampled_from(
            ["2025-05-31T03:00:00.120+00:00", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z", 1748703600]
        ))
    return event


@st.composite
def near_valid_events(draw: st.DrawFn) -> dict[str, object]:
    """A valid event with one field replaced by arbitrary JSON, removed, or one key added."""
    event = draw(valid_events())
    action = draw(st.sampled_from(["replace", "remove", "add"]))
    name = draw(st.sampled_from(sorted(event)))
    if action == "replace":
        event[name] = draw(json_values)
    elif action == "remove":
        del event[name]
    else:
        event[draw(_names)] = draw(json_values)
    return event


@st.composite
def number_literal_events(draw: st.DrawFn) -> bytes:
    """An event whose timestamp is a number literal as long or small as JSON allows."""
    digits = draw(st.integers(min_value=1, max_value=4100))
    literal = draw(st.sampled_from(["{d}", "-{d}", "0.{d}", "{d}e{e}", "-{d}.5e-{e}", "1e{e}"])).format(
        d="7" * digits, e=draw(st.integers(min_value=0, max_value=10**6))
    )
    return event_bytes(timestamp=0).replace(b": 0", f": {literal}".encode())


@st.composite
def nested(draw: st.DrawFn) -> bytes:
    depth = draw(st.integers(min_value=1, max_value=5000))
    opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}"), (b'{"user_id":[', b"]}")]))
    return opener * depth + (closer * depth if draw(st.booleans()) else b"")


def record_values() -> st.SearchStrategy[bytes | None]:
    """Any Kafka record value: bytes, JSON of every shape, encoding and nesting."""
    return st.one_of(
        st.none(),
        st.binary(max_size=5000),
        encoded_json(),
        encoded_json(valid_events()),
        encoded_json(near_valid_events()),
        number_literal_events(),
        nested(),
        st.sampled_from([h.value for h in HOSTILE]),
    )


def header_values() -> st.SearchStrategy[bytes | None]:
    """Any value of a replay header: well-formed, nearly so, or garbage."""
    coordinates = st.builds(
        KafkaCoordinates,
        st.from_regex(r"[A-Za-z0-9._-]{1,249}", fullmatch=True).filter(lambda t: t not in (".", "..")),
        st.integers(0, 2**31 - 1), st.integers(0, 2**63 - 1),
        st.integers(-62_135_510_400_000, 253_402_214_399_999),
    )
    return st.one_of(
        st.none(),
        st.binary(max_size=400),
        coordinates.map(replay_header_value),
        coordinates.map(lambda c: replay_header_value(c) + b"x"),
        st.from_regex(rb"[a-z]{1,5}:-?\d{1,25}:-?\d{1,25}:-?\d{1,25}", fullmatch=True),
    )


# --- a seeded batch for one run through Spark ------------------------------------------


def _random_json(rng: random.Random, depth: int = 0) -> object:
    kinds = ["null", "bool", "int", "bigint", "float", "text"] + (["list", "dict"] if depth < 4 else [])
    kind = rng.choice(kinds)
    if kind == "null":
        return None
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "int":
        return rng.randint(-(2**70), 2**70)
    if kind == "bigint":
        return int("9" * rng.randint(17, 400)) * rng.choice([-1, 1])
    if kind == "float":
        return rng.choice([float("nan"), float("inf"), -0.0, 1e308, 5e-324, rng.uniform(-1e12, 2e12)])
    if kind == "text":
        return _random_text(rng, rng.randint(0, 20))
    if kind == "list":
        return [_random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {_random_text(rng, rng.randint(0, 8)): _random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def _random_text(rng: random.Random, length: int) -> str:
    pools = [(0x20, 0x7E), (0x00, 0x1F), (0x7F, 0x9F), (0x3040, 0x30FF), (0xD800, 0xDFFF), (0x1F600, 0x1F64F)]
    chars = []
    for _ in range(length):
        low, high = rng.choice(pools)
        chars.append(chr(rng.randint(low, high)))
    return "".join(chars)


def _random_valid(rng: random.Random) -> dict[str, object]:
    instant = datetime(2000, 1, 2, tzinfo=UTC) + timedelta(seconds=rng.randint(0, 800_000_000))
    event: dict[str, object] = {
        "user_id": f"user-{rng.randint(0, 50)}", "menu_type": rng.choice(["japanese", "western", "和食", "洋食"]),
        "timestamp": rng.choice([instant.isoformat(), int(instant.timestamp()), int(instant.timestamp() * 1000)]),
    }
    if rng.random() < 0.5:
        event["order_id"] = f"o-{rng.getrandbits(40):x}"
    return event


def _random_value(rng: random.Random) -> bytes | None:
    kind = rng.randrange(8)
    if kind == 0:
        return rng.randbytes(rng.choice([0, 1, 7, 100, 4096, 4097, 70_000]))
    if kind == 1:
        return _encode(_random_json(rng), rng.random() < 0.5, rng.choice(ENCODINGS[:-1]))
    if kind == 2:
        event = _random_valid(rng)
        event[rng.choice([*event, "extra", _random_text(rng, 3)])] = _random_json(rng)
        return _encode(event, rng.random() < 0.5, "utf-8")
    if kind == 3:
        return rng.choice([b"[", b'{"a":']) * rng.randint(1, 5000)
    if kind == 4:
        return rng.choice(HOSTILE).value
    return _encode(_random_valid(rng), False, rng.choice(["utf-8", "utf-8", "utf-8", "utf-16"]))


def _random_headers(rng: random.Random, topic: str) -> list[tuple[str, bytes | None]] | None:
    kind = rng.randrange(6)
    if kind == 0:
        return None
    if kind == 1:
        return []
    if kind == 2:
        origin = KafkaCoordinates(topic, rng.randint(0, 5), rng.randint(0, 10**6), rng.randint(0, 2 * 10**12))
        return [(REPLAY_HEADER, replay_header_value(origin))]
    if kind == 3:
        return [(REPLAY_HEADER, rng.randbytes(rng.randint(0, 40)))]
    if kind == 4:
        return [(_random_text(rng, 4).encode("utf-8", "replace").decode(), rng.randbytes(10)), (REPLAY_HEADER, None)]
    return rng.choice(HOSTILE_HEADERS)  # type: ignore[return-value]


def hostile_batch(seed: int, size: int, topic: str) -> list[tuple[bytes | None, bytes | None, list | None]]:
    """``size`` (key, value, headers) records of every kind, the same for the same seed."""
    rng = random.Random(seed)
    batch = []
    for _ in range(size):
        keys = [None, b"", b"user-1", rng.randbytes(rng.randint(1, 40)), "キー\x00".encode(), b"\xff" * 70_000]
        key = rng.choice(keys)
        batch.append((key, _random_value(rng), _random_headers(rng, topic)))
    return batch
