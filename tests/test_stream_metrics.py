"""The streaming job's Prometheus metrics and its stream_progress row: the figures of a
batch (pure), a progress store that fails without stopping anything, then the real job
under ./spark-submit.sh serving them from its driver, and persisting them, after real records."""

from __future__ import annotations

import logging
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from jobs import stream_metrics
from jobs.stream_metrics import behind_by_partition
from jobs.stream_progress_store import COLUMNS, ProgressStore, progress_values, spark_time
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


def _progress(**overrides):
    source = SimpleNamespace(latestOffset='{"orders": {"0": 12, "1": 3}, "other": {"0": 50}}',
                             endOffset='{"orders": {"0": 9, "1": 3}, "other": {"0": 1}}')
    fields = dict(id="q-1", runId="r-1", batchId=7, timestamp="2026-05-31T03:00:00.250Z", numInputRows=40,
                  inputRowsPerSecond=40.0, processedRowsPerSecond=250.0, durationMs={"triggerExecution": 1500},
                  sources=[source])
    return SimpleNamespace(**{**fields, **overrides})


def test_a_batch_becomes_one_stream_progress_row_of_its_topic():
    now = datetime(2026, 5, 31, 3, 0, 2, tzinfo=UTC)
    row = dict(zip(COLUMNS, progress_values("orders", _progress(), {"rows": 43, "valid": 40, "rejected": 3}, now),
                   strict=True))
    assert row == {
        "topic": "orders", "query_id": "q-1", "run_id": "r-1", "batch_id": 7,
        "batch_at": datetime(2026, 5, 31, 3, 0, 0, 250000, tzinfo=UTC), "batch_duration_ms": 1500,
        "input_rows": 43,  # a replayed batch: Spark says fewer rows than the writer wrote
        "input_rows_per_second": 40.0, "processed_rows_per_second": 250.0,
        "offsets_behind": {0: 3, 1: 0},  # only the job's own topic
        "rows_valid": 40, "rows_rejected": 3, "written_at": now,
    }  # fmt: skip
    empty = dict(zip(COLUMNS, progress_values("orders", _progress(inputRowsPerSecond=None, sources=[]), {}, now),
                     strict=True))
    assert (empty["input_rows_per_second"], empty["offsets_behind"], empty["rows_valid"]) == (0.0, {}, 0)
    assert spark_time("not a time") is None and spark_time(None) is None


def test_a_progress_store_that_cannot_write_warns_once_and_never_raises(settings, caplog):
    attempts = []

    def unreachable():
        attempts.append(1)
        raise OSError("Cassandra is unreachable")

    store = ProgressStore(settings, connect_session=unreachable)
    with caplog.at_level(logging.WARNING, logger="orderlog.streaming"):
        store.batch_done(_progress(), {})
        store.batch_done(_progress(batchId=8), {})
        store.idle(SimpleNamespace(id="q-1", runId="r-1", timestamp="2026-05-31T03:00:10Z"))
    assert len(attempts) == 3  # tried at each batch, in case Cassandra is back
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == [f"stream progress not recorded in {settings.cassandra.keyspace}.stream_progress "
                        "(Cassandra is unreachable); the stream goes on"]


def test_a_progress_store_closes_quietly_whatever_its_session_does(settings):
    store = ProgressStore(settings)
    store.close_quietly()  # never opened
    broken = SimpleNamespace(cluster=SimpleNamespace(shutdown=lambda: 1 / 0))
    store.session = broken
    store.close_quietly()  # the job's end must not turn into an exit 1
    assert store.session is None


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
    except OSError:
        return {}
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.mark.integration
def test_the_jobs_driver_serves_and_persists_what_its_batches_did(
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

    # The same progress, persisted for the viewer's status page: one row for the query.
    def progress_rows():
        return list(clean_cassandra.execute(
            "SELECT * FROM stream_progress WHERE topic = %s", (kafka_topic,), timeout=30))

    wait_for(lambda: any(r.offsets_behind == dict.fromkeys(r.offsets_behind, 0) and r.offsets_behind
                         for r in progress_rows()), 60, "a stream_progress row that has caught up")
    (row,) = progress_rows()
    assert set(row.offsets_behind) == {int(p) for p in behind}  # every partition the job read
    assert row.batch_id >= 0 and row.batch_duration_ms >= 0 and row.run_id and row.query_id
    assert row.written_at is not None and row.batch_at is not None
    assert row.batch_at <= row.written_at
    assert row.processed_rows_per_second >= 0
    # The batches' rows, all in the last batch or spread over several: never more than sent.
    assert 0 <= row.rows_valid <= 40 and 0 <= row.rows_rejected <= 3
    # Closing its progress session is part of a clean stop.
    assert job.terminate() == 0, job.text()[-3000:]


def test_metrics_on_an_address_not_of_this_host_cost_one_warning_not_the_job(caplog):
    (port,) = free_ports(1)
    with caplog.at_level(logging.WARNING, logger="orderlog.streaming"):
        assert stream_metrics.serve(port, "192.0.2.1") is False  # TEST-NET-1: no interface of ours
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith(f"metrics not served: 192.0.2.1:{port} (")
