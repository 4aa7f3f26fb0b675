"""The streaming job's check before it starts: Cassandra answers, and has our tables in the
layout this version writes. Writes would otherwise fail batch after batch; this says it
once, at start, in one line."""

from __future__ import annotations

import logging

from jobs.stream_sink import RAW_ORDERS, REJECTED_EVENTS, STREAM_DAY_COUNTS
from orderlog.cassandra_session import CassandraUnavailable, connect_checked, require_tables, shutdown
from orderlog.config import Settings
from orderlog.rejected_migration import NEW_KEY as REJECTED_EVENTS_KEY
from orderlog.rejected_migration import STAGING as MIGRATION_STAGING

log = logging.getLogger("orderlog.streaming")


def check_cassandra(settings: Settings, retry_seconds: float) -> None:
    """CassandraUnavailable with one line when Cassandra or our tables are not there
    (retrying an unreachable Cassandra for ``retry_seconds`` first), or when
    rejected_events has an older layout or is half migrated."""
    session = connect_checked(settings, retry_seconds=retry_seconds, warn=log.warning)
    try:
        require_tables(session, settings, (RAW_ORDERS, REJECTED_EVENTS, STREAM_DAY_COUNTS))
        where, keyspace = settings.cassandra.address, settings.cassandra.keyspace
        tables = session.cluster.metadata.keyspaces[keyspace].tables
        table = tables[REJECTED_EVENTS]
        key = ([c.name for c in table.partition_key], [c.name for c in table.clustering_key])
        if key != REJECTED_EVENTS_KEY:
            raise CassandraUnavailable(
                f"{keyspace}.{REJECTED_EVENTS} at {where} has the layout of an older version "
                f"(key {key[0]}, {key[1]}): run `make schema` (python -m orderlog.schema apply) to migrate it"
            )
        if MIGRATION_STAGING in tables:
            # Its rows are not all back in rejected_events yet: list and replay would miss them.
            raise CassandraUnavailable(
                f"{keyspace}.{REJECTED_EVENTS} at {where} is half migrated ({MIGRATION_STAGING} "
                "still exists): run `make schema` (python -m orderlog.schema apply) to finish the migration"
            )
    finally:
        shutdown(session)
