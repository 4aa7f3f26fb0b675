"""Unit tests of the aggregate's pure transformations (chispa; local Spark, no servers)."""

from __future__ import annotations

from datetime import date

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from jobs import aggregate_transforms as transforms
from orderlog.layout import SEGMENT_BUCKETS, bucket_of
from orderlog.menu import EVEN, JAPANESE, WESTERN, preference, preference_col

D1, D2, D3 = date(2025, 5, 29), date(2025, 5, 30), date(2025, 5, 31)
COUNTS = "user_id string, japanese int, western int"
TIMELINE = "user_id string, order_date date, japanese int, western int"
NOON = 12


def _new(spark, rows):
    """New counts of a day as user_day_counts gives them: every order at noon."""
    at_noon = lambda n: [n if h == NOON else 0 for h in range(24)]  # noqa: E731
    return spark.createDataFrame(
        [(u, j, w, at_noon(j), at_noon(w)) for u, j, w in rows],
        COUNTS + ", japanese_by_hour array<int>, western_by_hour array<int>",
    )


@pytest.fixture(scope="module")
def spark():
    from jobs.session import local_session
    from orderlog.config import load_settings

    # getOrCreate: the same session as the integration tests' fixture when run together.
    return local_session(load_settings(), "orderlog-tests")


def test_user_day_counts_counts_each_menu_and_hour_and_drops_uncountable_rows(spark) -> None:
    orders = spark.createDataFrame(
        [("a", JAPANESE, 12), ("a", WESTERN, 19), ("a", JAPANESE, 12), ("b", WESTERN, 0), (None, JAPANESE, 12),
         ("c", "sushi", 12), ("d", WESTERN, None)],
        "user_id string, menu_type string, hour int",
    )
    hours = lambda **at: [at.get(f"h{h}", 0) for h in range(24)]  # noqa: E731
    expected = spark.createDataFrame(
        [("a", 2, 1, hours(h12=2), hours(h19=1)), ("b", 0, 1, hours(), hours(h0=1)),
         ("d", 0, 1, hours(), hours())],  # an order without a timestamp counts in no hour
        COUNTS + ", japanese_by_hour array<int>, western_by_hour array<int>",
    )
    assert_df_equality(transforms.user_day_counts(orders), expected, ignore_row_order=True, ignore_nullable=True)


def test_day_figures_sum_the_new_counts_and_count_touched_and_stale_users(spark) -> None:
    old = spark.createDataFrame([("a", 1, 0), ("stale", 0, 3)], COUNTS)
    new = _new(spark, [("a", 2, 1), ("b", 0, 1)])
    row = transforms.day_figures(transforms.old_and_new_counts(old, new), D3).first().asDict()
    noon = lambda n: [n if h == NOON else 0 for h in range(24)]  # noqa: E731
    assert row == {
        "year": 2025, "order_date": D3, "japanese": 2, "western": 2, "total": 4, "users": 2, "touched": 3, "stale": 1,
        "japanese_by_hour": noon(2), "western_by_hour": noon(2),
    }


def test_day_figures_of_a_day_without_orders_is_a_row_of_zeros(spark) -> None:
    rows = transforms.day_figures(
        transforms.old_and_new_counts(spark.createDataFrame([], COUNTS), _new(spark, [])), D3
    ).collect()
    assert [r.asDict() for r in rows] == [
        {"year": 2025, "order_date": D3, "japanese": 0, "western": 0, "total": 0, "users": 0, "touched": 0, "stale": 0,
         "japanese_by_hour": [0] * 24, "western_by_hour": [0] * 24}
    ]


def test_hourly_rows_are_all_24_hours_zeros_included() -> None:
    figures = {"order_date": D3, "japanese_by_hour": [0] * 12 + [5] + [0] * 11, "western_by_hour": [1] + [0] * 23}
    rows = transforms.hourly_rows(figures)
    assert [r["hour"] for r in rows] == list(range(24))
    assert rows[0] == {"year": 2025, "order_date": D3, "hour": 0, "japanese": 0, "western": 1}
    assert rows[12] == {"year": 2025, "order_date": D3, "hour": 12, "japanese": 5, "western": 0}
    assert sum(r["japanese"] + r["western"] for r in rows) == 6


