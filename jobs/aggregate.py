"""The nightly aggregate: folds the orders of business date D into the daily summary,
the per-user state, the segments and the segment history.

    ./spark-submit.sh aggregate                      # yesterday, and every earlier date with late orders
    ./spark-submit.sh aggregate --date 2025-05-31
    ./spark-submit.sh aggregate --from 2025-05-01 --to 2025-05-31

Idempotent, order-independent and crash-safe: every row written is recomputed from the
orders of D and the stored daily counts of the other dates (see docs/aggregate.md).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import uuid
from collections.abc import Callable
from datetime import date
from typing import NoReturn

from cassandra.cluster import Session
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs import aggregate_transforms as transforms
from jobs.aggregate_io import delete_keys, delete_rows, read_history, read_orders, read_stored_counts, read_transitions
from jobs.aggregate_ledger import Ledger
from jobs.aggregate_lock import MAX_TTL_SECONDS, MIN_TTL_SECONDS, LockHeld, LockLost
from jobs.aggregate_summaries import Summaries
from jobs.cassandra_io import CONCURRENT_WRITES, write_table
from jobs.session import build_session
from orderlog import late_orders as late
from orderlog.business_day import date_argument, date_range, yesterday
from orderlog.cassandra_session import CassandraUnavailable, connect, connect_checked, shutdown
from orderlog.config import Settings, load_or_exit
from orderlog.events import printable
from orderlog.layout import USER_DAY_BUCKETS, bucket_of
from orderlog.logs import configure, report
from orderlog.menu import SEGMENTS

DEFAULT_LOCK_TTL_SECONDS = 300
# Connector batches in flight per write task. Tables keyed by user_id get one single-row
# batch per user, and a small day's frame is one task: with the connector's default of 5
# in flight, writing them waited on round trips (measured: 2x faster at 64, docs/benchmarks.md).
WRITE_CONCURRENCY = 64
WRITE_OPTIONS = {CONCURRENT_WRITES: str(WRITE_CONCURRENCY)}


class InjectedCrash(RuntimeError):
    """Raised by tests between two steps to simulate a run killed there."""


def run_day(
    spark: SparkSession,
    settings: Settings,
    ledger: Ledger,
    summaries: Summaries,
    day: date,
    *,
    recovering: bool = False,
    after_step: Callable[[str], None] = lambda step: None,
) -> tuple[int, int]:
    """Aggregates one date; returns (orders read, users touched). ``after_step(step)`` is
    called after each step (tests raise there to simulate a run killed between two)."""
    # The stored and the new counts of the day in one frame, materialized before anything
    # is written: a lazy re-read after the writes below would see the new state instead of
    # the stored one. Everything else reads this frame (one Spark job, not one per use).
    day_counts = transforms.old_and_new_counts(
        read_stored_counts(spark, settings, day), transforms.user_day_counts(read_orders(spark, settings, day))
    ).localCheckpoint(eager=True)
    new_counts = transforms.new_counts_of(day_counts)
    figures = transforms.day_figures(day_counts, day).first().asDict()
    summaries.write_summary(figures)
    after_step("summary")
    summaries.write_hourly(transforms.hourly_rows(figures))
    after_step("hourly")

    years = sorted(set(summaries.aggregated_years()) | {day.year})
    history = read_history(spark, settings, day_counts.select("user_id"), years)
    transitions = transforms.with_segment_transitions(transforms.merge_day_into_history(history, new_counts, day))
    transitions = transitions.localCheckpoint(eager=True)

    # Every write below first renews the lock: a run that lost it stops here (LockLost).
    keyed = transforms.with_user_day_keys(new_counts, day)
    ledger.check_lock("the daily counts")
    write_table(keyed.drop("year"), settings, "user_daily_counts", options=WRITE_OPTIONS)
    write_table(keyed.drop("bucket"), settings, "user_daily_history", options=WRITE_OPTIONS)
    after_step("daily_counts")
    ledger.check_lock("the segment transitions")
    write_table(transforms.transition_rows(transitions, day), settings, "user_segment_transitions",
                options=WRITE_OPTIONS)
    after_step("transitions")

    # A filter of the materialized transitions (the row of each user's last date).
    preferences = transforms.user_preferences(transitions)
    ledger.check_lock("the preferences and segments")
    write_table(preferences, settings, "user_preferences", options=WRITE_OPTIONS)
    write_table(transforms.segment_rows(preferences), settings, "user_segments", options=WRITE_OPTIONS)
    after_step("preferences")
    deletions = transforms.segment_deletions(preferences, day_counts, all_but_new_segment=recovering)
    ledger.check_lock("the segment deletions")
    delete_rows(ledger.session, deletions, "user_segments", ["segment", "bucket", "user_id"])
    if figures["stale"]:  # raw_orders only grows: normally no user lost its orders of the day
        _delete_stale(ledger.session, day_counts, preferences, day)
    after_step("segments")

    _rewrite_segment_sizes(spark, settings, summaries, transitions, day)
    return int(figures["total"]), int(figures["touched"])


def _delete_stale(session: Session, day_counts: DataFrame, preferences: DataFrame, day: date) -> None:
    """Rows of users who no longer have an order on day, and the preferences of users left
    with no order at all (only a stale user can be: every other touched user ordered on day)."""
    stale = [r["user_id"] for r in transforms.stale_users(day_counts).collect()]
    day_keys = [(day, bucket_of(u, USER_DAY_BUCKETS), u) for u in stale]
    delete_keys(session, day_keys, "user_daily_counts", ["order_date", "bucket", "user_id"])
    delete_keys(session, day_keys, "user_segment_transitions", ["order_date", "bucket", "user_id"])
    history_keys = [(u, day.year, day) for u in stale]
    delete_keys(session, history_keys, "user_daily_history", ["user_id", "year", "order_date"])
    gone = day_counts.select("user_id").join(preferences.select("user_id"), on="user_id", how="left_anti")
    delete_rows(session, gone, "user_preferences", ["user_id"])


def _rewrite_segment_sizes(
    spark: SparkSession, settings: Settings, summaries: Summaries, transitions: DataFrame, day: date
) -> None:
    """segment_sizes of day and every later aggregated date: entered/exited recounted on
    the dates whose transitions this run rewrote, sizes chained from the date before."""
    later_days = transitions.filter(F.col("order_date") >= F.lit(day)).select("order_date").distinct()
    changed = sorted({r["order_date"] for r in later_days.collect()} | {day})
    later = summaries.aggregated_dates_from(day)
    movements = summaries.stored_movements(d for d in later if d not in changed)
    for r in transforms.segment_movements(read_transitions(spark, settings, changed)).collect():
        movements[(r["order_date"], r["segment"])] = (r["entered"], r["exited"])
    for d in changed:  # a date with nobody moving has no movement rows: zeros
        for segment in SEGMENTS:
            movements.setdefault((d, segment), (0, 0))
    summaries.write_segment_sizes(transforms.segment_size_rows(summaries.sizes_before(day), later, movements))


def aggregate(
    spark: SparkSession,
    settings: Settings,
    dates: list[date] | None,
    *,
    lock_ttl: int = DEFAULT_LOCK_TTL_SECONDS,
    crash_after: str | None = None,
    after_step: Callable[[str], None] = lambda step: None,
    log: Callable[[str], None] = print,
) -> None:
    """Runs the dates in order under the job's lock, after redoing any date a crashed run
    left unfinished. ``dates=None`` is the nightly run: yesterday, and before it every date
    that received orders after its last successful run (late orders).

    Tests: ``after_step(step)`` is called after each step of a date, and ``crash_after``
    raises InjectedCrash after that step. A lost lock raises LockLost, whose message says
    what the next run will do."""

    def step_done(step: str) -> None:
        after_step(step)
        if step == crash_after:
            raise InjectedCrash(f"injected crash after step {step!r}")

    session = connect(settings)
    ledger = Ledger(session)
    summaries = Summaries(session, guard=ledger.check_lock)
    try:
        ledger.acquire_lock(lock_ttl)
        try:
            # Decided under the lock, so no other run changes the ledger meanwhile.
            pending = ledger.pending_runs()
            plan = late.with_recovery(pending, _wanted(ledger, settings, dates))
            log(f"aggregate: {len(plan)} date{'' if len(plan) == 1 else 's'} to do")
            for p in plan:
                log(f"  {p.day}: {p.why}")
            for n, p in enumerate(plan):
                try:
                    _run_logged(spark, settings, ledger, summaries, p, pending.get(p.day), step_done, log)
                except LockLost as exc:
                    marked = ledger.unfinished == p.day or p.day in pending
                    raise LockLost(_stopped_message(exc, p.day, marked, plan[n + 1 :])) from None
        finally:
            ledger.release_lock()
    finally:
        shutdown(session)


def _wanted(ledger: Ledger, settings: Settings, dates: list[date] | None) -> list[late.PlannedDate]:
    if dates is not None:
        return late.requested_dates(dates)
    return late.nightly_dates(ledger.stream_totals(), ledger.last_runs(), yesterday(settings.business.tz))


def _stopped_message(exc: LockLost, day: date, marked: bool, rest: list[late.PlannedDate]) -> str:
    """One line: what happened, and what the next run will do about it."""
    where = f" before writing {exc.before}" if exc.before else ""
    if marked:
        then = f"the next run redoes {day} first (it is marked unfinished)"
    else:
        then = f"{day} was not started: run it again"
    not_done = f"; not done either: {', '.join(str(p.day) for p in rest)}" if rest else ""
    return f"lost the lock{where} of {day}: {exc.reason}. Stopped without writing further; {then}{not_done}"


def _run_logged(
    spark: SparkSession, settings: Settings, ledger: Ledger, summaries: Summaries, planned: late.PlannedDate,
    unfinished_run: uuid.UUID | None, after_step: Callable[[str], None], log: Callable[[str], None],
) -> None:
    day = planned.day
    recovering = unfinished_run is not None
    run_id, started = ledger.new_run_id()
    if unfinished_run is not None:
        ledger.abandon_run(day, unfinished_run, redone_by=run_id)
    # Marked unfinished before anything else is written: a run stopped anywhere after this
    # line is redone first by the next one (its ledger row then says 'abandoned').
    ledger.mark_pending(day, run_id)
    ledger.start_run(day, run_id, started, planned.trigger)
    # What the streaming job had written for the date before this run reads raw_orders.
    records_seen = ledger.stream_total(day)
    try:
        orders, users = run_day(spark, settings, ledger, summaries, day, recovering=recovering, after_step=after_step)
    except LockLost:
        raise  # the run is no longer ours to record: the next run marks it abandoned
    except BaseException as exc:
        with contextlib.suppress(LockLost):
            ledger.finish_run(day, run_id, started, status="failed", error=f"{type(exc).__name__}: {exc}"[:1000])
        raise
    finished = ledger.finish_run(day, run_id, started, status="succeeded", orders_read=orders, users_touched=users)
    ledger.record_aggregated(day, run_id, started, finished, records_seen)
    ledger.clear_pending(day)
    note = " (redoing an unfinished run)" if recovering else ""
    log(f"aggregate {day}: {orders} orders, {users} users touched{note}")


def parse_dates(argv: list[str] | None, settings: Settings) -> tuple[list[date] | None, argparse.Namespace]:
    """The dates asked for, or None for the nightly run (no --date, --from or --to)."""
    parser = _OneLineErrors(prog="aggregate", description="The nightly aggregate of one or more dates.")
    parser.add_argument(
        "--date", type=date_argument,
        help="business date YYYY-MM-DD (default: yesterday and every earlier date with late orders)",
    )  # fmt: skip
    parser.add_argument("--from", dest="first", type=date_argument, help="first date of a range")
    parser.add_argument("--to", dest="last", type=date_argument, help="last date of a range")
    parser.add_argument(
        "--lock-ttl", type=_lock_ttl, default=DEFAULT_LOCK_TTL_SECONDS,
        help=f"seconds a dead run keeps the lock ({MIN_TTL_SECONDS}..{MAX_TTL_SECONDS}, default %(default)s)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.date and (args.first or args.last):
        parser.error("use either --date or --from/--to")
    if (args.first is None) != (args.last is None):
        parser.error("--from and --to go together")
    if args.first and args.first > args.last:
        parser.error(f"--from {args.first} is after --to {args.last}")
    if args.first:
        return date_range(args.first, args.last), args
    return ([args.date] if args.date else None), args


class _OneLineErrors(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # An argument may hold a line break or a control character; the error stays one line.
        super().error(printable(message))


def _lock_ttl(text: str) -> int:
    try:
        seconds = int(text)
    except ValueError:
        seconds = None
    if seconds is None or not MIN_TTL_SECONDS <= seconds <= MAX_TTL_SECONDS:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a whole number of seconds from {MIN_TTL_SECONDS} to {MAX_TTL_SECONDS}"
        )
    return seconds


def main(argv: list[str] | None = None) -> int:
    settings = load_or_exit("aggregate")
    # Warnings and worse of the libraries (as before: no handler printed those alone).
    configure("aggregate", settings.log.format, logging.WARNING,
              text_format="%(asctime)s aggregate %(levelname)s %(message)s", silence=("cassandra",))
    dates, args = parse_dates(argv, settings)
    try:
        shutdown(connect_checked(settings, keyspace=None))
    except CassandraUnavailable as exc:
        report("aggregate", f"error: {exc}", log_format=settings.log.format)
        return 1
    spark = build_session(settings, "orderlog-aggregate")
    try:
        aggregate(spark, settings, dates, lock_ttl=args.lock_ttl)
    except (LockHeld, LockLost) as exc:
        report("aggregate", str(exc), log_format=settings.log.format)
        return 1
    except Exception as exc:
        first_line = (str(exc).strip().splitlines() or [""])[0][:300]
        report("aggregate", f"failed: {type(exc).__name__}: {first_line}", log_format=settings.log.format)
        return 1
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
