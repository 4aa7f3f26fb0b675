"""The late-order rules, as units (orderlog/late_orders.py): the replay-safe merge of a
batch's per-date counts, and which dates a run without dates does, and why."""

from __future__ import annotations

from datetime import date, datetime

import hypothesis
from hypothesis import given
from hypothesis import strategies as st

from orderlog.late_orders import (
    LATE,
    NIGHTLY,
    RECOVERY,
    REQUESTED,
    LastRun,
    PlannedDate,
    StreamCount,
    late_orders,
    merge_batch_count,
    nightly_dates,
    requested_dates,
    with_recovery,
)

D1, D2, D3, D4 = date(2025, 5, 28), date(2025, 5, 29), date(2025, 5, 30), date(2025, 5, 31)
RUN_AT = datetime(2025, 5, 31, 16, 0)


class CountTable:
    """stream_day_counts in memory: (day, query) -> row, written the streaming job's way."""

    def __init__(self) -> None:
        self.rows: dict[tuple[date, str], StreamCount] = {}

    def write_batch(self, query: str, batch_id: int, counts: dict[date, int]) -> None:
        for day, count in counts.items():
            self.rows[(day, query)] = merge_batch_count(self.rows.get((day, query)), batch_id, count)

    def total(self, day: date) -> int:
        return sum(row.records for (d, _), row in self.rows.items() if d == day)


def test_the_first_batch_of_a_day_starts_its_row() -> None:
    assert merge_batch_count(None, 0, 12) == StreamCount(records=12, records_before=0, batch_id=0)


def test_the_next_batch_adds_and_remembers_the_total_before_it() -> None:
    assert merge_batch_count(StreamCount(12, 0, 0), 1, 5) == StreamCount(17, 12, 1)
    assert merge_batch_count(StreamCount(17, 12, 1), 7, 3) == StreamCount(20, 17, 7)  # days skip batches


def test_a_replayed_batch_recomputes_instead_of_adding_again() -> None:
    after_batch_1 = merge_batch_count(StreamCount(12, 0, 0), 1, 5)
    # Batch 1 ran, wrote its counts, and the job died before Spark committed it: replayed.
    assert merge_batch_count(after_batch_1, 1, 5) == after_batch_1
    assert merge_batch_count(merge_batch_count(after_batch_1, 1, 5), 1, 5) == StreamCount(17, 12, 1)


def test_two_queries_keep_rows_of_their_own_and_the_total_is_their_sum() -> None:
    table = CountTable()
    table.write_batch("query-a", 0, {D1: 10, D2: 3})
    table.write_batch("query-a", 1, {D2: 4})
    # A new checkpoint: a new query whose batch ids start again at 0.
    table.write_batch("query-b", 0, {D2: 2})
    table.write_batch("query-a", 1, {D2: 4})  # query a replays its batch 1: not added again
    table.write_batch("query-b", 0, {D2: 2})  # so does query b its batch 0
    assert (table.total(D1), table.total(D2)) == (10, 9)
    assert table.rows[(D2, "query-a")] == StreamCount(7, 3, 1)
    assert table.rows[(D2, "query-b")] == StreamCount(2, 0, 0)


@hypothesis.settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.dictionaries(st.sampled_from([D1, D2, D3]), st.integers(1, 1000), max_size=3), st.integers(1, 3)),
        max_size=12,
    )
)
def test_replays_never_count_twice(batches) -> None:
    """Each batch written 1 to 3 times (a crash after its counts, before Spark's commit,
    replays it): every day's total is the sum of the batches' counts."""
    table = CountTable()
    for batch_id, (counts, attempts) in enumerate(batches):
        for _ in range(attempts):
            table.write_batch("query", batch_id, counts)
    for day in (D1, D2, D3):
        assert table.total(day) == sum(counts.get(day, 0) for counts, _ in batches)


def test_late_orders_are_what_arrived_after_the_last_run() -> None:
    assert late_orders(50, 50) == 0
    assert late_orders(57, 50) == 7
    assert late_orders(12, None) == 12  # no successful run recorded
    assert late_orders(40, 50) == 0  # never negative


def test_the_nightly_run_does_late_dates_oldest_first_then_yesterday() -> None:
    totals = {D1: 40, D2: 30, D3: 8, D4: 100, date(2025, 6, 1): 5}
    runs = {
        D1: LastRun("r1", RUN_AT, RUN_AT, 40),  # nothing new
        D2: LastRun("r2", RUN_AT, RUN_AT, 23),  # 7 arrived after its run
    }  # D3 has orders and no successful run; D4 is yesterday; 06-01 is today
    assert nightly_dates(totals, runs, yesterday=D4) == [
        PlannedDate(D2, LATE, "7 orders arrived after its last run (started 2025-05-31 16:00:00 UTC)"),
        PlannedDate(D3, LATE, "8 orders arrived and no successful run of it is recorded"),
        PlannedDate(D4, NIGHTLY, "yesterday"),
    ]


def test_the_nightly_run_without_late_orders_is_yesterday_once() -> None:
    runs = {D4: LastRun("r4", RUN_AT, RUN_AT, 10)}
    assert nightly_dates({D4: 12}, runs, yesterday=D4) == [PlannedDate(D4, NIGHTLY, "yesterday")]
    assert nightly_dates({}, {}, yesterday=D4) == [PlannedDate(D4, NIGHTLY, "yesterday")]


def test_unfinished_dates_come_first_and_only_once() -> None:
    planned = with_recovery({D3: "run-x"}, requested_dates([D1, D3, D4]))
    assert planned == [
        PlannedDate(D3, RECOVERY, "its last run did not finish; redone first"),
        PlannedDate(D1, REQUESTED, "requested"),
        PlannedDate(D4, REQUESTED, "requested"),
    ]
    assert with_recovery({D2: "run-y"}, []) == [PlannedDate(D2, RECOVERY, "its last run did not finish; redone first")]
