"""Migrates a keyspace's rejected_events from the older layout to the bucketed one.

The older table was keyed ``((reject_date, kafka_partition), kafka_topic, kafka_offset)``,
with the key as text and the whole payload; the current one (cassandra/tables.cql) is keyed
``((reject_date, bucket), kafka_topic, kafka_partition, kafka_offset)`` with the key as
bytes, at most 64 KiB of key and payload, their lengths, the payload's SHA-256 and a TTL.
A primary key cannot change in place, so ``python -m orderlog.schema apply`` (``make
schema``, ``make up``) moves the rows through a staging table, in six steps:

    1 create-staging  CREATE TABLE rejected_events_migration (the new layout)
    2 copy-old        every old row, converted as the streaming job writes a row, into staging
    3 drop-old        DROP TABLE rejected_events
    4 create-new      CREATE TABLE rejected_events from tables.cql
    5 copy-staging    every staging row into rejected_events, with its remaining TTL
    6 drop-staging    DROP TABLE rejected_events_migration

Every step is idempotent (IF [NOT] EXISTS, upserts of deterministic rows), and where a run
stopped is read from the tables themselves: the old table with the older key means "from
step 1"; the staging table without it means "from step 4". So a run killed anywhere and run
again ends in the same state, and a finished keyspace is left alone. Copies read page by
page (``PAGE_ROWS`` rows in memory at a time).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from cassandra.concurrent import execute_concurrent_with_args
from cassandra.query import UNSET_VALUE, SimpleStatement

from orderlog.layout import rejected_bucket_of
from orderlog.rejected import kept_bytes
from orderlog.tables import create_table_statement, table_columns, table_keys

TABLE = "rejected_events"
STAGING = "rejected_events_migration"
OLD_KEY = (["reject_date", "kafka_partition"], ["kafka_topic", "kafka_offset"])
# The current key, as cassandra/tables.cql defines it (the streaming job checks it at start:
# the package it runs from carries the CQL).
NEW_KEY = table_keys()[TABLE]
# The older table's columns (replayed_at only if an earlier `make schema` added it).
OLD_COLUMNS = ("reject_date", "kafka_partition", "kafka_topic", "kafka_offset", "kafka_key", "kafka_timestamp",
               "raw_value", "reason", "rejected_at")
STEPS = ("create-staging", "copy-old", "drop-old", "create-new", "copy-staging", "drop-staging")
# An old row may hold a whole Kafka record (1 MB by default): a page bounds the memory.
PAGE_ROWS = 64
WRITE_CONCURRENCY = 32
DDL_TIMEOUT_S = 60.0
# Staging cells whose TTL tells a row's remaining lifetime (any non-null one: a row is written at once).
_TTL_COLUMNS = ("reason", "rejected_at", "kafka_timestamp", "raw_sha256", "kafka_key_length")


class MigrationError(RuntimeError):
    """The migration cannot go on; the message is one line for an operator."""


def table_key(session: Any, keyspace: str, table: str) -> tuple[list[str], list[str]] | None:
    """(partition key, clustering columns) of a live table, or None when it does not exist."""
    cluster = session.cluster
    cluster.refresh_schema_metadata()
    meta = cluster.metadata.keyspaces.get(keyspace)
    live = None if meta is None else meta.tables.get(table)
    if live is None:
        return None
    return [c.name for c in live.partition_key], [c.name for c in live.clustering_key]


def pending_steps(session: Any, keyspace: str) -> list[str]:
    """The steps still to run, read from the tables as they are now ([] when nothing is left)."""
    key = table_key(session, keyspace, TABLE)
    staging = table_key(session, keyspace, STAGING)
    if key == OLD_KEY:
        return list(STEPS)
    if key is not None and key != NEW_KEY:
        raise MigrationError(
            f"{keyspace}.{TABLE} has the key {_key_text(key)}, neither the current {_key_text(NEW_KEY)} nor the "
            f"older {_key_text(OLD_KEY)}: migrate it by hand"
        )
    if staging is not None:
        return list(STEPS[3:])  # the old table is gone (or was never there): recreate, copy back, clean up
    return []


def converted(old: Any, columns: Sequence[str] | None = None) -> tuple[Any, ...]:
    """An old row as the new table's columns (NEW_COLUMNS order), as the streaming job
    would have written it: bucket by offset, the key's text as its UTF-8 bytes, at most
    KEPT_PAYLOAD_BYTES of key and payload with their full lengths and the payload's SHA-256.
    The old job cast key bytes to text (invalid UTF-8 became U+FFFD): that text is all there is."""
    key = old.kafka_key
    if isinstance(key, str):
        key = key.encode("utf-8")
    kept = kept_bytes(key, old.raw_value)
    values = {
        "reject_date": old.reject_date,
        "bucket": rejected_bucket_of(old.kafka_offset),
        "kafka_topic": old.kafka_topic,
        "kafka_partition": old.kafka_partition,
        "kafka_offset": old.kafka_offset,
        "kafka_key": kept.key,
        "kafka_key_length": kept.key_length,
        "kafka_timestamp": old.kafka_timestamp,
        "raw_value": kept.value,
        "raw_length": kept.value_length,
        "raw_sha256": kept.value_sha256,
        "reason": old.reason,
        "rejected_at": old.rejected_at,
        "replayed_at": getattr(old, "replayed_at", None),
    }
    return tuple(values[c] for c in columns or new_columns())


def new_columns() -> list[str]:
    """The columns of the new table, in tables.cql's order."""
    return list(table_columns()[TABLE])


