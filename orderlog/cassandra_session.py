"""The Cassandra connection of a Python process (ingest tools, viewer, tests): one
Cluster and one Session per process, built from the configuration."""

from __future__ import annotations

from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import Cluster, Session
from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy

from orderlog.config import Settings


def connect(settings: Settings, *, keyspace: str | None = None, timeout: float = 10.0) -> Session:
    """A session on the configured cluster (the keyspace, unless keyspace='' is passed)."""
    auth = None
    if settings.cassandra_username:
        auth = PlainTextAuthProvider(settings.cassandra_username, settings.cassandra_password)
    cluster = Cluster(
        contact_points=settings.cassandra_host_list,
        port=settings.cassandra_port,
        auth_provider=auth,
        load_balancing_policy=TokenAwarePolicy(
            DCAwareRoundRobinPolicy(local_dc=settings.cassandra_local_dc)
        ),
        protocol_version=5,
        connect_timeout=timeout,
    )
    session = cluster.connect()
    session.default_timeout = 30.0
    ks = settings.cassandra_keyspace if keyspace is None else keyspace
    if ks:
        session.set_keyspace(ks)
    return session


def shutdown(session: Session) -> None:
    session.cluster.shutdown()
