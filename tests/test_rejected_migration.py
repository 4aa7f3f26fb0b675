"""`python -m orderlog.schema apply` migrates a rejected_events of the older layout: every
old row ends up in the re-keyed table exactly as the streaming job would have written it
(its own Spark transform gives the expected rows), a run stopped after any step or in the
middle of a copy and run again ends in the same state, and applying again changes nothing.
On the real Cassandra (and the real local Spark for the expected rows)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from orderlog.cassandra_session import connect, shutdown
from orderlog.rejected_migration import STAGING, STEPS, converted, migrate_rejected_events, pending_steps
from orderlog.schema import apply_cql
from orderlog.tables import table_columns

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
TOKYO = "Asia/Tokyo"

# rejected_events as the streaming job of the previous version created it.
OLD_REJECTED_EVENTS = """CREATE TABLE {table} (reject_date date, kafka_partition int, kafka_topic text,
    kafka_offset bigint, kafka_key text, kafka_timestamp timestamp, raw_value blob, reason text,
    rejected_at timestamp, PRIMARY KEY ((reject_date, kafka_partition), kafka_topic, kafka_offset))"""
# What `make schema` of the version before this migration added to that old table (it gave
# every table the columns tables.cql names, the old rejected_events too).
EARLIER_ALTERS = ("bucket smallint", "kafka_key_length int", "raw_length int", "raw_sha256 text",
                  "replayed_at timestamp")
OLD_INSERT = (
    "INSERT INTO rejected_events (reject_date, kafka_partition, kafka_topic, kafka_offset, kafka_key, "
    "kafka_timestamp, raw_value, reason, rejected_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
TOPIC = "order-logs"
REJECTED_AT = datetime(2025, 6, 1, 3, 0, 0, 123000, tzinfo=UTC)


def _at(day: int, hour: int) -> datetime:
    return datetime(2025, 5, day, hour, 0, 0, 456000, tzinfo=UTC)


def old_rows() -> list[tuple]:
    """(kafka_partition, kafka_topic, kafka_offset, kafka_key, kafka_timestamp, raw_value, reason);
    reject_date is the business date of the Kafka time, as the old job set it."""
    rows = [
        (0, TOPIC, 5, "u-1", _at(30, 3), b'{"user_id": 1}', "user_id: must be a string"),
        # The old job cast key bytes to text: b"\xff\xfek" became U+FFFD U+FFFD k.
        (1, TOPIC, 40, "\ufffd\ufffdk", _at(30, 16), b"\xff\xfe\x00{", "record is not UTF-8"),
        # A payload and a key over 64 KiB (the key: 80,000 UTF-8 bytes of 40,000 characters).
        (2, TOPIC, 1_000_000_007, "é" * 40_000, _at(31, 1), b"\x00\xff" * 40_000, "record is larger than 4096 bytes"),
        # A tombstone: no key, no value.
        (0, TOPIC, 6, None, _at(30, 3), None, "record has no value"),
        # An empty value, and another topic at the same coordinates.
        (0, "other-topic", 5, "", _at(30, 3), b"", "record is not JSON (Expecting value)"),
        # Hostile text, kept as it is.
        (3, TOPIC, 63, "<k>", _at(31, 2), b'<script>alert("x")</script>\x07', "record is not JSON (Expecting value)"),
    ]
    # Enough rows for several pages of the copies (PAGE_ROWS = 64), over two dates.
    rows += [(n % 3, TOPIC, 1000 + n, f"u-{n}", _at(29 + n % 2, 12), f'{{"n": {n}}}'.encode(), "menu_type: is required")
             for n in range(200)]
    return rows


def reject_date(kafka_timestamp: datetime) -> date:
    from orderlog.business_day import business_date

    return business_date(kafka_timestamp, TOKYO)


def seed_old_table(session, keyspace: str, earlier_alters: bool = False) -> None:
    """The old rejected_events with old_rows(), written with bound INSERTs (the old job had no TTL)."""
    from cassandra.concurrent import execute_concurrent_with_args

    session.execute(f"DROP TABLE IF EXISTS {keyspace}.rejected_events", timeout=60)
    session.execute(f"DROP TABLE IF EXISTS {keyspace}.{STAGING}", timeout=60)
    session.execute(OLD_REJECTED_EVENTS.format(table=f"{keyspace}.rejected_events"), timeout=60)
    for column in EARLIER_ALTERS if earlier_alters else ():
        session.execute(f"ALTER TABLE {keyspace}.rejected_events ADD {column}", timeout=60)
    session.cluster.control_connection.wait_for_schema_agreement()
    session.set_keyspace(keyspace)
    insert = session.prepare(OLD_INSERT)
    params = [(reject_date(ts), p, t, o, k, ts, v, r, REJECTED_AT) for p, t, o, k, ts, v, r in old_rows()]
    results = execute_concurrent_with_args(session, insert, params, concurrency=32)
    assert all(ok for ok, _ in results)


@pytest.fixture(scope="module")
def expected(spark) -> dict[tuple, dict]:
    """The rows the new table must hold, by key: each old record put through the streaming
    job's own transform (jobs.stream_transforms.to_rejected_events), which is how the job
    writes a rejected record today. replayed_at: the job never sets it (nothing was replayed)."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    from jobs.stream_transforms import PARSED_FIELDS, PARSED_TYPE, to_rejected_events

    schema = T.StructType([
        T.StructField("key", T.BinaryType()), T.StructField("value", T.BinaryType()),
        T.StructField("topic", T.StringType()), T.StructField("partition", T.IntegerType()),
        T.StructField("offset", T.LongType()), T.StructField("timestamp", T.TimestampType()),
        T.StructField("parsed", PARSED_TYPE), T.StructField("old_rejected_at", T.TimestampType()),
    ])
    records = []
    for partition, topic, offset, key, ts, value, reason in old_rows():
        parsed = tuple(reason if name == "reason" else None for name in PARSED_FIELDS)
        records.append((None if key is None else key.encode("utf-8"), value, topic, partition, offset, ts, parsed,
                        REJECTED_AT))
    rows = (
        spark.createDataFrame(records, schema)
        .transform(to_rejected_events, TOKYO, rejected_at=F.col("old_rejected_at"))
        # Instants as epoch milliseconds (Cassandra's precision), whatever the local time zone.
        .withColumn("kafka_timestamp", F.unix_millis("kafka_timestamp"))
        .withColumn("rejected_at", F.unix_millis("rejected_at"))
        .collect()
    )
    by_key = {}
    for row in rows:
        values = {name: bytes(v) if isinstance(v, bytearray) else v for name, v in row.asDict().items()}
        values["replayed_at"] = None
        by_key[(values["reject_date"], values["bucket"], values["kafka_topic"], values["kafka_partition"],
                values["kafka_offset"])] = values
    assert len(by_key) == len(old_rows())
    return by_key


