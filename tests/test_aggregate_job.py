"""The aggregate job against the real Cassandra and Spark: every table compared with the
plain-Python model after in-order runs, re-runs, backfills, late orders and crashes."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from jobs import aggregate_io as io
from jobs.aggregate import InjectedCrash, aggregate
from orderlog.menu import EVEN, JAPANESE, WESTERN
from tests.conftest import free_ports
from tests.test_aggregate_model import actual_state, day_counts, expected_state, insert_orders, order

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
D1, D2, D3 = date(2025, 5, 29), date(2025, 5, 30), date(2025, 5, 31)
J, W = JAPANESE, WESTERN

# alice: J, then W W -> western on D2; bob: J W -> even; carol: only D3; dave: W on D1 only.
ORDERS = [
    order(D1, "alice", J), order(D1, "bob", J), order(D1, "dave", W),
    order(D2, "alice", W), order(D2, "alice", W), order(D2, "bob", W),
    order(D3, "carol", J), order(D3, "carol", J), order(D3, "alice", J),
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
    plan = io.read_orders(spark, settings, D3)._jdf.queryExecution().executedPlan().toString()
    assert f'["order_date" = ?, {D3}]' in plan
    assert '"bucket" IN (' + ", ".join(["?"] * 32) + ")" in plan
    history = io.read_history(spark, settings, spark.createDataFrame([("alice",)], "user_id string"), [2025])
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
    assert ledger(clean_cassandra) == [
        (D1, "succeeded", 3, 3), (D2, "succeeded", 3, 2), (D3, "succeeded", 3, 2)
    ]  # fmt: skip
    assert list(clean_cassandra.execute("SELECT * FROM aggregate_pending")) == []
    assert list(clean_cassandra.execute("SELECT * FROM aggregate_lock")) == []


def test_reruns_and_backfills_equal_the_in_order_run(spark, settings, clean_cassandra) -> None:
    insert_orders(clean_cassandra, ORDERS)
    run(spark, settings, D3, D3, D1, D2, D1)  # newest first, repeats, backfill
    assert actual_state(clean_cassandra) == expected_state(snapshot(ORDERS, [D1, D2, D3]))


def test_late_orders_then_rerun_counts_them_once(spark, settings, clean_cassandra) -> None:
    insert_orders(clean_cassandra, ORDERS)
    run(spark, settings, D1, D2, D3)
    late = [order(D2, "dave", J), order(D2, "dave", J), order(D2, "erin", W)]
    insert_orders(clean_cassandra, late)
    run(spark, settings, D2)
    run(spark, settings, D2)
    expected = expected_state(snapshot(ORDERS + late, [D1, D2, D3]))
    assert actual_state(clean_cassandra) == expected
    assert expected["user_preferences"]["dave"] == (2, 1, J, D1, D2)
    assert (W, "dave") not in expected["user_segments"]


def test_a_day_without_orders_gets_a_row_of_zeros(spark, settings, clean_cassandra) -> None:
    insert_orders(clean_cassandra, [o for o in ORDERS if o[0] != D2])
    run(spark, settings, D1, D2)
    state = actual_state(clean_cassandra)
    assert state["daily_order_summaries"][D2] == (0, 0, 0, 0)
    assert state == expected_state(snapshot(ORDERS, [D1]) | {D2: {}})


@pytest.mark.fault
@pytest.mark.parametrize("step", ["summary", "daily_counts", "transitions", "preferences", "segments"])
def test_a_crashed_run_is_redone_first_by_the_next_run(spark, settings, clean_cassandra, step) -> None:
    insert_orders(clean_cassandra, ORDERS)
    run(spark, settings, D1, D2)
    # Late orders for D1 flip bob and alice: the crashed run has rewritten some rows only.
    late = [order(D1, "bob", W), order(D1, "bob", W), order(D1, "alice", J), order(D1, "alice", J)]
    insert_orders(clean_cassandra, late)
    with pytest.raises(InjectedCrash):
        run(spark, settings, D1, crash_after=step)
    assert [r.order_date.date() for r in clean_cassandra.execute("SELECT * FROM aggregate_pending")] == [D1]
    assert (D1, "failed", None, None) in ledger(clean_cassandra)
    run(spark, settings, D3)  # redoes D1 before D3
    assert actual_state(clean_cassandra) == expected_state(snapshot(ORDERS + late, [D1, D2, D3]))
    assert list(clean_cassandra.execute("SELECT * FROM aggregate_pending")) == []


def test_a_second_run_waits_for_the_lock(spark, settings, clean_cassandra) -> None:
    from orderlog.cassandra_session import connect, shutdown

    holder = io.AggregateState(connect(settings))
    holder.acquire_lock(60)
    try:
        with pytest.raises(io.LockHeld, match=r"^another aggregate run holds the lock \("):
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
    assert done.stderr.strip() == f"aggregate: cannot reach Cassandra at 127.0.0.1:{port}: NoHostAvailable"


@pytest.mark.fault
def test_a_killed_spark_submit_run_is_redone_after_its_lock_expires(spark, settings, clean_cassandra) -> None:
    import signal
    import time

    insert_orders(clean_cassandra, ORDERS)
    run(spark, settings, D1, D2)
    late = [order(D1, "bob", W), order(D1, "bob", W)]
    insert_orders(clean_cassandra, late)
    proc = subprocess.Popen(
        ["./spark-submit.sh", "aggregate", "--date", str(D1), "--lock-ttl", "15"],
        cwd=ROOT, env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not list(clean_cassandra.execute("SELECT * FROM aggregate_pending")):
            assert proc.poll() is None and time.monotonic() < deadline, "the run never started"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the whole run: the script, the JVM, its Python
        proc.wait(timeout=60)
    assert (D1, "running", None, None) in ledger(clean_cassandra)
    with pytest.raises(io.LockHeld):
        run(spark, settings, D3)
    time.sleep(16)  # the dead run's lock expires
    run(spark, settings, D3)
    assert actual_state(clean_cassandra) == expected_state(snapshot(ORDERS + late, [D1, D2, D3]))
    # The killed run is no longer shown as running: the ledger says it was abandoned and redone.
    runs = clean_cassandra.execute("SELECT order_date, status, error FROM aggregate_runs WHERE year = %s", (D1.year,))
    d1 = [(r.status, r.error) for r in runs if r.order_date.date() == D1]
    assert not [s for s, _ in d1 if s == "running"]
    assert [e for s, e in d1 if s == "abandoned"][0].startswith("did not finish (killed or lost); redone by run ")
