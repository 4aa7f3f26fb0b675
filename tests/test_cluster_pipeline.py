"""The pipeline on the local cluster, run exactly as on one node with the cluster's
configuration (`make cluster-env`): the jobs on the standalone master, with executors in
JVMs of their own on both workers that receive the code through spark-submit (not the
working directory) and run the pandas UDF; the results are the generator's truth, which
is what the same pipeline gives on local[2] (tests/test_end_to_end.py).
Marked cluster: `make test-cluster` runs it."""

from __future__ import annotations

import json
import subprocess
import uuid
from datetime import date, timedelta

import pytest

from jobs.shipping import shipped_archive
from local_stack import supervisor
from local_stack.cluster import SPARK_MASTER_URL, master_state
from local_stack.supervisor import free_ports
from orderlog.config import child_environment
from orderlog.schema import apply_cql, create_topic
from tests.streaming_job import ROOT, wait_for
from tools import pipeline
from tools import replay as replay_cli

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

END = date(2025, 5, 31)
DAYS = 2


def applications(name: str) -> list[dict]:
    """The master's record of every application of that name, running or finished."""
    state = master_state() or {}
    return [app for app in [*state.get("activeapps", []), *state.get("completedapps", [])] if app["name"] == name]


def workers_that_ran(local_cluster, app: dict) -> list[str]:
    """The workers that started an executor of the application: each holds, in the
    executor's folder, the package spark-submit shipped."""
    shipped = shipped_archive().name
    return [worker.label for worker in local_cluster.spark_workers
            if any((folder / shipped).is_file() for folder in (worker.home / "work" / app["id"]).glob("*"))]


def test_the_executors_import_the_code_spark_submit_shipped(local_cluster) -> None:
    before = len(applications("orderlog-code-origin"))
    done = subprocess.run(["./spark-submit.sh", "code_origin"], cwd=ROOT, env=child_environment(local_cluster.settings),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    origins = json.loads(done.stdout.strip().splitlines()[-1])
    shipped = shipped_archive()
    assert origins["driver"] == str(shipped / "jobs" / "__init__.py")
    assert origins["executors"], origins
    for executor in origins["executors"]:  # the executor's own copy of the package, never this checkout
        assert executor.endswith(f"{shipped.name}/jobs/__init__.py"), executor
        assert not executor.startswith(str(ROOT / "jobs")), executor
    # It ran on the standalone master, with an executor on each worker.
    runs = applications("orderlog-code-origin")
    assert len(runs) == before + 1
    app = max(runs, key=lambda a: a["starttime"])
    assert workers_that_ran(local_cluster, app) == ["spark-worker1", "spark-worker2"], app


@pytest.fixture
def cluster_pipeline(local_cluster, tmp_path):
    """The cluster's configuration with a keyspace, topic, checkpoint, ports and var folder
    of this test's own; streaming, ingest and viewer running; stopped afterwards."""
    ingest_port, viewer_port = free_ports(2)
    settings = local_cluster.settings.replace(
        cassandra_keyspace="orderlog_test_cluster",
        kafka_topic=f"cluster-e2e-{uuid.uuid4().hex[:8]}",
        stream_checkpoint_location=str(tmp_path / "checkpoint"),
        ingest_port=ingest_port,
        viewer_port=viewer_port,
        paths_var=str(tmp_path / "var"),
        ingest_workers=1,
        viewer_workers=1,
        viewer_cache_seconds=0,
    )
    assert settings.spark.master == SPARK_MASTER_URL
    apply_cql(settings)
    from orderlog.cassandra_session import connect, shutdown
    from orderlog.schema import truncate_tables

    session = connect(settings)
    try:
        truncate_tables(session)
    finally:
        shutdown(session)
    create_topic(settings)
    processes: dict = {}
    try:
        processes.update(pipeline.start_services(settings, tmp_path / "logs", processes.__setitem__))
        yield settings, processes
    finally:
        pipeline.stop_services(processes)
        assert not any(supervisor.running(p) for p in processes.values())


def test_the_pipeline_on_the_cluster_ends_in_the_generators_truth(local_cluster, cluster_pipeline, tmp_path):
    settings, processes = cluster_pipeline
    streaming = processes["streaming"]
    # The streaming job runs on the master with an executor on each worker.
    wait_for(lambda: any(app["state"] == "RUNNING" and app["cores"] == 2
                         for app in applications("orderlog-streaming")), 240, "the streaming job's executors")

    truth_file = tmp_path / "truth.json"
    code = replay_cli.main([
        END.isoformat(), "--days", str(DAYS), "--users", "150", "--orders", "2500", "--seed", "11",
        "--rate", "0", "--quiet", "--url", pipeline.ingest_url(settings), "--truth", str(truth_file),
    ])
    assert code == 0
    truth = json.loads(truth_file.read_text())
    assert truth["orders"] == 2500
    try:
        counts = pipeline.wait_for_raw_orders(settings, truth, timeout=900,
                                              alive=lambda: supervisor.running(streaming))
    except pipeline.PipelineError as exc:
        pytest.fail(f"{exc}\n{supervisor.tail(streaming.log, 60)}")
    assert counts == {d: v["total"] for d, v in truth["daily"].items()}

    # The aggregate, on the cluster too, beside the running stream.
    aggregates = len(applications("orderlog-aggregate"))
    pipeline.run_aggregate(settings, END - timedelta(days=DAYS - 1), END, tmp_path / "aggregate.log")
    runs = applications("orderlog-aggregate")
    assert len(runs) == aggregates + 1
    assert workers_that_ran(local_cluster, max(runs, key=lambda a: a["starttime"])) == [
        "spark-worker1", "spark-worker2"]

    assert pipeline.check_viewer(pipeline.viewer_url(settings), truth, sample_users=40) == []