def test_old_and_new_counts_give_back_the_new_counts_and_the_stale_users(spark) -> None:
    old = spark.createDataFrame([("a", 1, 0), ("stale", 0, 3)], COUNTS)
    new = _new(spark, [("a", 2, 1), ("b", 0, 1)])
    day_counts = transforms.old_and_new_counts(old, new)
    expected = new.select("user_id", "japanese", "western")
    assert_df_equality(transforms.new_counts_of(day_counts), expected, ignore_row_order=True, ignore_nullable=True)
    assert [r.user_id for r in transforms.stale_users(day_counts).collect()] == ["stale"]


def test_preference_col_agrees_with_orderlog_menu(spark) -> None:
    pairs = [(3, 1), (1, 3), (2, 2), (0, 0), (0, 1)]
    df = spark.createDataFrame(pairs, "j int, w int").select(
        "j", "w", preference_col(F.col("j"), F.col("w")).alias("p")
    )
    assert {(r.j, r.w): r.p for r in df.collect()} == {p: preference(*p) for p in pairs}


def test_merge_day_into_history_replaces_the_days_stored_counts(spark) -> None:
    history = spark.createDataFrame([("a", D1, 1, 0), ("a", D2, 5, 5), ("b", D2, 0, 1)], TIMELINE)
    new = spark.createDataFrame([("a", 0, 2), ("c", 1, 0)], COUNTS)
    expected = spark.createDataFrame([("a", D1, 1, 0), ("a", D2, 0, 2), ("c", D2, 1, 0)], TIMELINE)
    assert_df_equality(
        transforms.merge_day_into_history(history, new, D2), expected, ignore_row_order=True, ignore_nullable=True
    )


def test_segment_transitions_first_order_tie_and_switch(spark) -> None:
    timeline = spark.createDataFrame(
        [
            ("first", D3, 1, 0),  # first order ever: enters japanese from nothing
            ("tie", D1, 1, 0),
            ("tie", D2, 0, 1),  # 1:1 -> even
            ("switch", D1, 2, 0),
            ("switch", D3, 0, 3),  # 2:3 -> western
        ],
        TIMELINE,
    )
    got = {
        (r.user_id, r.order_date): (r.cum_japanese, r.cum_western, r.segment_before, r.segment_after)
        for r in transforms.with_segment_transitions(timeline).collect()
    }
    assert got == {
        ("first", D3): (1, 0, None, JAPANESE),
        ("tie", D1): (1, 0, None, JAPANESE),
        ("tie", D2): (1, 1, JAPANESE, EVEN),
        ("switch", D1): (2, 0, None, JAPANESE),
        ("switch", D3): (2, 3, JAPANESE, WESTERN),
    }


def test_transition_rows_keep_the_day_and_later_dates_only(spark) -> None:
    timeline = spark.createDataFrame([("a", D1, 1, 0), ("a", D2, 0, 1), ("a", D3, 0, 1)], TIMELINE)
    rows = transforms.transition_rows(transforms.with_segment_transitions(timeline), D2).collect()
    assert sorted((r.order_date, r.segment_before, r.segment_after) for r in rows) == [
        (D2, JAPANESE, EVEN),
        (D3, EVEN, WESTERN),
    ]


def test_user_preferences_cumulative_tie_and_dates(spark) -> None:
    timeline = spark.createDataFrame(
        [("a", D1, 1, 0), ("a", D3, 0, 1), ("b", D2, 0, 2), ("c", D3, 1, 0)], TIMELINE
    )
    got = {
        r.user_id: (r.japanese, r.western, r.preference, r.first_order_date, r.last_order_date)
        for r in transforms.user_preferences(transforms.with_segment_transitions(timeline)).collect()
    }
    assert got == {
        "a": (1, 1, EVEN, D1, D3),
        "b": (0, 2, WESTERN, D2, D2),
        "c": (1, 0, JAPANESE, D3, D3),
    }