def migrated_rows(session, keyspace: str) -> dict[tuple, dict]:
    """The new table's rows by key, instants as epoch milliseconds, and each row's TTL."""
    columns = list(table_columns()["rejected_events"])
    found = {}
    for row in session.execute(f"SELECT {', '.join(columns)}, TTL(reason) AS ttl FROM {keyspace}.rejected_events",
                               timeout=60):
        values = {c: getattr(row, c) for c in columns}
        values["reject_date"] = values["reject_date"].date()
        for name in ("kafka_timestamp", "rejected_at", "replayed_at"):
            if values[name] is not None:
                values[name] = (values[name] - datetime(1970, 1, 1)) // timedelta(milliseconds=1)
        found[(values["reject_date"], values["bucket"], values["kafka_topic"], values["kafka_partition"],
               values["kafka_offset"])] = {**values, "ttl": row.ttl}
    return found


def assert_migrated(session, keyspace: str, expected: dict[tuple, dict], ttl_seconds: int) -> None:
    found = migrated_rows(session, keyspace)
    assert set(found) == set(expected)
    for key, row in found.items():
        ttl = row.pop("ttl")
        assert row == expected[key], key
        # A fresh TTL of ORDERLOG_REJECTED_TTL_DAYS from the migration (the old rows had none).
        assert ttl_seconds - 3600 < ttl <= ttl_seconds, key
    assert table_names(session, keyspace) >= {"rejected_events"} and STAGING not in table_names(session, keyspace)


def table_names(session, keyspace: str) -> set[str]:
    session.cluster.refresh_schema_metadata()
    return set(session.cluster.metadata.keyspaces[keyspace].tables)


@pytest.fixture(scope="module")
def old_keyspace(stack, settings) -> Iterator[tuple[object, object]]:
    """A keyspace of its own (settings, admin session), dropped at the end."""
    keyspace = f"{settings.cassandra.keyspace}_rejmig"
    ks_settings = settings.replace(cassandra_keyspace=keyspace)
    session = connect(settings, keyspace="")
    session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=60)
    session.execute(f"CREATE KEYSPACE {keyspace} WITH replication = {settings.cassandra.replication}", timeout=60)
    yield ks_settings, session
    session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=60)
    shutdown(session)


