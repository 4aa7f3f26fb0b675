"""The pipeline on the local cluster, run exactly as on one node with the cluster's
configuration (`make cluster-env`): the jobs on the standalone master, with executors in
JVMs of their own on both workers that receive the code through spark-submit (not the
working directory) and run the pandas UDF; the results are the generator's truth, which
is what the same pipeline gives on local[2] (tests/test_end_to_end.py).
Marked cluster: `make test-cluster` runs it."""

from __future__ import annotations

import json
import subprocess
from datetime import date, timedelta

import pytest

from jobs.shipping import shipped_archive
from local_stack import supervisor
from local_stack.supervisor import free_ports
from orderlog.config import child_environment
from tests.cluster_run import applications, running_pipeline, wait_for_streaming_executors
from tests.streaming_job import ROOT
from tools import pipeline
from tools import replay as replay_cli

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

END = date(2025, 5, 31)
DAYS = 2


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
    with running_pipeline(local_cluster, tmp_path) as running:
        yield running


def aggregated_results(settings) -> dict[str, list[tuple]]:
    """What the aggregate wrote, every row of the tables the viewer shows, in key order
    (without the times of writing): daily summaries, segment sizes, segment members and
    each member's preference."""
    from orderlog.cassandra_session import connect, shutdown
    from orderlog.layout import SEGMENT_BUCKETS
    from orderlog.menu import SEGMENTS

    session = connect(settings)
    try:
        def rows(cql: str, *keys: tuple) -> list[tuple]:
            statement = session.prepare(cql)
            return [tuple(row) for key in keys for row in session.execute(statement, key, timeout=60)]

        members = rows("SELECT segment, user_id, japanese, western FROM user_segments WHERE segment = ? AND bucket = ?",
                       *[(segment, b) for segment in SEGMENTS for b in range(SEGMENT_BUCKETS)])
        return {
            "daily_order_summaries": rows(
                "SELECT order_date, japanese, western, total, users FROM daily_order_summaries WHERE year = ?",
                (END.year,)),
            "segment_sizes": rows("SELECT as_of, segment, users, entered, exited FROM segment_sizes WHERE year = ?",
                                  (END.year,)),
            "user_segments": sorted(members),
            "user_preferences": rows(
                "SELECT user_id, japanese, western, preference, first_order_date, last_order_date "
                "FROM user_preferences WHERE user_id = ?", *sorted({(m[1],) for m in members})),
        }
    finally:
        shutdown(session)


def replay_and_aggregate(settings, processes: dict, folder) -> dict:
    """The fixed-seed replay through the running ingest API and stream, then the aggregate
    of its dates; returns the replay's truth."""
    truth_file = folder / "truth.json"
    code = replay_cli.main([
        END.isoformat(), "--days", str(DAYS), "--users", "150", "--orders", "2500", "--seed", "11",
        "--rate", "0", "--quiet", "--url", pipeline.ingest_url(settings), "--truth", str(truth_file),
    ])
    assert code == 0
    truth = json.loads(truth_file.read_text())
    assert truth["orders"] == 2500
    streaming = processes["streaming"]
    try:
        counts = pipeline.wait_for_raw_orders(settings, truth, timeout=900,
                                              alive=lambda: supervisor.running(streaming))
    except pipeline.PipelineError as exc:
        pytest.fail(f"{exc}\n{supervisor.tail(streaming.log, 60)}")
    assert counts == {d: v["total"] for d, v in truth["daily"].items()}
    pipeline.run_aggregate(settings, END - timedelta(days=DAYS - 1), END, folder / "aggregate.log")
    return truth


def test_the_pipeline_on_the_cluster_ends_in_the_generators_truth(
    local_cluster, cluster_pipeline, tmp_path, private_kafka, private_cassandra
):
    settings, processes = cluster_pipeline
    streaming = processes["streaming"]
    # The streaming job runs on the master with an executor on each worker.
    wait_for_streaming_executors()

    # The replay, and the aggregate, on the cluster too, beside the running stream.
    aggregates = len(applications("orderlog-aggregate"))
    truth = replay_and_aggregate(settings, processes, tmp_path / "cluster")
    runs = applications("orderlog-aggregate")
    assert len(runs) == aggregates + 1
    assert workers_that_ran(local_cluster, max(runs, key=lambda a: a["starttime"])) == [
        "spark-worker1", "spark-worker2"]

    assert pipeline.check_viewer(pipeline.viewer_url(settings), truth, sample_users=40) == []
    on_the_cluster = aggregated_results(settings)
    assert on_the_cluster["daily_order_summaries"] and on_the_cluster["user_segments"]
    assert supervisor.running(streaming), supervisor.tail(streaming.log, 60)
    pipeline.stop_services(processes)

    # The same replay on one node (a single-node Kafka and Cassandra on spare ports, the
    # jobs on local[2]) ends in the very same rows.
    (ingest_port, viewer_port), single = free_ports(2), tmp_path / "single-node"
    one_node = private_cassandra.settings.replace(
        kafka_bootstrap_servers=private_kafka.settings.kafka.bootstrap_servers,
        spark_master="local[2]", stream_checkpoint_location=str(single / "checkpoint"),
        ingest_port=ingest_port, viewer_port=viewer_port, paths_var=str(single / "var"),
        ingest_workers=1, viewer_workers=1,
    )
    started: dict = {}
    try:
        started.update(pipeline.start_services(one_node, single / "logs", started.__setitem__))
        assert replay_and_aggregate(one_node, started, single) == truth
    finally:
        pipeline.stop_services(started)
    assert aggregated_results(one_node) == on_the_cluster
