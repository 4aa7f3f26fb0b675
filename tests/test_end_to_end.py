"""End to end, with the real servers and the real processes: replay generator -> ingest
API (gunicorn) -> Kafka -> streaming job (spark-submit) -> Cassandra -> aggregate
(spark-submit) -> viewer (gunicorn) JSON API, which must equal the generator's truth.

Private everything but the servers: its own keyspace, topic, checkpoint, ports and var
folder, so neither a running demo nor other tests are disturbed.
"""

from __future__ import annotations

import json
import urllib.request
from datetime import date, timedelta

import pytest

from orderlog.config import child_environment
from orderlog.schema import apply_cql, truncate_tables
from tests.conftest import free_ports
from tools import demo
from tools import replay as replay_cli

pytestmark = pytest.mark.integration

END = date(2025, 5, 31)
DAYS = 2


@pytest.fixture
def e2e_settings(settings, stack, kafka_topic, tmp_path):
    ingest_port, viewer_port = free_ports(2)
    private = settings.replace(
        cassandra_keyspace=f"{settings.cassandra.keyspace}_e2e",
        kafka_topic=kafka_topic,
        stream_checkpoint_location=str(tmp_path / "checkpoint"),
        ingest_port=ingest_port,
        viewer_port=viewer_port,
        paths_var=str(tmp_path / "var"),
        ingest_workers=1,
        viewer_workers=1,
        viewer_cache_seconds=0,
    )
    apply_cql(private)
    from orderlog.cassandra_session import connect, shutdown

    session = connect(private)
    try:
        truncate_tables(session)
    finally:
        shutdown(session)
    return private


@pytest.fixture
def pipeline(e2e_settings):
    """streaming, ingest and viewer running in the background; stopped afterwards."""
    folder = demo.demo_dir(e2e_settings)
    env = child_environment(e2e_settings)
    processes = {}
    try:
        for name, command in demo.service_commands(e2e_settings).items():
            processes[name] = demo.start_process(name, command, env, folder / f"{name}.log")
        demo.wait_http(f"http://127.0.0.1:{e2e_settings.ingest.port}/healthz", processes["ingest"])
        demo.wait_http(f"http://127.0.0.1:{e2e_settings.viewer.port}/api/status", processes["viewer"])
        yield processes
    finally:
        for entry in processes.values():
            demo.stop_process(entry)
        assert not any(demo.is_ours(e) for e in processes.values())


def test_the_viewer_shows_exactly_what_the_generator_sent(e2e_settings, pipeline, tmp_path, capsys):
    settings = e2e_settings
    ingest = f"http://127.0.0.1:{settings.ingest.port}"
    viewer = f"http://127.0.0.1:{settings.viewer.port}"
    truth_file = tmp_path / "truth.json"
    code = replay_cli.main([
        END.isoformat(), "--days", str(DAYS), "--users", "150", "--orders", "2500", "--seed", "11",
        "--dirty", "--rate", "0", "--quiet", "--url", ingest, "--truth", str(truth_file),
    ])
    assert code == 0
    assert "sent 2512, acknowledged 2500, refused 12" in capsys.readouterr().out  # 0.5 % of 2500, rounded
    truth = json.loads(truth_file.read_text())
    assert truth["orders"] == 2500

    streaming = pipeline["streaming"]
    try:
        counts = demo.wait_for_raw_orders(settings, truth, timeout=600, alive=lambda: demo.is_ours(streaming))
    except demo.DemoError as exc:
        pytest.fail(f"{exc}\n{demo.tail(streaming['log'], 60)}")
    assert counts == {d: v["total"] for d, v in truth["daily"].items()}

    demo.run_aggregate(settings, END - timedelta(days=DAYS - 1), END, tmp_path / "aggregate.log")

    assert demo.check_viewer(viewer, truth, sample_users=40) == []
    # The same, spelled out for the last day and the segments.
    with urllib.request.urlopen(f"{viewer}/api/daily_order_summaries?date={END}") as reply:
        day = json.loads(reply.read())
    want = truth["daily"][END.isoformat()]
    assert (day["japanese"], day["western"], day["total"], day["users"]) == (
        want["japanese"], want["western"], want["total"], want["users"])
    with urllib.request.urlopen(f"{viewer}/api/user_segments") as reply:
        segments = json.loads(reply.read())["segments"]
    assert {s: v["count"] for s, v in segments.items()} == truth["segments"]
    assert truth["segments"]["even"] > 0  # the ties made it through

    # Refused events never reached Kafka, so nothing was rejected downstream.
    from orderlog.cassandra_session import connect, shutdown

    session = connect(settings)
    try:
        assert session.execute("SELECT count(*) FROM rejected_events", timeout=60).one()[0] == 0
    finally:
        shutdown(session)