def _prefs(spark, rows):
    return spark.createDataFrame(
        rows, "user_id string, japanese long, western long, preference string"
    )


def test_segment_deletions_remove_the_old_segment_of_a_user_who_switched(spark) -> None:
    # switch: 2:0 before, the day adds 0:3 -> western; stay: japanese before and after;
    # new: first order ever, no old segment to delete.
    prefs = _prefs(spark, [("switch", 2, 3, WESTERN), ("stay", 3, 1, JAPANESE), ("new", 0, 1, WESTERN)])
    old = spark.createDataFrame([], COUNTS)
    new = _new(spark, [("switch", 0, 3), ("stay", 1, 0), ("new", 0, 1)])
    got = transforms.segment_deletions(prefs, transforms.old_and_new_counts(old, new), all_but_new_segment=False)
    expected = spark.createDataFrame(
        [(JAPANESE, bucket_of("switch", SEGMENT_BUCKETS), "switch")], "segment string, bucket short, user_id string"
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_segment_deletions_on_a_rerun_use_the_stored_contribution(spark) -> None:
    # The stored day said 0:1 (user was even at 1:1), the re-run with a late order says
    # 0:2 -> western: the even row must go.
    prefs = _prefs(spark, [("late", 1, 2, WESTERN)])
    old = spark.createDataFrame([("late", 0, 1)], COUNTS)
    new = _new(spark, [("late", 0, 2)])
    day_counts = transforms.old_and_new_counts(old, new)
    got = [tuple(r) for r in transforms.segment_deletions(prefs, day_counts, all_but_new_segment=False).collect()]
    assert got == [(EVEN, bucket_of("late", SEGMENT_BUCKETS), "late")]


def test_segment_deletions_after_a_crash_remove_every_other_segment(spark) -> None:
    prefs = _prefs(spark, [("a", 1, 0, JAPANESE)])
    new = _new(spark, [("a", 1, 0)])
    old = spark.createDataFrame([("gone", 1, 0)], COUNTS)  # no order left at all
    day_counts = transforms.old_and_new_counts(old, new)
    got = sorted(tuple(r) for r in transforms.segment_deletions(prefs, day_counts, all_but_new_segment=True).collect())
    b = bucket_of("a", SEGMENT_BUCKETS)
    g = bucket_of("gone", SEGMENT_BUCKETS)
    assert got == sorted(
        [(EVEN, b, "a"), (WESTERN, b, "a"), (EVEN, g, "gone"), (JAPANESE, g, "gone"), (WESTERN, g, "gone")]
    )


def test_segment_movements_count_entries_and_exits(spark) -> None:
    transitions = spark.createDataFrame(
        [
            (D3, "new", None, JAPANESE),
            (D3, "switch", JAPANESE, WESTERN),
            (D3, "stay", WESTERN, WESTERN),
            (D3, "tie", WESTERN, EVEN),
        ],
        "order_date date, user_id string, segment_before string, segment_after string",
    )
    movements = transforms.segment_movements(transitions).collect()
    got = {(r.order_date, r.segment): (r.entered, r.exited) for r in movements}
    assert got == {(D3, JAPANESE): (1, 1), (D3, WESTERN): (1, 1), (D3, EVEN): (1, 0)}


def test_segment_size_rows_chain_from_the_previous_date() -> None:
    movements = {(D2, JAPANESE): (2, 0), (D3, JAPANESE): (0, 1), (D3, WESTERN): (1, 0)}
    rows = transforms.segment_size_rows({JAPANESE: 5, EVEN: 1}, [D3, D2], movements)
    got = {(r["as_of"], r["segment"]): (r["users"], r["entered"], r["exited"]) for r in rows}
    assert got == {
        (D2, JAPANESE): (7, 2, 0),
        (D2, WESTERN): (0, 0, 0),
        (D2, EVEN): (1, 0, 0),
        (D3, JAPANESE): (6, 0, 1),
        (D3, WESTERN): (1, 1, 0),
        (D3, EVEN): (1, 0, 0),
    }
    assert {r["year"] for r in rows} == {2025}
