"""The pipeline running on the local cluster, for the tests marked cluster: streaming,
ingest and viewer started with the cluster's configuration and a keyspace, topic,
checkpoint, ports and var folder of the run's own; and what the Spark master says."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from local_stack.cluster import SPARK_MASTER_URL, master_state
from local_stack.supervisor import free_ports
from orderlog.config import Settings
from orderlog.schema import create_topic
from tests.conftest import empty_keyspace, pipeline_services
from tests.streaming_job import wait_for


def applications(name: str) -> list[dict]:
    """The master's record of every application of that name, running or finished."""
    state = master_state() or {}
    return [app for app in [*state.get("activeapps", []), *state.get("completedapps", [])] if app["name"] == name]


def wait_for_streaming_executors() -> None:
    """Until the streaming job runs on the master with its 2 cores (an executor on each worker)."""
    wait_for(lambda: any(app["state"] == "RUNNING" and app["cores"] == 2
                         for app in applications("orderlog-streaming")), 240, "the streaming job's executors")


@contextmanager
def running_pipeline(local_cluster, folder: Path) -> Iterator[tuple[Settings, dict]]:
    """The cluster's configuration with a keyspace (emptied), topic, checkpoint, ports and
    var folder of this run's own; streaming, ingest and viewer running; stopped afterwards."""
    ingest_port, viewer_port = free_ports(2)
    settings = local_cluster.settings.replace(
        cassandra_keyspace="orderlog_test_cluster",
        kafka_topic=f"cluster-e2e-{uuid.uuid4().hex[:8]}",
        stream_checkpoint_location=str(folder / "checkpoint"),
        ingest_port=ingest_port,
        viewer_port=viewer_port,
        paths_var=str(folder / "var"),
        ingest_workers=1,
        viewer_workers=1,
        viewer_cache_seconds=0,
        # The quorum-loss test keeps two Cassandra nodes down while one restarts, which
        # takes up to a minute on a loaded machine: the stream must outwait that.
        stream_write_retry_seconds=600,
    )
    assert settings.spark.master == SPARK_MASTER_URL
    empty_keyspace(settings)
    create_topic(settings)
    with pipeline_services(settings, folder / "logs") as processes:
        yield settings, processes
