"""The ingest API when Kafka goes away and comes back (a Kafka of the test's own).

No 202 while Kafka is down, 503 with Retry-After instead, and the same app instance
accepts again once Kafka is back - without a restart of its own.
"""

from __future__ import annotations

import json
import time

import pytest

from ingest_api import create_app

pytestmark = [pytest.mark.integration, pytest.mark.fault]

GOOD = {"user_id": "u-1", "timestamp": "2025-05-31T12:34:56+09:00", "menu_type": "japanese"}
ACK_TIMEOUT_MS = 4000
# Far above any answer's own bound (the ack timeout), so only a request that hangs fails it,
# never a slow machine.
HANG_S = 60


def make_client(server, kafka_client):
    app = create_app(server.settings.replace(ingest_ack_timeout_ms=ACK_TIMEOUT_MS, kafka_client=kafka_client))
    return app.test_client()


def post_until_accepted(client, timeout_s: float = 120) -> tuple[object, list[str]]:
    """Post until a 202; the order ids of every 503 on the way are returned too."""
    refused: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        response = client.post("/api/log", json=GOOD)
        if response.status_code == 202:
            return response, refused
        assert response.status_code == 503, response.json
        refused.extend(response.json["order_ids"])
        time.sleep(0.5)
    raise AssertionError(f"no 202 within {timeout_s} s after Kafka came back")


def topic_order_ids(server) -> list[str]:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        server.settings.kafka.topic,
        bootstrap_servers=server.settings.kafka.bootstrap_list,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=5000,
    )
    try:
        return [json.loads(m.value)["order_id"] for m in consumer]
    finally:
        consumer.close()


def test_kafka_down_gives_503_and_the_same_app_recovers(private_kafka, kafka_client):
    client = make_client(private_kafka, kafka_client)
    first = client.post("/api/log", json=GOOD)
    assert first.status_code == 202

    private_kafka.stop()
    started = time.monotonic()
    down = client.post("/api/logs", json=[GOOD, GOOD, GOOD])
    waited = time.monotonic() - started
    assert down.status_code == 503
    assert down.headers["Retry-After"] == "5"
    assert down.json["error"].startswith("Kafka did not acknowledge the records (")
    assert down.json["error"].endswith("retry later with these order_ids, which counts each event once")
    assert len(down.json["order_ids"]) == 3
    assert waited < HANG_S, waited  # bounded: the request never hangs
    single = client.post("/api/log", json=GOOD)
    assert single.status_code == 503 and single.headers["Retry-After"] == "5"
    health = client.get("/readyz")
    assert health.status_code == 503 and health.json["kafka"] == "unreachable"
    assert client.get("/healthz").status_code == 200  # alive, only not ready

    private_kafka.start()
    accepted, refused_while_starting = post_until_accepted(client)
    assert client.get("/readyz").status_code == 200
    after = client.post("/api/logs", json=[GOOD, GOOD])
    assert after.status_code == 202

    in_kafka = topic_order_ids(private_kafka)
    acknowledged = [first.json["order_id"], accepted.json["order_id"], *after.json["order_ids"]]
    refused = down.json["order_ids"] + single.json["order_ids"] + refused_while_starting
    # every acknowledged event is there exactly once; nothing refused slipped in later
    assert sorted(in_kafka) == sorted(acknowledged)
    assert not set(refused) & set(in_kafka)


# kafka-python cannot create a producer without a broker; librdkafka creates one and waits
# (the request's own deadline or librdkafka's message timeout, whichever a busy machine
# reaches first, ends the wait: both say the record was not acknowledged)
FIRST_REFUSAL = {"kafka-python": "Kafka is unavailable (",
                 "confluent-kafka": "Kafka did not acknowledge the records ("}
ANY_REFUSAL = ("Kafka is unavailable (", "Kafka did not acknowledge the records (")


def test_kafka_down_at_start_then_up_without_restarting_the_app(private_kafka, kafka_client):
    private_kafka.stop()
    client = make_client(private_kafka, kafka_client)
    started = time.monotonic()
    response = client.post("/api/log", json=GOOD)
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    assert response.json["error"].startswith(FIRST_REFUSAL[kafka_client])
    # Still down: refused again (at once, or after one more probe: which one depends on the
    # clock, so tests/test_ingest_fail_fast.py proves "at once" with a clock of its own).
    again = client.post("/api/log", json=GOOD)
    assert again.status_code == 503 and again.json["error"].startswith(ANY_REFUSAL), again.json
    assert time.monotonic() - started < HANG_S
    assert client.get("/readyz").status_code == 503

    private_kafka.start()
    accepted, _ = post_until_accepted(client)
    assert topic_order_ids(private_kafka) == [accepted.json["order_id"]]


def produce_probe(server, timeout_s: float = 120) -> None:
    """Return once a fresh producer of its own gets a record acknowledged: Kafka is back."""
    from kafka import KafkaProducer

    deadline = time.monotonic() + timeout_s
    while True:
        producer = None
        try:
            producer = KafkaProducer(bootstrap_servers=server.settings.kafka.bootstrap_list, acks="all",
                                     bootstrap_timeout_ms=2000)
            producer.send(server.settings.kafka.topic, value=PROBE).get(timeout=5)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
        finally:
            if producer is not None:
                producer.close(timeout=1)


PROBE = json.dumps({"order_id": "probe"}).encode()


def test_after_records_expired_in_flight_the_next_requests_are_accepted(private_kafka, kafka_client):
    """A broker that hangs (SIGSTOP) longer than the ack timeout: the record already sent
    expires in flight. kafka-python 3.0.12's idempotent producer is stuck for good after
    that, so the API must not keep it: once Kafka answers again, the next requests get 202."""
    client = make_client(private_kafka, kafka_client)
    first = client.post("/api/log", json=GOOD)
    assert first.status_code == 202

    private_kafka.pause()
    try:
        hung = client.post("/api/logs", json=[GOOD, GOOD])
        assert hung.status_code == 503 and hung.headers["Retry-After"] == "5"
        # past the producer's delivery timeout: the batch in flight has expired by now
        time.sleep(ACK_TIMEOUT_MS / 1000 + 1)
    finally:
        private_kafka.resume()

    produce_probe(private_kafka)
    after = [client.post("/api/log", json=GOOD) for _ in range(3)]
    assert [r.status_code for r in after] == [202, 202, 202], [r.json for r in after]

    in_kafka = [i for i in topic_order_ids(private_kafka) if i != "probe"]
    acknowledged = [first.json["order_id"], *(r.json["order_id"] for r in after)]
    # every acknowledged event exactly once; a refused one may have been written (it was in
    # flight when the broker hung), but never twice
    assert sorted(i for i in in_kafka if i in acknowledged) == sorted(acknowledged)
    assert set(in_kafka) <= set(acknowledged) | set(hung.json["order_ids"])
    assert len(in_kafka) == len(set(in_kafka))
