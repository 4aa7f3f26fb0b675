"""End to end, with the real servers and the real processes: replay generator -> ingest
API (gunicorn) -> Kafka -> streaming job (spark-submit) -> Cassandra -> aggregate
(spark-submit) -> viewer (gunicorn) JSON API, which must equal the generator's truth.

Private everything but the servers: its own keyspace, topic, checkpoint, ports and var
folder, so neither a running demo nor other tests are disturbed. The processes are run as
the demo runs them (tools/pipeline.py on local_stack/supervisor.py).
"""

from __future__ import annotations

import json
import urllib.request
from datetime import date, timedelta

import pytest

from local_stack import supervisor
from local_stack.supervisor import free_ports
from tests.conftest import empty_keyspace, pipeline_services
from tools import pipeline
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
    empty_keyspace(private)
    return private


@pytest.fixture
def running(e2e_settings, tmp_path):
    """streaming, ingest and viewer running in the background; stopped afterwards."""
    with pipeline_services(e2e_settings, tmp_path / "logs") as processes:
        yield processes


def test_the_viewer_shows_exactly_what_the_generator_sent(e2e_settings, running, tmp_path, capsys):
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

    streaming = running["streaming"]
    try:
        counts = pipeline.wait_for_raw_orders(settings, truth, timeout=600,
                                              alive=lambda: supervisor.running(streaming))
    except pipeline.PipelineError as exc:
        pytest.fail(f"{exc}\n{supervisor.tail(streaming.log, 60)}")
    assert counts == {d: v["total"] for d, v in truth["daily"].items()}

    pipeline.run_aggregate(settings, END - timedelta(days=DAYS - 1), END, tmp_path / "aggregate.log")

    assert pipeline.check_viewer(viewer, truth, sample_users=40) == []
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
