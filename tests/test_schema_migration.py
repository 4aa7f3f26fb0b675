"""The schema's migration step: a keyspace created by an older version of tables.cql gets
the columns it lacks, once, and keeps its rows."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest
from cassandra.cluster import Session
from cassandra.util import uuid_from_time

from orderlog.cassandra_session import connect, shutdown
from orderlog.config import Settings
from orderlog.rejected_migration import NEW_KEY
from orderlog.schema import apply_cql
from orderlog.tables import create_table_statement, table_columns, table_keys, table_names

# aggregate_runs as the first release created it: no trigger column.
OLD_AGGREGATE_RUNS = """
CREATE TABLE aggregate_runs (
    year int, order_date date, run_id timeuuid, status text, orders_read bigint,
    users_touched bigint, started_at timestamp, finished_at timestamp, duration_ms bigint, error text,
    PRIMARY KEY ((year), order_date, run_id)
) WITH CLUSTERING ORDER BY (order_date DESC, run_id DESC)
"""


def test_columns_are_read_from_tables_cql() -> None:
    columns = table_columns()
    assert list(columns) == table_names()
    assert columns["aggregate_runs"]["trigger"] == "text"
    assert columns["stream_day_counts"] == {
        "year": "int", "day": "date", "kind": "text", "query_id": "text", "records": "bigint",
        "records_before": "bigint", "batch_id": "bigint", "last_arrival_at": "timestamp",
    }  # fmt: skip
    assert "PRIMARY" not in {c for table in columns.values() for c in table}


def test_keys_are_read_from_tables_cql() -> None:
    keys = table_keys()
    assert list(keys) == table_names()
    assert keys["rejected_events"] == (["reject_date", "bucket"], ["kafka_topic", "kafka_partition", "kafka_offset"])
    # What the streaming job checks at start (it runs without tables.cql) is that key.
    assert keys["rejected_events"] == NEW_KEY
    assert keys["user_preferences"] == (["user_id"], [])
    assert keys["segment_sizes"] == (["year"], ["as_of", "segment"])


def test_a_table_statement_under_another_name() -> None:
    statement = create_table_statement("rejected_events", "ks.rejected_events_migration")
    assert statement.startswith("CREATE TABLE IF NOT EXISTS ks.rejected_events_migration (\n    reject_date ")
    assert statement.endswith("PRIMARY KEY ((reject_date, bucket), kafka_topic, kafka_partition, kafka_offset)\n)")


@pytest.mark.integration
def test_the_parsed_columns_and_keys_are_the_live_ones(cassandra, settings) -> None:
    live = cassandra.cluster.metadata.keyspaces[settings.cassandra.keyspace].tables
    keys = table_keys()
    for table, columns in table_columns().items():
        assert {c: m.cql_type for c, m in live[table].columns.items()} == columns, table
        assert ([c.name for c in live[table].partition_key], [c.name for c in live[table].clustering_key]) == (
            keys[table]), table


@contextlib.contextmanager
def older_keyspace(settings: Settings, suffix: str, *tables: str) -> Iterator[tuple[Settings, Session]]:
    """A keyspace an older version made: only ``tables``, as it created them. Yields its
    settings and a session on it; dropped afterwards."""
    old = settings.replace(cassandra_keyspace=f"{settings.cassandra.keyspace}_{suffix}")
    admin = connect(settings, keyspace="")
    try:
        admin.execute(f"DROP KEYSPACE IF EXISTS {old.cassandra.keyspace}", timeout=60)
        admin.execute(
            f"CREATE KEYSPACE {old.cassandra.keyspace} WITH replication = {settings.cassandra.replication}",
            timeout=60,
        )
        admin.set_keyspace(old.cassandra.keyspace)
        for table in tables:
            admin.execute(table, timeout=60)
        yield old, admin
    finally:
        admin.execute(f"DROP KEYSPACE IF EXISTS {old.cassandra.keyspace}", timeout=60)
        shutdown(admin)


@contextlib.contextmanager
def viewer_missing(settings: Settings, suffix: str, drop: str) -> Iterator[tuple[Settings, object]]:
    """A viewer app on a fresh keyspace of this version from which ``drop`` (a DROP statement
    with ``{ks}`` for the keyspace) then took something away; all dropped afterwards."""
    from tests.viewer_data import viewer_app
    from viewer.db import close_app

    old = settings.replace(cassandra_keyspace=f"{settings.cassandra.keyspace}_{suffix}")
    apply_cql(old)
    admin = connect(settings, keyspace="")
    app = viewer_app(old)
    try:
        admin.execute(drop.format(ks=old.cassandra.keyspace), timeout=60)
        yield old, app.test_client()
    finally:
        close_app(app)
        admin.execute(f"DROP KEYSPACE IF EXISTS {old.cassandra.keyspace}", timeout=60)
        shutdown(admin)


@pytest.mark.integration
def test_an_old_keyspace_gets_the_new_column_once_and_keeps_its_rows(stack, settings) -> None:
    with older_keyspace(settings, "migration", OLD_AGGREGATE_RUNS) as (old, admin):
        day, started = date(2025, 5, 31), datetime(2025, 6, 1, 1, 0, tzinfo=UTC)
        run_id = uuid_from_time(started)
        admin.execute(
            "INSERT INTO aggregate_runs (year, order_date, run_id, status, started_at) VALUES (%s, %s, %s, %s, %s)",
            (2025, day, run_id, "succeeded", started),
        )

        assert apply_cql(old) == [f"ALTER TABLE {old.cassandra.keyspace}.aggregate_runs ADD trigger text"]
        assert apply_cql(old) == []  # idempotent

        admin.cluster.refresh_schema_metadata()
        tables = admin.cluster.metadata.keyspaces[old.cassandra.keyspace].tables
        assert set(table_names()) <= set(tables)
        assert "hourly_order_counts" in tables  # the newest table, created on the older keyspace
        assert tables["aggregate_runs"].columns["trigger"].cql_type == "text"
        row = admin.execute("SELECT run_id, status, trigger FROM aggregate_runs WHERE year = 2025").one()
        assert (row.run_id, row.status, row.trigger) == (run_id, "succeeded", None)


@pytest.mark.integration
def test_a_viewer_on_a_keyspace_older_than_it_says_run_make_schema_then_works(stack, settings) -> None:
    """A keyspace made before a table the viewer reads existed (stream_progress, say): every
    page and /readyz answer 503 naming `make schema`, not a bare "Cassandra unavailable";
    after `make schema` the same running app answers."""
    with viewer_missing(settings, "older", "DROP TABLE {ks}.stream_progress") as (old, client):
        page, api, ready = client.get("/daily"), client.get("/api/status"), client.get("/readyz")
        for response in (page, api, ready):
            assert response.status_code == 503
            assert "run `make schema`" in response.get_data(as_text=True), response.get_data(as_text=True)[:300]
        assert "stream_progress" in api.get_json()["error"]
        assert "orderlog_viewer_cassandra_up 0.0" in client.get("/metrics").get_data(as_text=True)

        apply_cql(old)
        assert client.get("/readyz").status_code == 200
        assert client.get("/api/status").status_code == 200
        assert "orderlog_viewer_cassandra_up 1.0" in client.get("/metrics").get_data(as_text=True)


# user_segments before the audience indexes: no orders column.
OLD_USER_SEGMENTS = """
CREATE TABLE user_segments (
    segment text, bucket smallint, user_id text, japanese bigint, western bigint, last_order_date date,
    PRIMARY KEY ((segment, bucket), user_id)
)
"""


@pytest.mark.integration
def test_an_old_user_segments_gets_orders_filled_in_and_indexed_once(stack, settings) -> None:
    with older_keyspace(settings, "orders", OLD_USER_SEGMENTS) as (old, admin):
        insert = admin.prepare("INSERT INTO user_segments (segment, bucket, user_id, japanese, western) "
                               "VALUES ('japanese', ?, ?, ?, ?)")
        members = [(b, f"u{n:04d}", n % 7 + 1, n % 3) for n in range(2500) for b in [n % 4]]
        for member in members:
            admin.execute(insert, member)
        lines: list[str] = []

        ks = old.cassandra.keyspace
        assert apply_cql(old, log=lines.append) == [f"ALTER TABLE {ks}.user_segments ADD orders bigint"]
        assert "user_segments.orders: filled in 2,500 rows written before the column existed" in lines

        select = admin.prepare("SELECT user_id, orders FROM user_segments WHERE segment = 'japanese' AND bucket = ?")
        stored = {r.user_id: r.orders for b in range(4) for r in admin.execute(select, (b,))}
        assert stored == {user_id: j + w for _, user_id, j, w in members}
        # The index answers for the filled-in rows (a null would not be indexed).
        at_least = admin.prepare("SELECT COUNT(*) FROM user_segments WHERE segment = 'japanese' AND bucket = ? "
                                 "AND orders >= ?")
        assert sum(admin.execute(at_least, (b, 8)).one()[0] for b in range(4)) == sum(
            1 for *_, j, w in members if j + w >= 8)

        lines.clear()
        assert apply_cql(old, log=lines.append) == []  # idempotent: nothing added, no second scan
        assert not [line for line in lines if "user_segments.orders" in line]
        done = admin.execute("SELECT rows_changed FROM schema_migrations WHERE migration = %s",
                             ("user_segments.orders backfill",)).one()
        assert done.rows_changed == 2500


@pytest.mark.integration
def test_the_orders_backfill_stopped_part_way_runs_again_and_changes_only_null_rows(stack, settings) -> None:
    from orderlog.orders_backfill import backfill_orders

    ks = settings.replace(cassandra_keyspace=f"{settings.cassandra.keyspace}_backfill")
    apply_cql(ks)
    session = connect(ks)
    try:
        insert = session.prepare("INSERT INTO user_segments (segment, bucket, user_id, japanese, western, orders) "
                                 "VALUES ('western', 3, ?, ?, ?, ?)")
        session.execute(insert, ("has", 1, 2, 3))
        session.execute(insert, ("lacks", 4, 5, None))
        # No finished row: as after a run killed before its end.
        session.execute("DELETE FROM schema_migrations WHERE migration = %s", ("user_segments.orders backfill",))
        assert backfill_orders(session) == 1
        rows = {r.user_id: r.orders for r in session.execute(
            "SELECT user_id, orders FROM user_segments WHERE segment = 'western' AND bucket = 3")}
        assert rows == {"has": 3, "lacks": 9}
        assert backfill_orders(session) is None  # finished: not run again
    finally:
        session.execute(f"DROP KEYSPACE IF EXISTS {ks.cassandra.keyspace}", timeout=60)
        shutdown(session)


@pytest.mark.integration
def test_a_viewer_on_a_keyspace_without_the_audience_indexes_says_run_make_schema(stack, settings) -> None:
    """Without the index on orders the audience queries would need ALLOW FILTERING: the
    viewer says so at once (503 naming `make schema`), and works after it."""
    with viewer_missing(settings, "noindex", "DROP INDEX {ks}.user_segments_orders") as (old, client):
        answer = client.get("/api/user_segments/japanese?min_orders=3")
        assert answer.status_code == 503 and "run `make schema`" in answer.get_data(as_text=True)

        apply_cql(old)
        body = client.get("/api/user_segments/japanese?min_orders=3").get_json()
        assert body["matching"] == 0 and body["users"] == []
