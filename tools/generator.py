"""A realistic, reproducible replay of order events (pure: no I/O, no clock).

Same parameters -> the same events, byte for byte. The parts of a replay:

* users with a leaning: strongly Japanese, strongly Western, mixed, and a few whose
  orders are exactly half and half (ties, the ``even`` segment);
* order times on a day's curve in the business time zone: a lunch peak, a larger,
  wider dinner peak, and a thin background from the morning to midnight; weekends busier;
* client ``order_id``s derived from the parameters, so sending the same replay again is
  idempotent downstream (the pipeline keys raw orders by order_id);
* the timestamp forms a real client mix sends: local offset, UTC ``Z``, epoch millis,
  and the 和食/洋食 aliases.

With ``dirty`` the *valid* events stay exactly the same (so the truth does not change);
some are sent late (in the stream of a later day) and malformed events are added,
each with the field the API must name when it refuses it.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from orderlog.business_day import date_range
from orderlog.menu import JAPANESE, WESTERN

# Leanings: (name, share of users, range of the probability that an order is Japanese).
STRONG_JAPANESE = "strong_japanese"
STRONG_WESTERN = "strong_western"
MIXED = "mixed"
TIE = "tie"
LEANINGS: tuple[tuple[str, float, tuple[float, float]], ...] = (
    (STRONG_JAPANESE, 0.35, (0.80, 0.95)),
    (STRONG_WESTERN, 0.30, (0.05, 0.20)),
    (MIXED, 0.30, (0.40, 0.60)),
)
TIE_SHARE = 0.05

# The day's curve, minutes after local midnight: (weight, mean, standard deviation).
LUNCH = (0.42, 12 * 60 + 15, 40)
DINNER = (0.40, 19 * 60 + 10, 70)
BACKGROUND = (0.18, 6 * 60, 24 * 60)  # uniform from 06:00 to midnight
MINUTES_PER_DAY = 24 * 60
# Relative order volume by weekday (Monday = 0).
WEEKDAY_WEIGHTS = (1.0, 1.0, 1.0, 1.05, 1.15, 1.3, 1.25)

# How clients write a timestamp: local offset, UTC, epoch milliseconds.
TIMESTAMP_FORMS = (("local", 0.80), ("utc", 0.12), ("epoch_ms", 0.08))
ALIAS_SHARE = 0.05
ALIASES = {JAPANESE: "和食", WESTERN: "洋食"}

LATE_SHARE = 0.01  # of the valid events of every day but the last
MALFORMED_SHARE = 0.005  # of the number of orders, at least one

# Each malformed kind: the field the API must name, and how the event is broken.
MALFORMED_KINDS: tuple[str, ...] = (
    "menu_type_missing",
    "menu_type_unknown",
    "timestamp_without_offset",
    "timestamp_garbage",
    "user_id_empty",
    "user_id_number",
    "unknown_field",
    "order_id_bad_characters",
    "not_an_object",
)
MALFORMED_FIELD = {
    "menu_type_missing": "menu_type",
    "menu_type_unknown": "menu_type",
    "timestamp_without_offset": "timestamp",
    "timestamp_garbage": "timestamp",
    "user_id_empty": "user_id",
    "user_id_number": "user_id",
    "unknown_field": "coupon",
    "order_id_bad_characters": "order_id",
    "not_an_object": "",
}


@dataclass(frozen=True)
class ReplayParams:
    end_date: date
    days: int = 7
    users: int = 2000
    orders: int = 20000
    seed: int = 42
    dirty: bool = False
    business_timezone: str = "Asia/Tokyo"

    def __post_init__(self) -> None:
        if self.days < 1:
            raise ValueError(f"days must be at least 1 (got {self.days})")
        if self.users < 1:
            raise ValueError(f"users must be at least 1 (got {self.users})")
        if self.orders < 0:
            raise ValueError(f"orders must not be negative (got {self.orders})")
        ZoneInfo(self.business_timezone)  # raises for an unknown zone

    @property
    def first_date(self) -> date:
        return self.end_date - timedelta(days=self.days - 1)

    @property
    def dates(self) -> list[date]:
        return date_range(self.first_date, self.end_date)

    @property
    def run_tag(self) -> str:
        """Short digest of what determines the valid events (not ``dirty``): the prefix
        of every order_id, so two different replays never share an order_id."""
        text = f"{self.seed}|{self.end_date}|{self.days}|{self.users}|{self.orders}|{self.business_timezone}"
        return hashlib.sha256(text.encode()).hexdigest()[:8]


@dataclass(frozen=True)
class User:
    user_id: str
    leaning: str
    p_japanese: float
    activity: float


@dataclass(frozen=True)
class GeneratedEvent:
    """One event to send. ``payload`` is what goes on the wire (a JSON value)."""

    payload: Any
    valid: bool
    business_date: date | None = None  # the day the order belongs to (valid events)
    late: bool = False
    sent_with: date | None = None  # the day in whose stream a late event is sent
    kind: str = ""  # malformed kind
    bad_field: str | None = None  # the field the API must name (malformed events)

    def to_json(self) -> str:
        return json.dumps(self.payload, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class Replay:
    params: ReplayParams
    users: tuple[User, ...]
    events: tuple[GeneratedEvent, ...]  # in sending order

    @property
    def valid_events(self) -> list[GeneratedEvent]:
        return [e for e in self.events if e.valid]

    def to_ndjson(self) -> bytes:
        return "".join(e.to_json() + "\n" for e in self.events).encode("utf-8")


def make_users(params: ReplayParams, rng: random.Random) -> list[User]:
    n = params.users
    ties = max(1, round(n * TIE_SHARE)) if n >= 4 else 0
    labels: list[str] = [TIE] * ties
    for name, share, _ in LEANINGS[:-1]:
        labels += [name] * int(n * share)
    labels += [LEANINGS[-1][0]] * (n - len(labels))
    rng.shuffle(labels)
    ranges = {name: bounds for name, _, bounds in LEANINGS}
    width = len(str(n))
    users = []
    for i, leaning in enumerate(labels, start=1):
        p = 0.5 if leaning == TIE else rng.uniform(*ranges[leaning])
        # Log-normal activity: a few regulars order far more than most.
        users.append(User(f"user-{i:0{max(width, 5)}d}", leaning, p, rng.lognormvariate(0.0, 0.8)))
    return users


def allocate_orders(users: Sequence[User], total: int, rng: random.Random) -> list[int]:
    """Orders per user, summing to ``total``; tie users get an even count so their
    orders can be split exactly in half."""
    counts = [0] * len(users)
    budget = total
    for i, user in enumerate(users):  # everyone orders at least once while the budget lasts
        need = 2 if user.leaning == TIE else 1
        if budget >= need:
            counts[i] = need
            budget -= need
    cum: list[float] = []
    acc = 0.0
    for user in users:
        acc += user.activity
        cum.append(acc)
    has_odd_slot = any(u.leaning != TIE for u in users)
    index = list(range(len(users)))
    while budget > 0:
        i = rng.choices(index, cum_weights=cum)[0]
        if users[i].leaning != TIE:
            counts[i] += 1
            budget -= 1
        elif budget >= 2:
            counts[i] += 2
            budget -= 2
        elif not has_odd_slot:
            break  # only tie users and one order left: it cannot be placed evenly
    return counts


def minute_of_day(rng: random.Random) -> float:
    """A minute after local midnight on the day's curve."""
    pick = rng.random()
    if pick < LUNCH[0]:
        mean, sd = LUNCH[1:]
    elif pick < LUNCH[0] + DINNER[0]:
        mean, sd = DINNER[1:]
    else:
        return rng.uniform(BACKGROUND[1], BACKGROUND[2])
    while True:
        minute = rng.gauss(mean, sd)
        if 0 <= minute < MINUTES_PER_DAY:
            return minute