def migrate_rejected_events(
    session: Any,
    keyspace: str,
    ttl_seconds: int,
    log: Callable[[str], None] = lambda line: None,
    after: Callable[[str], None] | None = None,
    page_rows: int = PAGE_ROWS,
) -> list[str]:
    """Runs the steps still pending (see the module's doc), logging one line per step, and
    returns them. ``after(event)`` is called after each step (its name) and after each
    page a copy wrote (``copy-old:page``, ``copy-staging:page``): tests stop a run there."""
    steps = pending_steps(session, keyspace)
    if not steps:
        return []
    if steps[0] == STEPS[0]:
        log(f"{TABLE} has the layout of an older version (key {_key_text(OLD_KEY)}): migrating it to "
            f"{_key_text(NEW_KEY)} in {len(STEPS)} steps")
    else:
        log(f"{STAGING} exists: resuming the {TABLE} migration at step {STEPS.index(steps[0]) + 1}/{len(STEPS)}")
    migration = _Migration(session, keyspace, ttl_seconds, after or (lambda event: None), page_rows)
    for step in steps:
        number = f"{STEPS.index(step) + 1}/{len(STEPS)}"
        try:
            done = migration.run(step)
        except MigrationError:
            raise
        except Exception as exc:
            cause = " ".join(str(exc).split())[:300]
            raise MigrationError(
                f"the {TABLE} migration stopped in step {number} {step} ({type(exc).__name__}: {cause}); run "
                "`make schema` (python -m orderlog.schema apply) again: it resumes where it stopped"
            ) from exc
        log(f"{TABLE} migration {number} {step}: {done}")
        migration.after(step)
    return steps


