"""Fills user_segments.orders (japanese + western) in rows written before the column existed.

The viewer's audience filters and its ranking by orders read ``orders`` through a
Storage-Attached Index, and SAI does not index a null: a row of an older keyspace, whose
``orders`` is null until this runs, would be missing from every ``orders >= ?`` answer.
``python -m orderlog.schema apply`` (``make schema``, ``make up``) runs it after adding the
column: one pass over the table, page by page (``PAGE_ROWS`` rows in memory), setting
``orders`` where it is null. It is idempotent (a row that has ``orders`` is left alone; a
second run changes nothing) and runs once per keyspace: the schema_migrations row written
at its end makes later runs skip the scan; a run stopped part-way left no such row and is
simply run again.

The aggregate job of this version writes ``orders`` with every row. An older job still
running after the migration would write rows without it: stop the old job, upgrade, then
run ``make schema``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from cassandra.concurrent import execute_concurrent_with_args
from cassandra.query import SimpleStatement

NAME = "user_segments.orders backfill"
PAGE_ROWS = 1000
WRITE_CONCURRENCY = 32


def backfill_orders(session: Any, log: Callable[[str], None] = lambda line: None) -> int | None:
    """Sets orders = japanese + western in every user_segments row where it is null; the
    number of rows it changed, or None when an earlier run had already finished."""
    done = session.execute("SELECT finished_at FROM schema_migrations WHERE migration = %s", (NAME,)).one()
    if done is not None:
        return None
    scan = SimpleStatement(
        "SELECT segment, bucket, user_id, japanese, western, orders FROM user_segments", fetch_size=PAGE_ROWS
    )
    update = session.prepare(
        "UPDATE user_segments SET orders = ? WHERE segment = ? AND bucket = ? AND user_id = ?"
    )
    changed = 0
    pending: list[tuple[Any, ...]] = []
    for row in session.execute(scan, timeout=120):
        if row.orders is None:
            pending.append(((row.japanese or 0) + (row.western or 0), row.segment, row.bucket, row.user_id))
        if len(pending) == PAGE_ROWS:
            changed += _write(session, update, pending)
            pending = []
            log(f"user_segments.orders: {changed:,} rows filled so far")
    changed += _write(session, update, pending)
    session.execute(
        "INSERT INTO schema_migrations (migration, finished_at, rows_changed) VALUES (%s, %s, %s)",
        (NAME, datetime.now(UTC), changed),
    )
    if changed:
        log(f"user_segments.orders: filled in {changed:,} rows written before the column existed")
    return changed


def _write(session: Any, update: Any, rows: list[tuple[Any, ...]]) -> int:
    if rows:
        execute_concurrent_with_args(session, update, rows, concurrency=WRITE_CONCURRENCY, raise_on_first_error=True)
    return len(rows)
