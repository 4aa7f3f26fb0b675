"""Cassandra sessions of our Python code (the jobs' bookkeeping, the viewer, the tools,
the tests), built from the configuration, and the pre-flight check of every command that
needs Cassandra. Each ``connect`` makes a Cluster of its own: a long-lived process keeps
the one it made (the viewer: one per worker process), a command closes it with ``shutdown``."""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Iterable

from cassandra import AuthenticationFailed, ConsistencyLevel, InvalidRequest, OperationTimedOut
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, NoHostAvailable, Session
from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy

from orderlog.config import Settings

REQUEST_TIMEOUT_SECONDS = 30.0
# How long a pre-flight connection attempt waits, and between attempts.
PREFLIGHT_TIMEOUT_SECONDS = 5.0
PREFLIGHT_PAUSE_SECONDS = 2.0


class CassandraUnavailable(RuntimeError):
    """Cassandra cannot be used: one line saying where, and what to do."""


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


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context of our driver sessions (None without ORDERLOG_CASSANDRA_SSL): the
    configured CA (the system's without one), and the host-name check unless turned off."""
    cassandra = settings.cassandra
    if not cassandra.ssl:
        return None
    context = ssl.create_default_context(cafile=cassandra.ssl_ca_file or None)
    context.check_hostname = cassandra.ssl_check_hostname
    return context


def connect(settings: Settings, *, keyspace: str | None = None, timeout: float = 10.0) -> Session:
    """A session on the configured cluster (the keyspace, unless keyspace='' is passed),
    with its credentials and TLS when configured."""
    auth = None
    if settings.cassandra.username:
        auth = PlainTextAuthProvider(settings.cassandra.username, settings.cassandra.password)
    cluster = Cluster(
        contact_points=settings.cassandra.host_list,
        port=settings.cassandra.port,
        auth_provider=auth,
        ssl_context=ssl_context(settings),
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


def connect_checked(
    settings: Settings, *, keyspace: str | None = "", retry_seconds: float = 0.0,
    warn: Callable[[str], None] | None = None,
) -> Session:
    """The pre-flight check of the jobs and tools: a session (on ``keyspace`` as ``connect``
    takes it; none by default), or CassandraUnavailable with one line. An unreachable
    cluster is tried again for ``retry_seconds`` (in a compose file a job may start before
    Cassandra), saying so through ``warn``."""
    where = settings.cassandra.address
    deadline = time.monotonic() + retry_seconds
    while True:
        try:
            return connect(settings, keyspace=keyspace, timeout=PREFLIGHT_TIMEOUT_SECONDS)
        except (NoHostAvailable, OperationTimedOut) as exc:
            refused = refusal(settings, exc)
            if refused:  # a wrong password or certificate does not fix itself: no retry
                raise CassandraUnavailable(refused) from None
            if time.monotonic() >= deadline:
                raise CassandraUnavailable(_unreachable(settings, exc)) from None
        except InvalidRequest:  # the keyspace does not exist
            raise CassandraUnavailable(
                f"keyspace {settings.cassandra.keyspace} does not exist at {where}: "
                "run `python -m orderlog.schema apply`"
            ) from None
        if warn is not None:
            warn(f"Cassandra at {where} unreachable; retrying")
        time.sleep(PREFLIGHT_PAUSE_SECONDS)


def refusal(settings: Settings, exc: BaseException) -> str | None:
    """One line saying that Cassandra refused us (the credentials, or the TLS handshake:
    an untrusted certificate, a host name it does not name, TLS on one side only) and which
    settings to check; None when it is something else (unreachable, timed out)."""
    errors = exc.errors.values() if isinstance(exc, NoHostAvailable) else [exc]
    where, cassandra = settings.cassandra.address, settings.cassandra
    for error in errors:
        text = " ".join(str(error).split())
        if isinstance(error, AuthenticationFailed):
            server_said = text.rsplit('message="', 1)[-1].rstrip('"') if 'message="' in text else text
            return (f"Cassandra at {where} refused the login of ORDERLOG_CASSANDRA_USERNAME={cassandra.username!r} "
                    f"({server_said}): check ORDERLOG_CASSANDRA_USERNAME and ORDERLOG_CASSANDRA_PASSWORD")
        if "CERTIFICATE_VERIFY_FAILED" in text or isinstance(error, ssl.SSLCertVerificationError):
            reason = text.split("certificate verify failed: ", 1)[-1].split(" (_ssl", 1)[0]
            return (f"the TLS certificate of Cassandra at {where} is not trusted ({reason}): check "
                    "ORDERLOG_CASSANDRA_SSL_CA_FILE (and ORDERLOG_CASSANDRA_SSL_CHECK_HOSTNAME)")
        if isinstance(error, ssl.SSLError):
            return f"the TLS handshake with Cassandra at {where} failed ({text}): check ORDERLOG_CASSANDRA_SSL"
    return None


def _unreachable(settings: Settings, exc: BaseException) -> str:
    """The line for a Cassandra that could not be used, with a hint when a node closed the
    connection at once while we spoke plain CQL (a node that requires TLS does that; so may
    one shutting down, hence only a hint, and the pre-flight retries it)."""
    line = f"Cassandra is unreachable at {settings.cassandra.address}"
    errors = exc.errors.values() if isinstance(exc, NoHostAvailable) else [exc]
    if not settings.cassandra.ssl and any(isinstance(e, ConnectionResetError) for e in errors):
        line += " (it closed the connection at once: does it require TLS? ORDERLOG_CASSANDRA_SSL=1)"
    return line


def require_tables(session: Session, settings: Settings, tables: Iterable[str]) -> None:
    """CassandraUnavailable naming the first of ``tables`` the keyspace lacks."""
    keyspace = session.cluster.metadata.keyspaces.get(settings.cassandra.keyspace)
    missing = [t for t in tables if keyspace is None or t not in keyspace.tables]
    if missing:
        raise CassandraUnavailable(
            f"{settings.cassandra.keyspace}.{missing[0]} does not exist at {settings.cassandra.address}: "
            "run `python -m orderlog.schema apply`"
        )
