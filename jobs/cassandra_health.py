"""Whether Cassandra is up, as the streaming job's writer needs to know between retries."""

from __future__ import annotations

from typing import Any

from cassandra.policies import ConstantReconnectionPolicy, HostStateListener

from orderlog.cassandra_session import connect
from orderlog.config import Settings


class CassandraHealth:
    """Whether Cassandra is up, as a Python driver session of our own sees it (it notices a
    node going away at once and, reconnecting every second, its return), and a count of
    outages that grows with every node-down event. ``session`` is that driver session, for
    the writer's own statements."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.session: Any = None
        self.outages = 0  # node-down events seen

    def up(self) -> bool:
        try:
            if self.session is None:
                self.session = connect(self.settings, keyspace="", timeout=3.0)
                self.session.cluster.reconnection_policy = ConstantReconnectionPolicy(1.0, None)
                self.session.cluster.register_listener(_OutageCounter(self))
            return any(host.is_up for host in self.session.cluster.metadata.all_hosts())
        except Exception:  # noqa: BLE001  any driver error means "not up now"
            return False


class _OutageCounter(HostStateListener):
    def __init__(self, health: CassandraHealth):
        self.health = health

    def on_down(self, host: Any) -> None:
        self.health.outages += 1

    def on_up(self, host: Any) -> None: ...
    def on_add(self, host: Any) -> None: ...
    def on_remove(self, host: Any) -> None: ...
