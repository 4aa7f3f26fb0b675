"""The ingest API as it runs in production: gunicorn workers, then SIGTERM under load.

Every event that got a 202 before the shutdown must be in Kafka: the workers finish the
requests in flight and the worker_exit hook flushes and closes each worker's producer.
"""

from __future__ import annotations

import json
import signal
import threading
import time
import urllib.error
import urllib.request

import pytest

from tests.conftest import gunicorn_server

pytestmark = pytest.mark.integration

GOOD = {"user_id": "u-1", "timestamp": "2025-05-31T12:34:56+09:00", "menu_type": "japanese"}


def request(url: str, body: object | None = None, timeout: float = 15) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture
def gunicorn(settings, kafka_topic, kafka_client, tmp_path):
    env = {
        "ORDERLOG_KAFKA_CLIENT": kafka_client,
        "ORDERLOG_KAFKA_BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "ORDERLOG_KAFKA_TOPIC": kafka_topic,
        "ORDERLOG_INGEST_WORKERS": "2",
        "ORDERLOG_INGEST_THREADS": "4",
    }
    log_path = tmp_path / "gunicorn.log"
    with gunicorn_server("ingest_api", env, log_path, "/readyz") as (process, base):
        yield process, base, log_path


def test_sigterm_under_load_loses_no_acknowledged_event(gunicorn, settings, kafka_topic):
    from tests.test_ingest_kafka import consume

    process, base, log_path = gunicorn
    acknowledged: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(n: int) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            body = [{**GOOD, "user_id": f"u-{n}", "order_id": f"c{n}-{i}-{k}"} for k in range(20)]
            try:
                status, answer = request(base + "/api/logs", body)
            except OSError:
                return  # the server has closed its socket: shutdown reached this client
            assert status == 202, answer
            with lock:
                acknowledged.extend(answer["order_ids"])

    threads = [threading.Thread(target=client, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    time.sleep(2)
    with lock:
        before_sigterm = len(acknowledged)
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 0
    stop.set()
    for t in threads:
        t.join(30)

    print(f"acknowledged {before_sigterm} before SIGTERM, {len(acknowledged)} in all")
    assert before_sigterm > 0
    log = log_path.read_text()
    assert log.count("Kafka producer flushed and closed") == 2, log
    records = consume(settings, kafka_topic, len(acknowledged))
    in_kafka = [value["order_id"] for _, value in records]
    # every acknowledged event is in Kafka, once (the idempotent producer adds no duplicates)
    assert len(in_kafka) == len(set(in_kafka))
    assert set(acknowledged) <= set(in_kafka)
