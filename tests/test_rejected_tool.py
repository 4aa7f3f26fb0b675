"""`python -m tools.rejected list|replay`: the rejected records of a date, shown escaped, and
sent back through the topic after a rule was fixed, idempotently, under the real streaming
job; and its command line as a total function (one line and exit 2 for a bad flag, one
line and exit 1 when Kafka or Cassandra cannot be reached)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from kafka import KafkaConsumer, KafkaProducer
from kafka.structs import TopicPartition

import tools.rejected
from orderlog.business_day import business_date
from orderlog.events import derived_order_id
from tests.conftest import free_ports
from tests.streaming_job import StreamingJob, wait_for

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "python -m tools.rejected: error: "


def rejected_tool(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The tool as a user runs it, in a process of its own."""
    return subprocess.run([sys.executable, "-m", "tools.rejected", *args], cwd=ROOT, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=120)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(PREFIX), result.stderr
    assert "Traceback" not in result.stdout
    return lines[0][len(PREFIX):]


# --- the command line, no server needed ------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "the following arguments are required: {list,replay}"),
        (["show"], "argument {list,replay}: invalid choice: 'show'"),
        (["list"], "the following arguments are required: --date"),
        (["list", "--date", "2025-02-30"], "argument --date: '2025-02-30' is not a date (YYYY-MM-DD)"),
        (["list", "--date", "yesterday"], "argument --date: 'yesterday' is not a date (YYYY-MM-DD)"),
        (["list", "--date", "2025-06-01", "--limit", "0"], "argument --limit: '0' is not a positive integer"),
        (["list", "--date", "2025-06-01", "--limit", "many"], "argument --limit: 'many' is not a positive integer"),
        (["replay", "--date", "2025-06-01", "--limit", "3"], "unrecognized arguments: --limit 3"),
        (["replay", "--date", "2025-06-01", "--topic", "a b"], "argument --topic: 'a b' is not a Kafka topic name"),
        (["list", "--date", "2025-06-01\nrm -rf /"], "argument --date: '2025-06-01\\x0arm -rf /' is not a date"),
    ],
)
def test_a_bad_flag_or_date_is_one_clear_line_and_exit_2(args, message):
    result = rejected_tool(*args)
    assert result.returncode == 2
    assert one_error_line(result).startswith(message)


def test_a_bad_configuration_value_is_one_line_and_exit_2():
    result = rejected_tool("list", "--date", "2025-06-01", env={"ORDERLOG_REJECTED_TTL_DAYS": "0"})
    assert result.returncode == 2
    assert one_error_line(result) == "ORDERLOG_REJECTED_TTL_DAYS='0': expected a whole number from 1 to 7300"


def test_cassandra_unreachable_is_one_line_and_exit_1():
    (port,) = free_ports(1)
    for command in ("list", "replay"):
        result = rejected_tool(command, "--date", "2025-06-01", env={"ORDERLOG_CASSANDRA_PORT": str(port)})
        assert result.returncode == 1
        assert one_error_line(result) == f"Cassandra is unreachable at 127.0.0.1:{port}"


# capsys and monkeypatch are reset by hand for each example.
@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(argv=st.lists(st.sampled_from(["list", "replay", "--date", "2025-06-01", "--limit", "--reason", "--topic",
                                      "--dry-run", "-h"]) | st.text(st.characters(exclude_categories=())), max_size=6))
def test_any_command_line_is_a_result_or_one_error_line(argv, monkeypatch, capsys):
    """Arguments as the OS hands them over (undecodable bytes become lone surrogates)."""
    ran = []
    monkeypatch.setattr(tools.rejected, "run", lambda args, settings, out: ran.append(args) or 0)
    capsys.readouterr()
    try:
        status = tools.rejected.main(argv)
    except SystemExit as exc:
        status = exc.code
    out, err = capsys.readouterr()
    if status == 0:
        assert ran or out.startswith("usage:")  # parsed and run, or --help
    else:
        assert status == 2 and not ran
        assert len(err.splitlines()) == 1 and err.startswith(PREFIX) and err[:-1].isprintable(), err


# --- against the real Kafka, Cassandra and streaming job -------------------------------------


def end_offsets(settings, topic: str) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_list)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        return {tp.partition: offset for tp, offset in consumer.end_offsets(partitions).items()}
    finally:
        consumer.close()


def rejected_rows(session) -> dict[tuple[int, int], object]:
    rows = session.execute("SELECT kafka_partition, kafka_offset, reason, replayed_at, reject_date, TTL(reason) AS ttl,"
                           " TTL(replayed_at) AS replayed_ttl FROM rejected_events", timeout=60)
    return {(r.kafka_partition, r.kafka_offset): r for r in rows}


def raw_rows(session) -> dict[str, object]:
    rows = session.execute("SELECT order_id, user_id, kafka_partition, kafka_offset FROM raw_orders", timeout=60)
    return {r.order_id: r for r in rows}


