"""The aggregate's reference model in plain Python (what a from-scratch, in-order run over
all the data gives), helpers that load orders and read every table back, and tests of
the model itself. The job's integration and property tests compare against this model."""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from orderlog.business_day import HOURS_OF_DAY
from orderlog.config import load_settings
from orderlog.layout import RAW_ORDER_BUCKETS, SEGMENT_BUCKETS, USER_DAY_BUCKETS, bucket_of
from orderlog.menu import EVEN, JAPANESE, SEGMENTS, WESTERN, preference

# An order as the tests hold it: (order_date, order_id, user_id, menu_type, business hour);
# a 4-tuple is an order at noon.
Order = tuple[date, str, str, str, int]
NOON = 12
_ids = itertools.count()


def order(day: date, user: str, menu: str, hour: int = NOON) -> Order:
    return (day, f"o{next(_ids):07d}", user, menu, hour)


def _hour(o: tuple) -> int:
    return o[4] if len(o) > 4 else NOON


class DayCounts(dict):
    """A date's per-user counts {user: (japanese, western)}, and in ``hours`` its counts per
    business hour {hour: (japanese, western)} (only the hours with orders)."""

    def __init__(self, users: Mapping[str, tuple[int, int]], hours: Mapping[int, tuple[int, int]]):
        super().__init__(users)
        self.hours = dict(hours)


