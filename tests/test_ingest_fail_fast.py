"""While Kafka is down, the ingest API refuses at once instead of making every request wait
for the acknowledgement timeout again: one request probes, the others get a 503 straight
away. A pure unit test of both producer backends, with a clock of its own (the integration
tests in test_ingest_fault.py cannot tell "at once" from "after one more probe" on a
loaded machine without asserting on timing)."""

from __future__ import annotations

import os
import threading
from types import SimpleNamespace

import pytest
from kafka.errors import KafkaConnectionError

from ingest_api import confluent_backend, kafka_python_backend
from ingest_api.producer_interface import KafkaUnavailable

RECORD = [(b"order-1", b"{}")]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    fake = Clock()
    for module in (confluent_backend, kafka_python_backend):
        monkeypatch.setattr(module, "time", SimpleNamespace(monotonic=fake.monotonic, sleep=lambda s: None))
    return fake


def down_confluent_producer(clock: Clock, probes: list[float]) -> confluent_backend.ConfluentProducer:
    """A ConfluentProducer whose librdkafka said every broker is down; each probe (a request
    that waits for the acknowledgement) is recorded and times out."""
    producer = confluent_backend.ConfluentProducer("orders", {}, ack_timeout_s=4.0)
    producer._producer, producer._pid = object(), os.getpid()  # no real producer is created

    def probe(_librdkafka, _records) -> None:
        probes.append(clock.now)
        clock.now += 4.0  # the whole acknowledgement timeout
        raise KafkaUnavailable("Kafka did not acknowledge the records (KafkaTimeoutError: 1 of 1 ...)")

    producer._send_and_wait = probe
    producer._on_error(confluent_backend.KafkaError(confluent_backend.KafkaError._ALL_BROKERS_DOWN))
    return producer


def test_confluent_refuses_at_once_after_a_failed_probe_then_probes_again(clock):
    probes: list[float] = []
    producer = down_confluent_producer(clock, probes)

    with pytest.raises(KafkaUnavailable, match="did not acknowledge"):
        producer.send_all(RECORD)  # the first request finds out: it waits
    with pytest.raises(KafkaUnavailable, match=r"^Kafka is unavailable \(all brokers are down\)$"):
        producer.send_all(RECORD)  # the next, within the probe interval: at once
    assert probes == [1000.0]

    clock.now += confluent_backend.DOWN_PROBE_INTERVAL_S
    with pytest.raises(KafkaUnavailable, match="did not acknowledge"):
        producer.send_all(RECORD)  # a second later one request may wait again, to find Kafka back
    assert len(probes) == 2


def test_confluent_refuses_at_once_while_another_request_probes(clock):
    probes: list[float] = []
    producer = down_confluent_producer(clock, probes)
    clock.now += confluent_backend.DOWN_PROBE_INTERVAL_S
    inside, release, answers = threading.Event(), threading.Event(), []

    def slow_probe(_librdkafka, _records) -> None:
        probes.append(clock.now)
        inside.set()
        release.wait(30)
        raise KafkaUnavailable("Kafka did not acknowledge the records (KafkaTimeoutError)")

    producer._send_and_wait = slow_probe

    def first() -> None:
        try:
            producer.send_all(RECORD)
        except KafkaUnavailable as exc:
            answers.append(str(exc))

    prober = threading.Thread(target=first)
    prober.start()
    assert inside.wait(30)
    with pytest.raises(KafkaUnavailable, match=r"all brokers are down"):
        producer.send_all(RECORD)  # refused without waiting for the probe
    release.set()
    prober.join(30)
    assert answers == ["Kafka did not acknowledge the records (KafkaTimeoutError)"] and len(probes) == 1


def test_confluent_back_up_no_refusal_at_once(clock):
    """Once a probe is acknowledged, requests wait for their acknowledgement again."""
    probes: list[float] = []
    producer = down_confluent_producer(clock, probes)
    clock.now += confluent_backend.DOWN_PROBE_INTERVAL_S
    producer._send_and_wait = lambda _p, _r: probes.append(clock.now)  # acknowledged
    producer.send_all(RECORD)
    producer.send_all(RECORD)
    assert len(probes) == 2


def test_kafka_python_does_not_retry_creating_the_producer_within_the_backoff(clock, monkeypatch):
    attempts: list[float] = []

    def no_broker(**_config):
        attempts.append(clock.now)
        clock.now += 2.0  # a bootstrap attempt takes its time
        raise KafkaConnectionError("Unable to bootstrap from [127.0.0.1:9]")

    monkeypatch.setattr(kafka_python_backend, "KafkaProducer", no_broker)
    producer = kafka_python_backend.KafkaPythonProducer("orders", {}, ack_timeout_s=4.0)

    with pytest.raises(KafkaUnavailable, match=r"^Kafka is unavailable \(KafkaConnectionError: Unable to bootstrap"):
        producer.send_all(RECORD)
    with pytest.raises(KafkaUnavailable, match=r"^Kafka is unavailable \(KafkaConnectionError: Unable to bootstrap"):
        producer.send_all(RECORD)  # within the backoff: no second bootstrap attempt
    assert attempts == [1000.0]

    clock.now += kafka_python_backend.CREATE_BACKOFF_S
    with pytest.raises(KafkaUnavailable):
        producer.send_all(RECORD)
    assert len(attempts) == 2