@pytest.mark.integration
@pytest.mark.fault
def test_replay_after_the_fix_lands_once_and_replaying_again_adds_nothing(
    settings, kafka_topic, clean_cassandra, tmp_path, streaming_jobs
):
    job = StreamingJob(settings, kafka_topic, tmp_path / "checkpoint", tmp_path / "streaming.log").start()
    streaming_jobs.append(job)
    env = {"ORDERLOG_KAFKA_TOPIC": kafka_topic}
    now = datetime.now(UTC)
    # Produced with a Kafka time 5 days old, the orders (3 days old) are "more than a day in
    # the future" of it: rejected. Replayed today, their Kafka time is now: accepted.
    produced = now - timedelta(days=5)
    ordered = (now - timedelta(days=3)).isoformat(timespec="seconds")
    skewed = [
        (b"skew-1", json.dumps({"user_id": "u-1", "timestamp": ordered, "menu_type": "japanese"}).encode()),
        (b"skew-\xff", json.dumps({"user_id": "u-2", "timestamp": ordered, "menu_type": "western",
                                   "order_id": "client-2"}).encode()),
    ]
    hopeless = [(b"bell", b'{"user_id": "\x07"}'), (None, b"\xff\xfe not utf-8")]  # rejected again when replayed
    unreplayable = [(b"tombstone", None), (b"huge", b"[" * 70_000)]
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_list, acks="all", max_request_size=2_000_000)
    stamp = int(produced.timestamp() * 1000)
    meta = {}
    for key, value in skewed + hopeless + unreplayable:
        meta[(key, value)] = producer.send(kafka_topic, key=key, value=value, timestamp_ms=stamp).get(timeout=60)
    coords = {kv: (m.partition, m.offset) for kv, m in meta.items()}
    day = business_date(produced, settings.business.tz)
    wait_for(lambda: len(rejected_rows(clean_cassandra)) == 6, 300, "6 rejected records", interval=2)
    first = rejected_rows(clean_cassandra)
    assert {first[coords[kv]].reason for kv in skewed} == {"timestamp: is more than a day in the future"}
    assert {r.reject_date.date() for r in first.values()} == {day}

    # list: every record of the date, oldest offset first, escaped, with its reason.
    listed = rejected_tool("list", "--date", str(day), env=env)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[-1] == f"6 rejected records of {day} in topic {kafka_topic}"
    headers = [line.split()[0] for line in lines if not line.startswith(" ") and line != lines[-1]]
    assert headers == [f"{kafka_topic}:{p}:{o}" for p, o in sorted(coords.values())]
    assert '    value:  {"user_id": "\\x07"}' in lines
    assert "    value:  \\xff\\xfe not utf-8" in lines
    assert "    key:    skew-\\xff" in lines
    assert "    reason: timestamp: is more than a day in the future" in lines
    assert all("not replayed" in h for h in lines if h.startswith(kafka_topic))
    limited = rejected_tool("list", "--date", str(day), "--limit", "1", "--reason", "FUTURE", env=env)
    assert limited.stdout.splitlines()[-1] == (f"1 rejected records of {day} in topic {kafka_topic} with reason "
                                               "containing 'FUTURE' shown (--limit 1; there are more)")

    # --dry-run: says what it would send, sends nothing, marks nothing.
    before = end_offsets(settings, kafka_topic)
    dry = rejected_tool("replay", "--date", str(day), "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines()[-1] == (
        f"dry run: 4 records of {day} in topic {kafka_topic} would be replayed, 2 skipped; nothing was sent")
    assert sum(line.startswith("would send ") for line in dry.stdout.splitlines()) == 4
    assert end_offsets(settings, kafka_topic) == before
    assert all(r.replayed_at is None for r in rejected_rows(clean_cassandra).values())

    # Kafka unreachable: one line, exit 1, nothing marked.
    (dead,) = free_ports(1)
    unreachable = {**env, "ORDERLOG_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{dead}"}
    down = rejected_tool("replay", "--date", str(day), env=unreachable)
    assert down.returncode == 1
    assert one_error_line(down).startswith(f"Kafka is unreachable at 127.0.0.1:{dead}")
    assert all(r.replayed_at is None for r in rejected_rows(clean_cassandra).values())

    expected_ids = {derived_order_id(kafka_topic, *coords[skewed[0]]), "client-2"}
    for attempt in (1, 2):
        result = rejected_tool("replay", "--date", str(day), env=env)
        assert result.returncode == 0, result.stderr
        out = result.stdout.splitlines()
        assert out[-1] == f"replayed 4 records of {day} in topic {kafka_topic} (acknowledged by Kafka), 2 skipped"
        assert sorted(line.split(":")[-1].strip() for line in out if line.startswith("skipped ")) == [
            "it has no value (a tombstone)", "its payload of 70000 bytes was stored truncated to 65536"]
        # A sentinel behind each replayed record, on its partition (same key), shows the job
        # has read past it.
        sentinels = {
            f"sentinel-{attempt}-{n}": producer.send(kafka_topic, key=key, value=json.dumps(
                {"user_id": "s", "timestamp": now.isoformat(), "menu_type": "japanese",
                 "order_id": f"sentinel-{attempt}-{n}"}).encode()).get(timeout=60)
            for n, (key, _) in enumerate(skewed + hopeless)
        }
        wait_for(lambda ids=set(sentinels): ids <= set(raw_rows(clean_cassandra)), 180, f"replay {attempt} to be read")
        raw = raw_rows(clean_cassandra)
        assert set(raw) - {s for s in raw if s.startswith("sentinel-")} == expected_ids  # each order once
        for kv in skewed:  # the row names the original record, not the replayed copy
            order = raw[derived_order_id(kafka_topic, *coords[kv]) if kv is skewed[0] else "client-2"]
            assert (order.kafka_partition, order.kafka_offset) == coords[kv]
        rows = rejected_rows(clean_cassandra)
        assert set(rows) == set(first), "a record rejected again keeps its one row"
        replayed = {key for key, row in rows.items() if row.replayed_at is not None}
        assert replayed == {coords[kv] for kv in skewed + hopeless}
        for key in replayed:  # replayed_at expires with its row
            assert rows[key].replayed_ttl is not None and abs(rows[key].replayed_ttl - rows[key].ttl) < 120
        time.sleep(1)

    assert job.proc.poll() is None
    assert job.terminate() == 0
    producer.close()