def day_counts(orders: Iterable[tuple]) -> dict[date, DayCounts]:
    counts: dict[date, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    hours: dict[date, dict[int, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for o in orders:
        day, _, user, menu = o[:4]
        counts[day][user][0 if menu == JAPANESE else 1] += 1
        hours[day][_hour(o)][0 if menu == JAPANESE else 1] += 1
    return {
        d: DayCounts({u: (c[0], c[1]) for u, c in users.items()}, {h: (c[0], c[1]) for h, c in hours[d].items()})
        for d, users in counts.items()
    }


def expected_state(snapshots: Mapping[date, Mapping[str, tuple[int, int]]]) -> dict[str, object]:
    """Every table of the aggregate, given the per-user counts of each aggregated date as
    its last run saw them (a date aggregated with no orders maps to {}); a DayCounts also
    gives the date's hours, which are all 24 rows, zeros included."""
    summaries, daily, history, transitions, sizes, hourly = {}, {}, {}, {}, {}, {}
    cum: dict[str, tuple[int, int]] = {}
    first: dict[str, date] = {}
    last: dict[str, date] = {}
    for day in sorted(snapshots):
        users = snapshots[day]
        j = sum(c[0] for c in users.values())
        w = sum(c[1] for c in users.values())
        summaries[day] = (j, w, j + w, len(users))
        hours = getattr(users, "hours", {})
        for hour in range(HOURS_OF_DAY):
            hourly[(day, hour)] = hours.get(hour, (0, 0))
        before = {u: preference(*c) for u, c in cum.items()}
        for user, (uj, uw) in users.items():
            daily[(day, user)] = (uj, uw)
            history[(user, day)] = (uj, uw)
            cj, cw = cum.get(user, (0, 0))
            cum[user] = (cj + uj, cw + uw)
            first.setdefault(user, day)
            last[user] = day
            transitions[(day, user)] = (before.get(user), preference(*cum[user]))
        after = {u: preference(*c) for u, c in cum.items()}
        for segment in SEGMENTS:
            entered = sum(1 for u, s in after.items() if s == segment and before.get(u) != segment)
            exited = sum(1 for u, s in before.items() if s == segment and after[u] != segment)
            size = sum(1 for s in after.values() if s == segment)
            sizes[(day, segment)] = (size, entered, exited)
    preferences = {
        u: (c[0], c[1], preference(*c), first[u], last[u]) for u, c in cum.items()
    }
    segments = {(preference(*c), u): (c[0], c[1], last[u]) for u, c in cum.items()}
    return {
        "daily_order_summaries": summaries,
        "user_daily_counts": daily,
        "user_daily_history": history,
        "user_segment_transitions": transitions,
        "user_preferences": preferences,
        "user_segments": segments,
        "segment_sizes": sizes,
        "hourly_order_counts": hourly,
    }


def insert_orders(session: object, orders: Iterable[tuple]) -> None:
    """Rows as the streaming job writes them (its row shape of raw_orders), each at half
    past its business hour in the configured business time zone."""
    statement = session.prepare(  # type: ignore[attr-defined]
        "INSERT INTO raw_orders (order_date, bucket, order_id, user_id, menu_type, ordered_at, "
        "ordered_at_text, ingested_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    )
    now = datetime.now(UTC)
    zone = ZoneInfo(load_settings().business.timezone)
    for o in orders:
        day, order_id, user, menu = o[:4]
        at = datetime(day.year, day.month, day.day, _hour(o), 30, tzinfo=zone).astimezone(UTC)
        session.execute(  # type: ignore[attr-defined]
            statement,
            (day, bucket_of(order_id, RAW_ORDER_BUCKETS), order_id, user, menu, at, at.isoformat(), now),
        )


def _d(value: object) -> date:
    return value.date() if hasattr(value, "date") and not isinstance(value, date) else value  # type: ignore[return-value]


def actual_state(session: object) -> dict[str, object]:
    """Every table of the aggregate as stored, in the model's shape; buckets are checked
    against orderlog.layout on the way."""
    rows = lambda cql: list(session.execute(cql))  # type: ignore[attr-defined]  # noqa: E731
    state: dict[str, dict] = {name: {} for name in expected_state({})}
    for r in rows("SELECT * FROM daily_order_summaries"):
        assert r.year == _d(r.order_date).year
        state["daily_order_summaries"][_d(r.order_date)] = (r.japanese, r.western, r.total, r.users)
    for r in rows("SELECT * FROM user_daily_counts"):
        assert r.bucket == bucket_of(r.user_id, USER_DAY_BUCKETS)
        state["user_daily_counts"][(_d(r.order_date), r.user_id)] = (r.japanese, r.western)
    for r in rows("SELECT * FROM user_daily_history"):
        assert r.year == _d(r.order_date).year
        state["user_daily_history"][(r.user_id, _d(r.order_date))] = (r.japanese, r.western)
    for r in rows("SELECT * FROM user_segment_transitions"):
        assert r.bucket == bucket_of(r.user_id, USER_DAY_BUCKETS)
        state["user_segment_transitions"][(_d(r.order_date), r.user_id)] = (r.segment_before, r.segment_after)
    for r in rows("SELECT * FROM user_preferences"):
        state["user_preferences"][r.user_id] = (
            r.japanese, r.western, r.preference, _d(r.first_order_date), _d(r.last_order_date)
        )
    for r in rows("SELECT * FROM user_segments"):
        assert r.bucket == bucket_of(r.user_id, SEGMENT_BUCKETS)
        assert r.orders == r.japanese + r.western, r  # what the audience indexes range over
        state["user_segments"][(r.segment, r.user_id)] = (r.japanese, r.western, _d(r.last_order_date))
    for r in rows("SELECT * FROM segment_sizes"):
        state["segment_sizes"][(_d(r.as_of), r.segment)] = (r.users, r.entered, r.exited)
    for r in rows("SELECT * FROM hourly_order_counts"):
        assert r.year == _d(r.order_date).year
        state["hourly_order_counts"][(_d(r.order_date), r.hour)] = (r.japanese, r.western)
    return state


# -- tests of the model itself -----------------------------------------------------------

D1, D2 = date(2025, 5, 30), date(2025, 5, 31)


def test_model_first_order_tie_and_switch() -> None:
    state = expected_state({D1: {"a": (1, 0), "b": (1, 1)}, D2: {"a": (0, 2)}})
    assert state["user_preferences"] == {
        "a": (1, 2, WESTERN, D1, D2),
        "b": (1, 1, EVEN, D1, D1),
    }
    assert state["user_segment_transitions"] == {
        (D1, "a"): (None, JAPANESE),
        (D1, "b"): (None, EVEN),
        (D2, "a"): (JAPANESE, WESTERN),
    }
    assert state["segment_sizes"] == {
        (D1, JAPANESE): (1, 1, 0),
        (D1, WESTERN): (0, 0, 0),
        (D1, EVEN): (1, 1, 0),
        (D2, JAPANESE): (0, 0, 1),
        (D2, WESTERN): (1, 1, 0),
        (D2, EVEN): (1, 0, 0),
    }
    assert state["daily_order_summaries"] == {D1: (2, 1, 3, 2), D2: (0, 2, 2, 1)}


def test_model_hours_are_24_rows_per_date_zeros_included() -> None:
    orders = [order(D1, "a", JAPANESE, 12), order(D1, "b", WESTERN, 12), order(D1, "a", JAPANESE, 19),
              order(D2, "a", WESTERN, 0)]
    counts = day_counts(orders)
    state = expected_state({D1: counts[D1], D2: counts[D2]})
    hourly = state["hourly_order_counts"]
    assert len(hourly) == 48
    assert (hourly[(D1, 12)], hourly[(D1, 19)], hourly[(D1, 13)]) == ((1, 1), (1, 0), (0, 0))
    assert hourly[(D2, 0)] == (0, 1)
    assert sum(j + w for j, w in hourly.values()) == len(orders)


def test_model_day_without_orders_keeps_sizes() -> None:
    state = expected_state({D1: {"a": (1, 0)}, D2: {}})
    assert state["daily_order_summaries"][D2] == (0, 0, 0, 0)
    assert state["segment_sizes"][(D2, JAPANESE)] == (1, 0, 0)
    assert all(state["hourly_order_counts"][(D2, h)] == (0, 0) for h in range(HOURS_OF_DAY))