class _Migration:
    def __init__(self, session: Any, keyspace: str, ttl_seconds: int, after: Callable[[str], None], page_rows: int):
        self.session, self.keyspace, self.ttl_seconds = session, keyspace, ttl_seconds
        self.after, self.page_rows = after, page_rows

    def run(self, step: str) -> str:
        """Does ``step`` and says what it did."""
        actions = {
            "create-staging": self._create_staging, "copy-old": self._copy_old_step, "drop-old": self._drop_old,
            "create-new": self._create_new, "copy-staging": self._copy_staging_step, "drop-staging": self._drop_staging,
        }
        if step not in actions:
            raise MigrationError(f"unknown migration step {step!r}")
        return actions[step]()

    def _create_staging(self) -> str:
        self._ddl(create_table_statement(TABLE, f"{self.keyspace}.{STAGING}"))
        return f"created {STAGING} (the new layout)"

    def _copy_old_step(self) -> str:
        return f"copied {_rows(self._copy_old())} of the old {TABLE} into {STAGING} (converted; TTL {self._ttl_text()})"

    def _drop_old(self) -> str:
        self._ddl(f"DROP TABLE IF EXISTS {self.keyspace}.{TABLE}")
        return f"dropped the old {TABLE}"

    def _create_new(self) -> str:
        self._ddl(create_table_statement(TABLE, f"{self.keyspace}.{TABLE}"))
        return f"created {TABLE} (the new layout, from tables.cql)"

    def _copy_staging_step(self) -> str:
        return f"copied {_rows(self._copy_staging())} of {STAGING} into {TABLE} (with their remaining TTL)"

    def _drop_staging(self) -> str:
        self._ddl(f"DROP TABLE IF EXISTS {self.keyspace}.{STAGING}")
        return f"dropped {STAGING}; done"

    def _ttl_text(self) -> str:
        days, rest = divmod(self.ttl_seconds, 86_400)
        return f"{days} days" if not rest else f"{self.ttl_seconds} s"

    def _ddl(self, statement: str) -> None:
        self.session.execute(statement, timeout=DDL_TIMEOUT_S)
        # Schema changes spread asynchronously; the next step must see this one on every node.
        self.session.cluster.control_connection.wait_for_schema_agreement()

    def _insert(self, table: str) -> Any:
        columns = new_columns()
        return self.session.prepare(
            f"INSERT INTO {self.keyspace}.{table} ({', '.join(columns)}) "
            f"VALUES ({', '.join('?' for _ in columns)}) USING TTL ?"
        )

    def _copy_old(self) -> int:
        if table_key(self.session, self.keyspace, TABLE) != OLD_KEY:
            raise MigrationError(f"{self.keyspace}.{TABLE} changed under the migration: run it again")
        live = self.session.cluster.metadata.keyspaces[self.keyspace].tables[TABLE].columns
        columns = [*OLD_COLUMNS, *(["replayed_at"] if "replayed_at" in live else [])]
        insert, new = self._insert(STAGING), new_columns()
        rows = 0
        for page in self._pages(f"SELECT {', '.join(columns)} FROM {self.keyspace}.{TABLE}"):
            self._write(insert, [(*_unset_nulls(converted(row, new)), self.ttl_seconds) for row in page])
            rows += len(page)
            self.after("copy-old:page")
        return rows

    def _copy_staging(self) -> int:
        columns = new_columns()
        ttls = ", ".join(f"TTL({c}) AS ttl_{c}" for c in _TTL_COLUMNS)
        insert = self._insert(TABLE)
        rows = 0
        for page in self._pages(f"SELECT {', '.join(columns)}, {ttls} FROM {self.keyspace}.{STAGING}"):
            params = []
            for row in page:
                left = next((t for c in _TTL_COLUMNS if (t := getattr(row, f"ttl_{c}")) is not None), None)
                # A row with no non-null cell keeps no TTL of its own to read: it gets the full one.
                params.append((*_unset_nulls(tuple(getattr(row, c) for c in columns)), left or self.ttl_seconds))
            self._write(insert, params)
            rows += len(page)
            self.after("copy-staging:page")
        return rows

    def _pages(self, query: str) -> Iterator[list[Any]]:
        """The rows of a whole-table query, a page at a time; the next page is already being
        fetched while the caller writes this one (two pages in memory at most)."""
        # The whole table, token range after token range: a one-off copy has to read it all.
        statement = SimpleStatement(query, fetch_size=self.page_rows)
        future = self.session.execute_async(statement, timeout=DDL_TIMEOUT_S)
        while future is not None:
            result = future.result()
            page, state = list(result.current_rows), result.paging_state
            future = None if state is None else self.session.execute_async(
                statement, paging_state=state, timeout=DDL_TIMEOUT_S)
            if page:
                yield page

    def _write(self, insert: Any, params: Sequence[tuple[Any, ...]]) -> None:
        execute_concurrent_with_args(self.session, insert, params, concurrency=WRITE_CONCURRENCY)


def _unset_nulls(values: tuple[Any, ...]) -> tuple[Any, ...]:
    """None as "not set": no tombstone is written for an empty cell (the row reads the same)."""
    return tuple(UNSET_VALUE if v is None else v for v in values)


def _rows(count: int) -> str:
    return f"{count:,} row{'' if count == 1 else 's'}"


def _key_text(key: tuple[list[str], list[str]]) -> str:
    partition, clustering = key
    return f"(({', '.join(partition)}), {', '.join(clustering)})"
