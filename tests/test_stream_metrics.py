"""The streaming job's Prometheus metrics: the figures of a batch (pure), then the real job
under ./spark-submit.sh serving them from its driver after real records."""

from __future__ import annotations

import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from jobs import stream_metrics
from jobs.stream_metrics import behind_by_partition
from tests.conftest import free_ports
from tests.streaming_job import StreamingJob, wait_for


def test_offsets_behind_per_partition_never_negative():
    latest = '{"t": {"0": 10, "1": 5, "2": 7}}'
    end = '{"t": {"0": 4, "1": 5, "2": 9}}'
    assert behind_by_partition(latest, end) == {("t", "0"): 6, ("t", "1"): 0, ("t", "2"): 0}
    assert behind_by_partition('{"t": {"3": 2}}', '{"t": {}}') == {("t", "3"): 2}  # a new partition
    assert behind_by_partition(None, end) == {}


def _value(name: str, **labels: str) -> float | None:
    return stream_metrics.REGISTRY.get_sample_value(name, labels)


def test_a_batch_sets_the_rates_and_adds_its_counts():
    valid = _value("orderlog_stream_rows_total", outcome="valid") or 0
    retries = _value("orderlog_stream_cassandra_retries_total") or 0
    source = SimpleNamespace(latestOffset='{"unit-topic": {"0": 12}}', endOffset='{"unit-topic": {"0": 9}}')
    progress = SimpleNamespace(inputRowsPerSecond=40.0, processedRowsPerSecond=250.0,
                               durationMs={"triggerExecution": 1500}, sources=[source])
    stream_metrics.record(progress, {"valid": 7, "rejected": 2, "retries": 1})
    assert _value("orderlog_stream_input_rows_per_second") == 40.0
    assert _value("orderlog_stream_processed_rows_per_second") == 250.0
    assert _value("orderlog_stream_offsets_behind", topic="unit-topic", partition="0") == 3
    assert _value("orderlog_stream_rows_total", outcome="valid") == valid + 7
    assert _value("orderlog_stream_cassandra_retries_total") == retries + 1
    assert _value("orderlog_stream_batch_duration_seconds_sum") >= 1.5
    assert _value("orderlog_stream_last_batch_timestamp_seconds") > 0


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
    except OSError:
        return {}
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.mark.integration
def test_the_jobs_driver_serves_what_its_batches_did(
    settings, kafka_topic, clean_cassandra, tmp_path: Path, streaming_jobs, monkeypatch
):
    from tests.test_streaming_integration import good_events, produce

    good = good_events(40, "metrics")
    produce(settings, kafka_topic, [(b"k", value) for value in good] + [(b"k", b"not json")] * 3)
    (port,) = free_ports(1)
    monkeypatch.setenv("ORDERLOG_STREAM_METRICS_PORT", str(port))
    job = StreamingJob(settings, kafka_topic, tmp_path / "checkpoint", tmp_path / "streaming.log").start()
    streaming_jobs.append(job)

    def rows(outcome: str) -> float:
        return scrape(port).get(("orderlog_stream_rows_total", (("outcome", outcome),)), 0.0)

    wait_for(lambda: job.proc.poll() is not None or (rows("valid"), rows("rejected")) == (40, 3), 300,
             "40 valid and 3 rejected rows in the job's metrics")
    assert job.proc.poll() is None, job.text()[-3000:]
    got = scrape(port)
    behind = {dict(labels)["partition"]: value for (name, labels), value in got.items()
              if name == "orderlog_stream_offsets_behind"}
    assert behind and set(behind.values()) == {0}, got  # caught up, on every partition it read
    topics = {dict(labels)["topic"] for (name, labels) in got if name == "orderlog_stream_offsets_behind"}
    assert topics == {kafka_topic}
    assert got[("orderlog_stream_batch_duration_seconds_count", ())] >= 1
    assert got[("orderlog_stream_last_batch_timestamp_seconds", ())] > 0
    assert got[("orderlog_stream_cassandra_retries_total", ())] == 0
    assert ("orderlog_stream_input_rows_per_second", ()) in got
