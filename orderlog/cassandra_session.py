"""The Cassandra connection of a Python process (ingest tools, viewer, jobs, tests): one
Cluster and one Session per process, built from the configuration."""

from __future__ import annotations

from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, Session
from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy

from cassandra import ConsistencyLevel
from orderlog.config import Settings

REQUEST_TIMEOUT_SECONDS = 30.0


def execution_profile(settings: Settings) -> ExecutionProfile:
    """What every statement of ours runs with unless it says otherwise: the configured
    consistency (the connector's too, see jobs.session), and LOCAL_SERIAL for the Paxos
    phase of lightweight transactions (the aggregate's lock), which stay in the local DC."""
    return ExecutionProfile(
        load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc=settings.cassandra.local_dc)),
        consistency_level=ConsistencyLevel.name_to_value[settings.cassandra.consistency],
        serial_consistency_level=ConsistencyLevel.LOCAL_SERIAL,
        request_timeout=REQUEST_TIMEOUT_SECONDS,
    )


def connect(settings: Settings, *, keyspace: str | None = None, timeout: float = 10.0) -> Session:
    """A session on the configured cluster (the keyspace, unless keyspace='' is passed)."""
    auth = None
    if settings.cassandra.username:
        auth = PlainTextAuthProvider(settings.cassandra.username, settings.cassandra.password)
    cluster = Cluster(
        contact_points=settings.cassandra.host_list,
        port=settings.cassandra.port,
        auth_provider=auth,
        execution_profiles={EXEC_PROFILE_DEFAULT: execution_profile(settings)},
        protocol_version=5,
        connect_timeout=timeout,
    )
    session = cluster.connect()
    ks = settings.cassandra.keyspace if keyspace is None else keyspace
    if ks:
        session.set_keyspace(ks)
    return session


def shutdown(session: Session) -> None:
    session.cluster.shutdown()
