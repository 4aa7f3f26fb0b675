"""The replay generator (pure unit tests): reproducible, realistic, its truth right,
its dirty events what they claim, and its sender's retry rules."""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import UTC, date, datetime
from typing import Any

import pytest

from orderlog.business_day import business_date
from orderlog.events import InvalidEvent, validate_event
from orderlog.menu import EVEN, JAPANESE, WESTERN, preference
from tools import replay as replay_cli
from tools.generator import (
    MALFORMED_FIELD,
    MALFORMED_KINDS,
    STRONG_JAPANESE,
    STRONG_WESTERN,
    TIE,
    ReplayParams,
    generate,
)
from tools.sender import Response, Sender, SendError
from tools.truth import compute_truth

END = date(2025, 5, 31)
TOKYO = "Asia/Tokyo"
NOW = datetime(2025, 6, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def week():
    return generate(ReplayParams(END, days=7, users=2000, orders=20000, seed=42))


@pytest.fixture(scope="module")
def dirty_week():
    return generate(ReplayParams(END, days=7, users=2000, orders=20000, seed=42, dirty=True))


def normal(payload: dict[str, Any]):
    return validate_event(payload, now=NOW)


# --- reproducibility -------------------------------------------------------------


def test_the_same_seed_gives_the_same_events_byte_for_byte(week):
    again = generate(ReplayParams(END, days=7, users=2000, orders=20000, seed=42))
    assert again.to_ndjson() == week.to_ndjson()
    assert len(week.to_ndjson()) > 1_000_000


def test_another_seed_gives_other_events_and_other_order_ids(week):
    other = generate(ReplayParams(END, days=7, users=2000, orders=20000, seed=43))
    assert other.to_ndjson() != week.to_ndjson()
    ids = {e.payload["order_id"] for e in week.events}
    assert ids.isdisjoint(e.payload["order_id"] for e in other.events)


def test_order_ids_are_unique_valid_and_carry_the_run_tag(week):
    ids = [e.payload["order_id"] for e in week.events]
    assert len(set(ids)) == len(ids) == 20000
    assert all(i.startswith(f"rp-{week.params.run_tag}-") for i in ids)
    for event in week.events:  # every generated order passes the pipeline's own validation
        assert normal(event.payload).order_id == event.payload["order_id"]


def test_the_cli_writes_identical_event_files_for_the_same_seed(tmp_path):
    args = ["2025-05-31", "--days", "2", "--users", "50", "--orders", "400", "--dirty", "--dry-run", "--quiet"]
    assert replay_cli.main([*args, "--events", str(tmp_path / "a.ndjson")]) == 0
    assert replay_cli.main([*args, "--events", str(tmp_path / "b.ndjson")]) == 0
    a = (tmp_path / "a.ndjson").read_bytes()
    assert a == (tmp_path / "b.ndjson").read_bytes()
    assert len(a.splitlines()) == 400 + 2  # 400 orders and round(400 * 0.005) malformed


def test_a_replay_of_a_future_day_stops_before_sending_with_the_reason(capsys):
    assert replay_cli.main(["2999-12-31", "--days", "1", "--orders", "5", "--users", "2", "--quiet",
                            "--url", "http://127.0.0.1:9"]) == 1
    assert re.fullmatch(r"replay: cannot replay 2999-12-31: .* timestamp: is more than a day.*\n",
                        capsys.readouterr().err)


# --- the shape of the distributions ---------------------------------------------


def test_orders_peak_at_lunch_and_dinner_in_the_business_time_zone(week):
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(TOKYO)
    hours = Counter(normal(e.payload).timestamp.astimezone(zone).hour for e in week.events)
    lunch = hours[11] + hours[12]
    dinner = hours[18] + hours[19] + hours[20]
    afternoon = hours[15] + hours[16]
    night = sum(hours[h] for h in range(0, 6))
    assert lunch > 4 * afternoon and dinner > 4 * afternoon
    assert max(hours, key=hours.__getitem__) == 12
    assert night == 0  # nobody orders between midnight and six
    assert lunch + dinner > 0.6 * len(week.events)


def test_every_order_falls_on_a_day_of_the_replay_and_weekends_are_busier(week):
    days = Counter(business_date(normal(e.payload).timestamp, TOKYO) for e in week.events)
    assert set(days) == set(week.params.dates)
    assert days[date(2025, 5, 31)] > days[date(2025, 5, 27)]  # Saturday > Tuesday
    assert days[date(2025, 5, 25)] > days[date(2025, 5, 26)]  # Sunday > Monday


def test_users_lean_strongly_one_way_or_are_mixed_and_a_few_tie_exactly(week):
    counts: dict[str, list[int]] = {}
    for event in week.events:
        e = normal(event.payload)
        c = counts.setdefault(e.user_id, [0, 0])
        c[0 if e.menu_type == JAPANESE else 1] += 1
    leaning = {u.user_id: u.leaning for u in week.users}
    by = Counter(u.leaning for u in week.users)
    assert by == {"strong_japanese": 700, "strong_western": 600, "mixed": 600, "tie": 100}
    assert len(counts) == 2000  # every user orders at least once

    def share(kind: str) -> float:
        j = sum(counts[u][0] for u in counts if leaning[u] == kind)
        w = sum(counts[u][1] for u in counts if leaning[u] == kind)
        return j / (j + w)

    assert share(STRONG_JAPANESE) > 0.8
    assert share(STRONG_WESTERN) < 0.2
    assert 0.4 < share("mixed") < 0.6
    ties = [u for u in counts if leaning[u] == TIE]
    assert ties and all(counts[u][0] == counts[u][1] > 0 for u in ties)


def test_timestamps_come_in_the_forms_clients_send(week):
    forms = Counter(
        "epoch" if isinstance(t, int) else "utc" if t.endswith("Z") else "+09:00" if t.endswith("+09:00") else t
        for t in (e.payload["timestamp"] for e in week.events)
    )
    assert set(forms) == {"epoch", "utc", "+09:00"}
    assert forms["+09:00"] > forms["utc"] > forms["epoch"] > 0
    menus = Counter(e.payload["menu_type"] for e in week.events)
    assert set(menus) == {"japanese", "western", "和食", "洋食"}


def test_a_tiny_replay_still_sums_to_the_requested_orders():
    replay = generate(ReplayParams(END, days=1, users=10, orders=3, seed=1))
    assert len(replay.events) == 3
    assert generate(ReplayParams(END, days=3, users=5, orders=0)).events == ()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("days", 0, "days must be at least 1 (got 0)"), ("users", 0, "users must be at least 1 (got 0)"),
     ("orders", -1, "orders must not be negative (got -1)")],
)
def test_bad_parameters_are_named(field, value, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ReplayParams(END, **{field: value})


# --- the truth -------------------------------------------------------------------


def recompute(events) -> dict[str, Any]:
    """Independent recomputation: parse each event, bucket by Tokyo date, count."""
    daily: dict[str, list[int]] = {}
    users: dict[str, list[int]] = {}
    for event in events:
        e = normal(event.payload)
        day = business_date(e.timestamp, TOKYO).isoformat()
        k = 0 if e.menu_type == JAPANESE else 1
        daily.setdefault(day, [0, 0])[k] += 1
        users.setdefault(e.user_id, [0, 0])[k] += 1
    return {"daily": daily, "users": users}


def test_the_truth_equals_a_recomputation_from_the_generated_events(week):
    truth = compute_truth([e.payload for e in week.events], TOKYO, week.params.dates)
    expected = recompute(week.events)
    assert {d: [v[JAPANESE], v[WESTERN]] for d, v in truth["daily"].items()} == expected["daily"]
    assert {u: [v[JAPANESE], v[WESTERN]] for u, v in truth["users"].items()} == expected["users"]
    assert all(v["preference"] == preference(v[JAPANESE], v[WESTERN]) for v in truth["users"].values())
    assert truth["orders"] == sum(v["total"] for v in truth["daily"].values()) == 20000
    assert sum(truth["segments"].values()) == len(truth["users"]) == 2000
    assert truth["segments"][EVEN] >= 100  # the designed ties, and some by chance
    last = truth["segments_by_day"][END.isoformat()]
    assert {s: last[s]["users"] for s in last} == truth["segments"]


def test_the_truth_counts_an_order_id_once_and_uses_the_business_day():
    payloads = [
        {"order_id": "a", "user_id": "u1", "timestamp": "2025-05-31T23:30:00+09:00", "menu_type": "和食"},
        {"order_id": "a", "user_id": "u1", "timestamp": "2025-05-31T23:30:00+09:00", "menu_type": "和食"},
        {"order_id": "b", "user_id": "u1", "timestamp": "2025-05-31T15:30:00Z", "menu_type": "western"},
        {"order_id": "c", "user_id": "u2", "timestamp": 1748707200000, "menu_type": "western"},  # 06-01 01:00 Tokyo
    ]
    truth = compute_truth(payloads, TOKYO, [date(2025, 5, 31), date(2025, 6, 1)])
    assert truth["daily"] == {
        "2025-05-31": {"japanese": 1, "western": 0, "total": 1, "users": 1},
        "2025-06-01": {"japanese": 0, "western": 2, "total": 2, "users": 2},
    }
    assert truth["users"]["u1"] == {
        "japanese": 1, "western": 1, "preference": "even",
        "first_order_date": "2025-05-31", "last_order_date": "2025-06-01",
    }
    assert truth["segments"] == {"japanese": 0, "western": 1, "even": 1}
    assert truth["segments_by_day"]["2025-05-31"]["japanese"] == {"users": 1, "entered": 1, "exited": 0}
    assert truth["segments_by_day"]["2025-06-01"] == {
        "japanese": {"users": 0, "entered": 0, "exited": 1},
        "western": {"users": 1, "entered": 1, "exited": 0},
        "even": {"users": 1, "entered": 1, "exited": 0},
    }


def test_the_truth_file_of_the_cli_equals_a_recomputation(tmp_path):
    out = tmp_path / "truth.json"
    code = replay_cli.main(["2025-05-31", "--days", "3", "--users", "80", "--orders", "900", "--dirty",
                            "--dry-run", "--quiet", "--truth", str(out)])
    assert code == 0
    truth = json.loads(out.read_text())
    replay = generate(ReplayParams(END, days=3, users=80, orders=900, dirty=True))
    expected = recompute(replay.valid_events)
    assert {d: [v[JAPANESE], v[WESTERN]] for d, v in truth["daily"].items()} == expected["daily"]
    assert {u: [v[JAPANESE], v[WESTERN]] for u, v in truth["users"].items()} == expected["users"]
    assert truth["replay"]["seed"] == 42 and truth["replay"]["run_tag"] == replay.params.run_tag


# --- dirty events ----------------------------------------------------------------


def test_dirty_keeps_the_valid_events_and_so_the_truth(week, dirty_week):
    clean = sorted(e.to_json() for e in week.events)
    assert sorted(e.to_json() for e in dirty_week.valid_events) == clean
    t1 = compute_truth([e.payload for e in week.events], TOKYO, week.params.dates)
    t2 = compute_truth([e.payload for e in dirty_week.valid_events], TOKYO, week.params.dates)
    assert t1 == t2


def test_late_events_belong_to_an_earlier_day_than_the_events_sent_around_them(dirty_week):
    events = dirty_week.events
    late = [i for i, e in enumerate(events) if e.late]
    assert len(late) == round(sum(1 for e in events if e.valid and e.business_date < END) * 0.01)
    for i in late:
        event = events[i]
        own_day = business_date(normal(event.payload).timestamp, TOKYO)
        assert own_day == event.business_date < event.sent_with
        before = events[:i]
        # sent after an on-time order of its later day, and after every order of its own day
        assert any(e.business_date == event.sent_with and not e.late for e in before)
        assert not any(e.business_date == own_day and not e.late for e in events[i + 1:])


def test_malformed_events_are_refused_by_the_pipeline_naming_the_field_they_claim(dirty_week):
    bad = [e for e in dirty_week.events if not e.valid]
    assert len(bad) == 100
    assert {e.kind for e in bad} == set(MALFORMED_KINDS)
    for event in bad:
        with pytest.raises(InvalidEvent) as caught:
            normal(event.payload)
        assert event.bad_field == MALFORMED_FIELD[event.kind]
        assert event.bad_field in [err.field for err in caught.value.errors], (event.kind, caught.value.errors)


# --- sending: retries, refusals, pacing (a scripted fake server) -------------------


class FakeApi:
    """Answers like the ingest API contract; ``script`` forces answers first."""

    def __init__(self, script: list[Any] | None = None):
        self.script = list(script or [])
        self.calls: list[tuple[str, Any]] = []
        self.produced: list[Any] = []

    def __call__(self, url: str, body: Any, timeout: float) -> Response:
        self.calls.append((url, body))
        if self.script:
            forced = self.script.pop(0)
            if isinstance(forced, Exception):
                raise forced
            return forced
        events = body if isinstance(body, list) else [body]
        errors = []
        for i, payload in enumerate(events):
            try:
                validate_event(payload, now=NOW)
            except InvalidEvent as exc:
                errors += [{"index": i, **err.as_dict()} for err in exc.errors]
        if errors:
            if not url.endswith("/api/logs"):
                errors = [{k: v for k, v in e.items() if k != "index"} for e in errors]
            return Response(400, {}, {"error": "invalid event", "errors": errors})
        self.produced += events
        ids = [p["order_id"] for p in events]
        if url.endswith("/api/logs"):
            return Response(202, {}, {"status": "accepted", "count": len(ids), "order_ids": ids})
        return Response(202, {}, {"status": "accepted", "order_id": ids[0]})


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def __call__(self) -> float:
        return self.now


def sender(api: FakeApi, clock: Clock, **kw: Any) -> Sender:
    return Sender("http://api.test", post=api, sleep=clock.sleep, clock=clock, **kw)


def test_invalid_events_of_a_batch_are_refused_and_the_rest_sent_again(dirty_week):
    payloads = [e.payload for e in dirty_week.events[:3000]]
    api, clock = FakeApi(), Clock()
    result = sender(api, clock, rate=0, batch_size=200).send(payloads)
    valid = {i for i, e in enumerate(dirty_week.events[:3000]) if e.valid}
    assert set(result.acknowledged) == valid
    assert set(result.refused) == set(range(3000)) - valid
    assert len(api.produced) == len(valid)  # each valid event produced exactly once
    assert all(result.acknowledged[i] == payloads[i]["order_id"] for i in valid)


def test_503_is_retried_after_the_servers_retry_after(week):
    busy = Response(503, {"Retry-After": "2"}, {"error": "Kafka is unavailable"})
    api, clock = FakeApi([busy, busy, ConnectionRefusedError("refused")]), Clock()
    result = sender(api, clock, rate=0, batch_size=50).send([e.payload for e in week.events[:100]])
    assert len(result.acknowledged) == 100 and result.retries == 3
    assert clock.sleeps[:2] == [2.0, 2.0] and clock.sleeps[2] == 2.0  # backoff 0.5 * 2**2
    assert len(api.produced) == 100


def test_sending_gives_up_after_max_wait_with_a_clear_error(week):
    busy = Response(503, {"Retry-After": "5"}, {"error": "Kafka is unavailable"})
    api, clock = FakeApi([busy] * 10), Clock()
    message = r"gave up after waiting 10s for the ingest API at http://api.test \(HTTP 503\)"
    with pytest.raises(SendError, match=message):
        sender(api, clock, rate=0, max_wait=12).send([week.events[0].payload])


def test_a_413_halves_the_batch(week):
    too_big = Response(413, {}, {"error": "body too large"})
    api, clock = FakeApi([too_big]), Clock()
    result = sender(api, clock, rate=0, batch_size=10).send([e.payload for e in week.events[:10]])
    assert [len(body) for _, body in api.calls] == [10, 5, 5]
    assert len(result.acknowledged) == 10


def test_other_client_errors_stop_with_the_answer(week):
    api, clock = FakeApi([Response(404, {}, "Not Found")]), Clock()
    with pytest.raises(SendError, match="ingest API answered 404: Not Found"):
        sender(api, clock, rate=0).send([week.events[0].payload])


def test_sending_is_paced_at_the_rate(week):
    api, clock = FakeApi(), Clock()
    result = sender(api, clock, rate=1000, batch_size=100).send([e.payload for e in week.events[:1000]])
    assert len(result.acknowledged) == 1000
    assert clock.now == pytest.approx(1.0)  # 1000 events at 1000/s
    assert len(clock.sleeps) == 10