def render_timestamp(instant: datetime, form: str) -> str | int:
    if form == "utc":
        return instant.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if form == "epoch_ms":
        return round(instant.timestamp() * 1000)
    return instant.isoformat(timespec="milliseconds")


def _weighted(rng: random.Random, choices: Iterable[tuple[str, float]]) -> str:
    pick = rng.random()
    acc = 0.0
    last = ""
    for name, weight in choices:
        acc += weight
        last = name
        if pick < acc:
            return name
    return last


def generate(params: ReplayParams) -> Replay:
    """The replay of ``params``: users, and every event in sending order."""
    rng = random.Random(params.seed)
    zone = ZoneInfo(params.business_timezone)
    users = make_users(params, rng)
    counts = allocate_orders(users, params.orders, rng)
    dates = params.dates
    day_weights = [WEEKDAY_WEIGHTS[d.weekday()] for d in dates]

    orders: list[tuple[datetime, str, str, date]] = []  # (instant, user_id, menu_type, day)
    for user, count in zip(users, counts, strict=True):
        if user.leaning == TIE:
            menus = [JAPANESE] * (count // 2) + [WESTERN] * (count // 2)
            rng.shuffle(menus)
        else:
            menus = [JAPANESE if rng.random() < user.p_japanese else WESTERN for _ in range(count)]
        for menu in menus:
            day = rng.choices(dates, weights=day_weights)[0]
            # Wall-clock time of the business day, then a real instant in that zone.
            seconds = round(minute_of_day(rng) * 60, 3)
            wall = datetime(day.year, day.month, day.day) + timedelta(seconds=seconds)
            instant = wall.replace(tzinfo=zone)
            orders.append((instant, user.user_id, menu, day))
    # A replay of a log is in time order; ties broken by user for a total order.
    orders.sort(key=lambda o: (o[0].astimezone(UTC), o[1], o[2]))

    tag = params.run_tag
    events: list[GeneratedEvent] = []
    for n, (instant, user_id, menu, _day) in enumerate(orders, start=1):
        form = _weighted(rng, TIMESTAMP_FORMS)
        menu_text = ALIASES[menu] if rng.random() < ALIAS_SHARE else menu
        payload = {
            "order_id": f"rp-{tag}-{n:07d}",
            "user_id": user_id,
            "timestamp": render_timestamp(instant, form),
            "menu_type": menu_text,
        }
        events.append(GeneratedEvent(payload, valid=True, business_date=instant.date()))
    if params.dirty:
        events = make_dirty(events, params)
    return Replay(params, tuple(users), tuple(events))


def make_dirty(events: list[GeneratedEvent], params: ReplayParams) -> list[GeneratedEvent]:
    """Move some valid events into a later day's stream and add malformed events.

    Its own random stream, so the valid events are those of the clean replay."""
    rng = random.Random(f"{params.seed}-dirty")
    last = params.end_date
    late_candidates = [i for i, e in enumerate(events) if e.business_date and e.business_date < last]
    late_count = round(len(late_candidates) * LATE_SHARE) if late_candidates else 0
    if late_candidates and late_count == 0:
        late_count = 1
    late_ids = set(rng.sample(late_candidates, late_count))

    by_day: dict[date, list[GeneratedEvent]] = {d: [] for d in params.dates}
    moved: list[GeneratedEvent] = []
    for i, event in enumerate(events):
        if i in late_ids:
            assert event.business_date is not None
            offset = rng.randint(1, (last - event.business_date).days)
            target = event.business_date + timedelta(days=offset)
            moved.append(
                GeneratedEvent(event.payload, True, event.business_date, late=True, sent_with=target)
            )
        else:
            by_day.setdefault(event.business_date or last, []).append(event)
    for event in moved:  # into the stream of its later day, at a random place
        assert event.sent_with is not None
        stream = by_day[event.sent_with]
        # After at least one order of the later day, so it is truly sent late.
        stream.insert(rng.randint(min(1, len(stream)), len(stream)), event)

    stream = [e for d in sorted(by_day) for e in by_day[d]]
    valid = list(stream)
    malformed = max(1, round(params.orders * MALFORMED_SHARE))
    for n in range(1, malformed + 1):
        kind = MALFORMED_KINDS[(n - 1) % len(MALFORMED_KINDS)]
        template = valid[rng.randrange(len(valid))].payload if valid else None
        event = malformed_event(kind, n, params, template)
        stream.insert(rng.randint(0, len(stream)), event)
    return stream


def malformed_event(kind: str, n: int, params: ReplayParams, template: dict[str, Any] | None) -> GeneratedEvent:
    """An event the API must refuse, naming ``MALFORMED_FIELD[kind]``."""
    base: dict[str, Any] = dict(template) if template else {
        "user_id": "user-00001",
        "timestamp": f"{params.end_date.isoformat()}T12:00:00.000+09:00",
        "menu_type": JAPANESE,
    }
    base["order_id"] = f"rp-{params.run_tag}-bad-{n:05d}"
    payload: Any = base
    if kind == "menu_type_missing":
        del base["menu_type"]
    elif kind == "menu_type_unknown":
        base["menu_type"] = "chinese"
    elif kind == "timestamp_without_offset":
        base["timestamp"] = f"{params.end_date.isoformat()}T12:00:00"
    elif kind == "timestamp_garbage":
        base["timestamp"] = "lunchtime"
    elif kind == "user_id_empty":
        base["user_id"] = ""
    elif kind == "user_id_number":
        base["user_id"] = 12345
    elif kind == "unknown_field":
        base["coupon"] = "SUMMER"
    elif kind == "order_id_bad_characters":
        base["order_id"] = f"bad id {n}!"
    elif kind == "not_an_object":
        payload = [base.get("user_id"), base.get("menu_type")]
    else:
        raise ValueError(f"unknown malformed kind {kind!r}")
    return GeneratedEvent(payload, valid=False, kind=kind, bad_field=MALFORMED_FIELD[kind])