# --- the conversion, no server -----------------------------------------------------------------


@pytest.mark.parametrize("key", [None, "", "u-1", "\ufffd", "é" * 40_000])
def test_an_old_row_converts_to_the_new_columns(key) -> None:
    from types import SimpleNamespace

    value = b"\x00" * 70_000
    old = SimpleNamespace(reject_date=date(2025, 5, 31), kafka_partition=2, kafka_topic="t", kafka_offset=70,
                          kafka_key=key, kafka_timestamp=None, raw_value=value, reason="r", rejected_at=None)
    row = dict(zip(table_columns()["rejected_events"], converted(old), strict=True))
    key_bytes = None if key is None else key.encode("utf-8")
    assert row["bucket"] == 70 % 32
    assert (row["kafka_key"], row["kafka_key_length"]) == (
        (None, None) if key is None else (key_bytes[:65536], len(key_bytes)))
    assert (len(row["raw_value"]), row["raw_length"]) == (65536, 70_000)
    assert row["replayed_at"] is None  # an old table without the column


# --- on the real Cassandra ------------------------------------------------------------------------


@pytest.mark.parametrize("earlier_alters", [False, True], ids=["as-released", "after-an-earlier-make-schema"])
def test_make_schema_migrates_the_old_rows_to_exactly_the_new_ones(old_keyspace, expected, earlier_alters) -> None:
    """python -m orderlog.schema apply, as `make schema` runs it: one line per step, then the
    streaming job's start-up check passes."""
    from jobs.stream_preflight import check_cassandra
    from orderlog.cassandra_session import CassandraUnavailable

    ks_settings, session = old_keyspace
    keyspace = ks_settings.cassandra.keyspace
    apply_cql(ks_settings)  # the other tables, as an older keyspace has them
    seed_old_table(session, keyspace, earlier_alters)
    with pytest.raises(CassandraUnavailable, match="has the layout of an older version .*: run `make schema` "
                       r"\(python -m orderlog.schema apply\) to migrate it$"):
        check_cassandra(ks_settings, retry_seconds=0)

    topic = f"test-{uuid.uuid4().hex[:12]}"
    env = {**os.environ, "ORDERLOG_CASSANDRA_KEYSPACE": keyspace, "ORDERLOG_KAFKA_TOPIC": topic}
    result = subprocess.run([sys.executable, "-m", "orderlog.schema", "apply"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    delete_topic(ks_settings, topic)
    assert result.returncode == 0, result.stderr
    n = len(old_rows())
    assert result.stdout.splitlines()[:7] == [
        "rejected_events has the layout of an older version (key ((reject_date, kafka_partition), kafka_topic, "
        "kafka_offset)): migrating it to ((reject_date, bucket), kafka_topic, kafka_partition, kafka_offset) "
        "in 6 steps",
        "rejected_events migration 1/6 create-staging: created rejected_events_migration (the new layout)",
        f"rejected_events migration 2/6 copy-old: copied {n} rows of the old rejected_events into "
        "rejected_events_migration (converted; TTL 30 days)",
        "rejected_events migration 3/6 drop-old: dropped the old rejected_events",
        "rejected_events migration 4/6 create-new: created rejected_events (the new layout, from tables.cql)",
        f"rejected_events migration 5/6 copy-staging: copied {n} rows of rejected_events_migration into "
        "rejected_events (with their remaining TTL)",
        "rejected_events migration 6/6 drop-staging: dropped rejected_events_migration; done",
    ]
    assert result.stdout.splitlines()[7].startswith(f"schema applied: keyspace {keyspace}")
    assert_migrated(session, keyspace, expected, ks_settings.rejected.ttl_seconds)
    check_cassandra(ks_settings, retry_seconds=0)

    # Applying again is a no-op: no step, no row rewritten.
    before = writetimes(session, keyspace)
    lines: list[str] = []
    assert apply_cql(ks_settings, log=lines.append) == []
    assert lines == [] and writetimes(session, keyspace) == before


def writetimes(session, keyspace: str) -> dict[tuple, int]:
    rows = session.execute(f"SELECT reject_date, bucket, kafka_topic, kafka_partition, kafka_offset, "
                           f"WRITETIME(reason) AS written FROM {keyspace}.rejected_events", timeout=60)
    return {tuple(r[:5]): r.written for r in rows}


def delete_topic(settings, topic: str) -> None:
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_list)
    try:
        if topic in admin.list_topics():
            admin.delete_topics([topic])
    finally:
        admin.close()


class Killed(BaseException):
    """A run stopped dead (like kill -9): no handler of the migration sees it."""


def kill_at(event: str) -> Callable[[str], None]:
    def hook(happened: str) -> None:
        if happened == event:
            raise Killed(event)

    return hook


# What the streaming job says at start while the migration is not finished.
STATE_AFTER = {
    "create-staging": "has the layout of an older version",
    "copy-old": "has the layout of an older version",
    "copy-old:page": "has the layout of an older version",
    "drop-old": "rejected_events does not exist",
    "create-new": "is half migrated (rejected_events_migration still exists)",
    "copy-staging": "is half migrated",
    "copy-staging:page": "is half migrated",
    "drop-staging": None,  # finished
}


@pytest.mark.parametrize("event", [*STEPS, "copy-old:page", "copy-staging:page"])
def test_a_migration_stopped_anywhere_and_run_again_converges(old_keyspace, expected, event) -> None:
    from jobs.stream_preflight import check_cassandra
    from orderlog.cassandra_session import CassandraUnavailable

    ks_settings, session = old_keyspace
    keyspace = ks_settings.cassandra.keyspace
    apply_cql(ks_settings)
    seed_old_table(session, keyspace)
    with pytest.raises(Killed):
        apply_cql(ks_settings, migration_after=kill_at(event))
    if STATE_AFTER[event] is None:
        check_cassandra(ks_settings, retry_seconds=0)
    else:
        with pytest.raises(CassandraUnavailable, match=STATE_AFTER[event].replace("(", r"\(").replace(")", r"\)")):
            check_cassandra(ks_settings, retry_seconds=0)

    lines: list[str] = []
    apply_cql(ks_settings, log=lines.append)
    assert_migrated(session, keyspace, expected, ks_settings.rejected.ttl_seconds)
    check_cassandra(ks_settings, retry_seconds=0)
    step = event.split(":")[0]
    if step == "drop-staging":
        assert lines == []  # it had finished
    elif STEPS.index(step) < STEPS.index("drop-old"):
        assert lines[0].startswith("rejected_events has the layout of an older version")
        assert [line.split(":")[0] for line in lines[1:]] == [f"rejected_events migration {i}/6 {s}"
                                                             for i, s in enumerate(STEPS, 1)]
    else:
        # The old table is gone: the rows are read back from staging, from step 4 on.
        assert lines[0] == "rejected_events_migration exists: resuming the rejected_events migration at step 4/6"
        assert [line.split(":")[0] for line in lines[1:]] == [f"rejected_events migration {i}/6 {s}"
                                                             for i, s in enumerate(STEPS, 1) if i >= 4]
    assert pending_steps(session, keyspace) == []


def test_a_table_of_neither_layout_is_refused_in_one_line(old_keyspace) -> None:
    from orderlog.rejected_migration import MigrationError

    ks_settings, session = old_keyspace
    keyspace = ks_settings.cassandra.keyspace
    session.execute(f"DROP TABLE IF EXISTS {keyspace}.rejected_events", timeout=60)
    session.execute(f"CREATE TABLE {keyspace}.rejected_events (reject_date date, kafka_offset bigint, reason text, "
                    "PRIMARY KEY ((reject_date), kafka_offset))", timeout=60)
    session.cluster.control_connection.wait_for_schema_agreement()
    with pytest.raises(MigrationError) as refused:
        migrate_rejected_events(session, keyspace, 86_400)
    assert str(refused.value) == (
        f"{keyspace}.rejected_events has the key ((reject_date), kafka_offset), neither the current ((reject_date, "
        "bucket), kafka_topic, kafka_partition, kafka_offset) nor the older ((reject_date, kafka_partition), "
        "kafka_topic, kafka_offset): migrate it by hand"
    )
    env = {**os.environ, "ORDERLOG_CASSANDRA_KEYSPACE": keyspace}
    result = subprocess.run([sys.executable, "-m", "orderlog.schema", "tables"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert result.stderr == f"python -m orderlog.schema: error: {refused.value}\n"
    session.execute(f"DROP TABLE {keyspace}.rejected_events", timeout=60)
