"""The aggregate job against the real Cassandra and Spark: every table compared with the
plain-Python model after in-order runs, re-runs, backfills, late orders and crashes."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from jobs.aggregate import InjectedCrash, aggregate
from jobs.aggregate_io import read_history, read_orders
from jobs.aggregate_lock import LockHeld, LockLost
from orderlog.menu import EVEN, JAPANESE, WESTERN
from tests.conftest import free_ports
from tests.test_aggregate_model import actual_state, day_counts, expected_state, insert_orders, order

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
D1, D2, D3 = date(2025, 5, 29), date(2025, 5, 30), date(2025, 5, 31)
J, W = JAPANESE, WESTERN

# alice: J, then W W -> western on D2; bob: J W -> even; carol: only D3; dave: W on D1 only.
# Business hours: lunch (12), dinner (19), and the ends of the day (0, 23).
ORDERS = [
    order(D1, "alice", J, 12), order(D1, "bob", J, 12), order(D1, "dave", W, 19),
    order(D2, "alice", W, 0), order(D2, "alice", W, 19), order(D2, "bob", W, 23),
    order(D3, "carol", J, 12), order(D3, "carol", J, 13), order(D3, "alice", J, 19),
]  # fmt: skip


def run(spark, settings, *dates: date, **kwargs) -> None:
    aggregate(spark, settings, list(dates), log=lambda line: None, **kwargs)


def snapshot(orders, dates):
    counts = day_counts(orders)
    return {d: counts.get(d, {}) for d in dates}


def ledger(cassandra) -> list[tuple]:
    rows = cassandra.execute("SELECT order_date, status, orders_read, users_touched, error FROM aggregate_runs")
    return sorted((r.order_date.date(), r.status, r.orders_read, r.users_touched) for r in rows)


def test_reads_only_the_days_partitions(spark, settings, clean_cassandra) -> None:
    plan = read_orders(spark, settings, D3)._jdf.queryExecution().executedPlan().toString()
    assert f'["order_date" = ?, {D3}]' in plan
    assert '"bucket" IN (' + ", ".join(["?"] * 32) + ")" in plan
    history = read_history(spark, settings, spark.createDataFrame([("alice",)], "user_id string"), [2025])
    assert "Cassandra Direct Join [user_id = user_id" in history._jdf.queryExecution().executedPlan().toString()


def test_in_order_run_writes_every_table(spark, settings, clean_cassandra) -> None:
    insert_orders(clean_cassandra, ORDERS)
    run(spark, settings, D1, D2, D3)
    state = actual_state(clean_cassandra)
    assert state == expected_state(snapshot(ORDERS, [D1, D2, D3]))
    # The same figures spelled out, so the model itself is checked too.
    assert state["daily_order_summaries"] == {D1: (2, 1, 3, 3), D2: (0, 3, 3, 2), D3: (3, 0, 3, 2)}
    assert state["user_preferences"]["alice"] == (2, 2, EVEN, D1, D3)
    assert state["user_preferences"]["carol"] == (2, 0, J, D3, D3)
    assert set(state["user_segments"]) == {(EVEN, "alice"), (EVEN, "bob"), (J, "carol"), (W, "dave")}
    assert state["segment_sizes"][(D2, W)] == (2, 1, 0)  # alice entered western on D2
    assert state["segment_sizes"][(D2, J)] == (0, 0, 2)  # alice and bob left japanese
    assert state["segment_sizes"][(D3, EVEN)] == (2, 1, 0)  # alice: 2:2
    hourly = state["hourly_order_counts"]
    assert len(hourly) == 3 * 24  # every hour of every date, zeros included
    assert (hourly[(D1, 12)], hourly[(D1, 19)], hourly[(D1, 13)]) == ((2, 0), (0, 1), (0, 0))
    assert (hourly[(D2, 0)], hourly[(D2, 23)]) == ((0, 1), (0, 1))
    assert ledger(clean_cassandra) == [
        (D1, "succeeded", 3, 3), (D2, "succeeded", 3, 2), (D3, "succeeded", 3, 2)
    ]  # fmt: skip
    assert list(clean_cassandra.execute("SELECT * FROM aggregate_pending")) == []
    assert list(clean_cassandra.execute("SELECT * FROM aggregate_lock")) == []
    assert {r.trigger for r in clean_cassandra.execute("SELECT trigger FROM aggregate_runs")} == {"requested"}
    # What each run saw of the stream (nothing here: the orders were not streamed).
    seen = clean_cassandra.execute("SELECT order_date, records_seen, run_id FROM aggregated_dates WHERE year = 2025")
    assert sorted((r.order_date.date(), r.records_seen) for r in seen) == [(D1, 0), (D2, 0), (D3, 0)]


def test_reruns_and_backfills_equal_the_in_order_run(spark, settings, clean_cassandra) -> None:
    insert_orders(clean_cassandra, ORDERS)
    run(spark, settings, D3, D3, D1, D2, D1)  # newest first, repeats, backfill
    assert actual_state(clean_cassandra) == expected_state(snapshot(ORDERS, [D1, D2, D3]))


def test_late_orders_then_rerun_counts_them_once(spark, settings, clean_cassandra) -> None:
    insert_orders(clean_cassandra, ORDERS)
    run(spark, settings, D1, D2, D3)
    late = [order(D2, "dave", J, 12), order(D2, "dave", J, 12), order(D2, "erin", W, 19)]
    insert_orders(clean_cassandra, late)
    run(spark, settings, D2)
    run(spark, settings, D2)
    expected = expected_state(snapshot(ORDERS + late, [D1, D2, D3]))
    assert actual_state(clean_cassandra) == expected
    assert expected["hourly_order_counts"][(D2, 12)] == (2, 0)
    assert expected["hourly_order_counts"][(D2, 19)] == (0, 2)
    assert expected["user_preferences"]["dave"] == (2, 1, J, D1, D2)
    assert (W, "dave") not in expected["user_segments"]


def test_a_day_without_orders_gets_a_row_of_zeros(spark, settings, clean_cassandra) -> None:
    insert_orders(clean_cassandra, [o for o in ORDERS if o[0] != D2])
    run(spark, settings, D1, D2)
    state = actual_state(clean_cassandra)
    assert state["daily_order_summaries"][D2] == (0, 0, 0, 0)
    assert state == expected_state(snapshot(ORDERS, [D1]) | {D2: {}})


def test_a_rerun_after_orders_vanished_leaves_no_stale_hour(spark, settings, clean_cassandra) -> None:
    """A late-order correction that removes orders (here: the raw rows deleted): the re-run
    writes 0 into the hour they were in, it does not keep the old count."""
    from orderlog.layout import RAW_ORDER_BUCKETS, bucket_of

    insert_orders(clean_cassandra, ORDERS)
    run(spark, settings, D1)
    assert actual_state(clean_cassandra)["hourly_order_counts"][(D1, 19)] == (0, 1)
    dave = next(o for o in ORDERS if o[0] == D1 and o[2] == "dave")
    clean_cassandra.execute(
        "DELETE FROM raw_orders WHERE order_date = %s AND bucket = %s AND order_id = %s",
        (D1, bucket_of(dave[1], RAW_ORDER_BUCKETS), dave[1]),
    )
    run(spark, settings, D1)
    state = actual_state(clean_cassandra)
    assert state["hourly_order_counts"][(D1, 19)] == (0, 0)
    assert state == expected_state(snapshot([o for o in ORDERS if o != dave], [D1]))


@pytest.mark.fault
@pytest.mark.parametrize("step", ["summary", "hourly", "daily_counts", "transitions", "preferences", "segments"])
def test_a_crashed_run_is_redone_first_by_the_next_run(spark, settings, clean_cassandra, step) -> None:
    insert_orders(clean_cassandra, ORDERS)
    run(spark, settings, D1, D2)
    # Late orders for D1 flip bob and alice: the crashed run has rewritten some rows only.
    late = [order(D1, "bob", W, 7), order(D1, "bob", W, 12), order(D1, "alice", J, 21), order(D1, "alice", J, 21)]
    insert_orders(clean_cassandra, late)
    with pytest.raises(InjectedCrash):
        run(spark, settings, D1, crash_after=step)
    assert [r.order_date.date() for r in clean_cassandra.execute("SELECT * FROM aggregate_pending")] == [D1]
    assert (D1, "failed", None, None) in ledger(clean_cassandra)
    run(spark, settings, D3)  # redoes D1 before D3
    assert actual_state(clean_cassandra) == expected_state(snapshot(ORDERS + late, [D1, D2, D3]))
    assert list(clean_cassandra.execute("SELECT * FROM aggregate_pending")) == []


def test_a_second_run_waits_for_the_lock(spark, settings, clean_cassandra) -> None:
    from jobs.aggregate_ledger import Ledger
    from orderlog.cassandra_session import connect, shutdown

    holder = Ledger(connect(settings))
    holder.acquire_lock(60)
    try:
        with pytest.raises(LockHeld, match=r"^another aggregate run holds the lock \("):
            run(spark, settings, D1)
    finally:
        holder.release_lock()
        shutdown(holder.session)
    assert list(clean_cassandra.execute("SELECT * FROM daily_order_summaries")) == []
    run(spark, settings, D1)  # free again
    assert len(list(clean_cassandra.execute("SELECT * FROM daily_order_summaries"))) == 1


def _cli(*args: str, runner: list[str] | None = None, **env: str) -> subprocess.CompletedProcess:
    command = (runner or [sys.executable, "-m", "jobs.aggregate"]) + list(args)
    return subprocess.run(
        command, cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=600
    )


def test_spark_submit_runs_the_job(settings, clean_cassandra) -> None:
    insert_orders(clean_cassandra, ORDERS)
    done = _cli("--from", str(D1), "--to", str(D3), runner=["./spark-submit.sh", "aggregate"])
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"aggregate {D3}: 3 orders, 2 users touched" in done.stdout
    assert actual_state(clean_cassandra) == expected_state(snapshot(ORDERS, [D1, D2, D3]))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--date", "2025-02-30"], "aggregate: error: argument --date: '2025-02-30' is not a date (YYYY-MM-DD)"),
        (
            ["--from", "2025-06-02", "--to", "2025-06-01"],
            "aggregate: error: --from 2025-06-02 is after --to 2025-06-01",
        ),
        (["--from", "2025-06-01"], "aggregate: error: --from and --to go together"),
        *[
            (["--lock-ttl", ttl], f"aggregate: error: argument --lock-ttl: {ttl!r} is not a whole number of "
             "seconds from 30 to 86400")
            for ttl in ("5", "1.5", "86401", "soon")
        ],
    ],
)
def test_bad_arguments_exit_with_one_clear_line(args, message) -> None:
    done = _cli(*args)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == message
    assert "Traceback" not in done.stderr


def test_unreachable_cassandra_exits_with_one_clear_line() -> None:
    (port,) = free_ports(1)
    done = _cli("--date", "2025-05-31", ORDERLOG_CASSANDRA_PORT=str(port))
    assert done.returncode == 1
    assert done.stderr.strip() == f"aggregate: error: Cassandra is unreachable at 127.0.0.1:{port}"


@pytest.mark.fault
def test_a_killed_spark_submit_run_is_redone_after_its_lock_expires(spark, settings, clean_cassandra) -> None:
    import signal
    import time

    insert_orders(clean_cassandra, ORDERS)
    run(spark, settings, D1, D2)
    late = [order(D1, "bob", W), order(D1, "bob", W)]
    insert_orders(clean_cassandra, late)
    proc = subprocess.Popen(
        ["./spark-submit.sh", "aggregate", "--date", str(D1), "--lock-ttl", "30"],
        cwd=ROOT, env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while (D1, "running", None, None) not in ledger(clean_cassandra):
            assert proc.poll() is None and time.monotonic() < deadline, "the run never started"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the whole run: the script, the JVM, its Python
        proc.wait(timeout=60)
    assert (D1, "running", None, None) in ledger(clean_cassandra)
    with pytest.raises(LockHeld):
        run(spark, settings, D3)
    time.sleep(31)  # the dead run's lock expires
    run(spark, settings, D3)
    assert actual_state(clean_cassandra) == expected_state(snapshot(ORDERS + late, [D1, D2, D3]))
    # The killed run is no longer shown as running: the ledger says it was abandoned and redone.
    runs = clean_cassandra.execute("SELECT order_date, status, error FROM aggregate_runs WHERE year = %s", (D1.year,))
    d1 = [(r.status, r.error) for r in runs if r.order_date.date() == D1]
    assert not [s for s, _ in d1 if s == "running"]
    assert [e for s, e in d1 if s == "abandoned"][0].startswith("did not finish (killed or lost); redone by run ")


# -- a run that loses its lock -------------------------------------------------------------

THIEF = "another-host:thief"
# Tables the job writes, each with a regular column whose WRITETIME tells when a row was written.
WRITTEN = {
    "daily_order_summaries": "japanese", "user_daily_counts": "japanese", "user_daily_history": "japanese",
    "user_segment_transitions": "segment_after", "user_preferences": "preference", "user_segments": "japanese",
    "segment_sizes": "users", "aggregate_runs": "status", "aggregate_pending": "run_id",
    "aggregated_dates": "run_id",
}  # fmt: skip


def steal_lock(cassandra) -> int:
    """Another run takes the lock (as if ours had expired): returns the instant, in
    microseconds since the epoch (the unit of WRITETIME), just before."""
    import time

    stolen_at = time.time_ns() // 1000
    cassandra.execute("DELETE FROM aggregate_lock WHERE name = %s", ("aggregate",))
    cassandra.execute(
        "INSERT INTO aggregate_lock (name, owner, acquired_at) VALUES (%s, %s, toTimestamp(now())) USING TTL 600",
        ("aggregate", THIEF),
    )
    return stolen_at


def last_write(cassandra) -> int:
    """The newest WRITETIME over every row the job writes (microseconds since the epoch)."""
    newest = 0
    for name, column in WRITTEN.items():
        for row in cassandra.execute(f"SELECT WRITETIME({column}) FROM {name}"):
            newest = max(newest, row[0] or 0)
    return newest


def lock_owner(cassandra) -> str | None:
    row = cassandra.execute("SELECT owner FROM aggregate_lock WHERE name = %s", ("aggregate",)).one()
    return None if row is None else row.owner


@pytest.mark.fault
def test_a_run_whose_lock_is_taken_stops_before_its_next_write(spark, settings, clean_cassandra) -> None:
    insert_orders(clean_cassandra, ORDERS)
    run(spark, settings, D1, D2)
    late = [order(D1, "bob", W), order(D1, "bob", W), order(D1, "alice", J), order(D1, "alice", J)]
    insert_orders(clean_cassandra, late)
    stolen: list[int] = []

    def take_the_lock_after_the_daily_counts(step: str) -> None:
        if step == "daily_counts":
            stolen.append(steal_lock(clean_cassandra))

    with pytest.raises(LockLost) as lost:
        run(spark, settings, D1, D3, after_step=take_the_lock_after_the_daily_counts)
    assert str(lost.value) == (
        f"lost the lock before writing the segment transitions of {D1}: another run holds it now ({THIEF}). "
        f"Stopped without writing further; the next run redoes {D1} first (it is marked unfinished); "
        f"not done either: {D3}"
    )
    assert last_write(clean_cassandra) <= stolen[0]  # nothing written after the lock was gone
    assert lock_owner(clean_cassandra) == THIEF  # and the other run's lock left alone
    assert [r.order_date.date() for r in clean_cassandra.execute("SELECT * FROM aggregate_pending")] == [D1]
    assert (D1, "running", None, None) in ledger(clean_cassandra)

    clean_cassandra.execute("DELETE FROM aggregate_lock WHERE name = %s", ("aggregate",))  # the other run ends
    run(spark, settings, D3)  # redoes D1 first
    assert actual_state(clean_cassandra) == expected_state(snapshot(ORDERS + late, [D1, D2, D3]))
    statuses = sorted(r.status for r in clean_cassandra.execute("SELECT status FROM aggregate_runs"))
    assert statuses == ["abandoned", "succeeded", "succeeded", "succeeded", "succeeded"]


@pytest.mark.fault
def test_spark_submit_run_that_loses_its_lock_exits_1_with_one_line(
    spark, settings, clean_cassandra, tmp_path
) -> None:
    import re
    import time

    insert_orders(clean_cassandra, ORDERS)
    run(spark, settings, D1, D2)
    late = [order(D1, "bob", W), order(D1, "bob", W)]
    insert_orders(clean_cassandra, late)
    # spark-submit merges the Python driver's stderr into its stdout: keep both, in order.
    with (tmp_path / "output").open("w") as out:
        proc = subprocess.Popen(
            ["./spark-submit.sh", "aggregate", "--date", str(D1), "--lock-ttl", "30"],
            cwd=ROOT, env=os.environ.copy(), stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        # Its ledger row is written just before it reads D1's orders (seconds of Spark work
        # before the next write): the lock is taken from it there.
        deadline = time.monotonic() + 300
        while (D1, "running", None, None) not in ledger(clean_cassandra):
            assert proc.poll() is None and time.monotonic() < deadline, "the run never started"
            time.sleep(0.1)
        stolen_at = steal_lock(clean_cassandra)
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    output = (tmp_path / "output").read_text()

    assert proc.returncode == 1, output[-2000:]
    (line,) = [line for line in output.splitlines() if line.startswith("aggregate: lost the lock")]
    assert re.fullmatch(
        rf"aggregate: lost the lock before writing [a-z -]+ of {D1}: another run holds it now \({THIEF}\)\. "
        rf"Stopped without writing further; the next run redoes {D1} first \(it is marked unfinished\)",
        line,
    ), line
    assert "Traceback" not in output
    assert last_write(clean_cassandra) <= stolen_at
    assert lock_owner(clean_cassandra) == THIEF

    clean_cassandra.execute("DELETE FROM aggregate_lock WHERE name = %s", ("aggregate",))
    run(spark, settings, D3)
    assert actual_state(clean_cassandra) == expected_state(snapshot(ORDERS + late, [D1, D2, D3]))
