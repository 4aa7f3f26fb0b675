"""Property: whatever the schedule of runs (repeats, out of order, late orders then
re-runs, runs crashed between two steps), the job ends in the state the plain-Python
model computes from scratch. Few examples, each with real Spark runs."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from jobs.aggregate import InjectedCrash, aggregate
from orderlog.menu import JAPANESE, WESTERN
from orderlog.schema import truncate_tables
from tests.test_aggregate_model import actual_state, day_counts, expected_state, insert_orders, order

pytestmark = [pytest.mark.integration, pytest.mark.fault]

DAYS = [date(2025, 12, 30) + timedelta(days=n) for n in range(4)]  # crosses a year
USERS = ["u1", "u2", "u3", "u4", "ユーザー5"]
STEPS = ["summary", "hourly", "daily_counts", "transitions", "preferences", "segments"]

# Business hours: the ends of the day, lunch and dinner (few values, so hours collide).
HOURS = [0, 12, 19, 23]
orders_st = st.lists(
    st.tuples(st.sampled_from(DAYS), st.sampled_from(USERS), st.sampled_from([JAPANESE, WESTERN]),
              st.sampled_from(HOURS)),
    max_size=12,
)
action_st = st.one_of(
    st.tuples(st.just("run"), st.sampled_from(DAYS), st.none()),
    st.tuples(st.just("crash"), st.sampled_from(DAYS), st.sampled_from(STEPS)),
    st.tuples(st.just("late"), st.none(), orders_st),
)


@hsettings(
    max_examples=4,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(initial=orders_st, schedule=st.lists(action_st, min_size=2, max_size=5))
def test_any_schedule_ends_in_the_from_scratch_state(spark, settings, cassandra, initial, schedule) -> None:
    truncate_tables(cassandra)
    stored = [order(*o) for o in initial]
    insert_orders(cassandra, stored)
    seen: dict[date, dict] = {}  # each aggregated date as its last completed run saw it
    pending: list[date] = []

    def complete(day: date) -> None:
        seen[day] = day_counts(stored).get(day, {})

    for kind, day, arg in schedule:
        if kind == "late":
            late = [order(*o) for o in arg]
            insert_orders(cassandra, late)
            stored.extend(late)
            continue
        recovered = list(pending)
        try:
            aggregate(spark, settings, [day], crash_after=arg, log=lambda line: None)
        except InjectedCrash:
            # The crash hits the first date the run works on: a pending one if any (then
            # the requested date never started), else the requested date.
            pending = pending or [day]
            continue
        for d in recovered + [day]:
            complete(d)
        pending = []
    if pending:
        aggregate(spark, settings, [], log=lambda line: None)  # the next night's run redoes them
        for d in pending:
            complete(d)
    assert actual_state(cassandra) == expected_state(seen)
