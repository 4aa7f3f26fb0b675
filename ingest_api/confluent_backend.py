"""The ingest API's producer on confluent-kafka (librdkafka, a producer written in C).

One librdkafka producer per worker process, created after gunicorn's fork on first use and
shared by the request threads. A background thread polls it, which runs the delivery
callbacks; each request counts its own records' callbacks and waits for all of them until
its deadline. librdkafka reconnects, retries and keeps the idempotent sequence by itself;
only a fatal error (an idempotence state it cannot leave) makes us replace the producer.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka import Producer as LibrdkafkaProducer

from ingest_api.producer_interface import KafkaUnavailable, Record

log = logging.getLogger(__name__)

# While librdkafka says every broker is down, requests are refused at once, except one per
# this many seconds, which waits and so finds out whether Kafka is back.
DOWN_PROBE_INTERVAL_S = 1.0
POLL_INTERVAL_S = 0.1
# librdkafka's errors that say the brokers refuse us rather than being down.
REFUSALS = (KafkaError._AUTHENTICATION, KafkaError._SSL)


def confluent_config(bootstrap_servers: list[str], ack_timeout_ms: int, **overrides: Any) -> dict[str, Any]:
    """librdkafka's settings: durable (acks=all, idempotent) and batched, as kafka-python's."""
    request_timeout_ms = max(1000, ack_timeout_ms // 2)
    config: dict[str, Any] = {
        "bootstrap.servers": ",".join(bootstrap_servers),
        "acks": "all",
        "enable.idempotence": True,
        "compression.type": "lz4",
        "linger.ms": 5,
        "batch.size": 256 * 1024,
        # Room for every record the server can hold in flight (16 threads x 10,000-event
        # batches per worker, and more): a full queue would make a batch's records wait their
        # turn one by one (_send_and_wait).
        "queue.buffering.max.messages": 1_000_000,
        "request.timeout.ms": request_timeout_ms,
        # librdkafka gives up on a record this long after produce() (its timeout scan runs
        # about once a second): no longer than the request waits, so it does not go on
        # retrying a record its request answered 503 for. One in flight may still be written.
        "message.timeout.ms": ack_timeout_ms,
        "reconnect.backoff.ms": 50,
        "reconnect.backoff.max.ms": 1000,
        "client.id": f"orderlog-ingest-{os.getpid()}",
        # librdkafka's own log lines (a refused connection, ...) through Python's logging,
        # as gunicorn shows them, instead of raw lines on stderr.
        "logger": logging.getLogger("ingest_api.librdkafka"),
    }
    config.update(overrides)
    config["linger.ms"] = min(config["linger.ms"], ack_timeout_ms)
    return config


class _Waiter:
    """The delivery reports of one request's records."""

    def __init__(self, expected: int):
        self.pending = expected
        self.error: KafkaError | None = None
        self.done = threading.Event()
        self._lock = threading.Lock()

    def delivered(self, error: KafkaError | None, _message: object) -> None:
        with self._lock:
            self.pending -= 1
            if error is not None and self.error is None:
                self.error = error
            if self.pending <= 0 or error is not None:
                self.done.set()


class ConfluentProducer:
    """Sends records to one topic and waits until Kafka has every one of them."""

    def __init__(self, topic: str, config: dict[str, Any], ack_timeout_s: float):
        self.topic = topic
        self.config = config
        self.ack_timeout_s = ack_timeout_s
        self._producer: LibrdkafkaProducer | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()
        self._fatal: LibrdkafkaProducer | None = None
        self._all_down_since: float | None = None
        self._last_failure = 0.0
        self._probing = False
        # Why librdkafka cannot use the brokers (a refused SASL login, an untrusted
        # certificate), as it last said: a failure names it instead of a bare timeout.
        self._refusal: str | None = None
        self._poller: threading.Thread | None = None

    def _get(self) -> LibrdkafkaProducer:
        producer = self._producer
        if producer is not None and self._pid == os.getpid() and producer is not self._fatal:
            return producer
        with self._lock:
            producer = self._producer
            if producer is not None and self._pid == os.getpid() and producer is not self._fatal:
                return producer
            # A producer inherited through fork() belongs to the parent: never use it.
            if producer is not None and self._pid == os.getpid():
                log.warning("replacing the Kafka producer after a fatal error")
                threading.Thread(target=_close_quietly, args=(producer, self.ack_timeout_s), daemon=True).start()
            self._producer = None
            try:
                producer = LibrdkafkaProducer({**self.config, "error_cb": self._on_error})
            except KafkaException as exc:  # a setting librdkafka refuses
                raise KafkaUnavailable(f"Kafka is unavailable ({_describe(exc)})") from exc
            self._producer, self._pid, self._all_down_since = producer, os.getpid(), None
            self._poller = threading.Thread(target=self._poll, args=(producer,), name="kafka-poll", daemon=True)
            self._poller.start()
            return producer

    def _poll(self, producer: LibrdkafkaProducer) -> None:
        """Serve the delivery callbacks until the producer is replaced or closed."""
        while self._producer is producer:
            producer.poll(POLL_INTERVAL_S)

    def _on_error(self, error: KafkaError) -> None:
        if error.fatal():
            log.warning("the Kafka producer hit a fatal error: %s", error.str())
            self._fatal = self._producer
        elif error.code() == KafkaError._ALL_BROKERS_DOWN:
            self._all_down_since = self._all_down_since or time.monotonic()
        elif error.code() in REFUSALS:
            self._refusal = f"KafkaError: {error.str()}"

    def send_all(self, records: Sequence[Record]) -> None:
        """Produce (key, value) records; return only when Kafka acknowledged all of them.

        Raises KafkaUnavailable when any record is not acknowledged within the timeout.
        """
        producer = self._get()
        probing = self._admit()
        try:
            self._send_and_wait(producer, records)
        except KafkaUnavailable:
            self._last_failure = time.monotonic()
            raise
        finally:
            if probing:
                self._probing = False
        self._all_down_since = None

    def _admit(self) -> bool:
        """While every broker is down, one request at a time (and not within a second of the
        last failure) waits to find out whether Kafka is back; the others are refused at once.
        True for that one."""
        if self._all_down_since is None:
            return False
        with self._lock:
            if self._probing or time.monotonic() - self._last_failure < DOWN_PROBE_INTERVAL_S:
                raise KafkaUnavailable("Kafka is unavailable (all brokers are down)")
            self._probing = True
            return True

    def _send_and_wait(self, producer: LibrdkafkaProducer, records: Sequence[Record]) -> None:
        deadline = time.monotonic() + self.ack_timeout_s
        waiter = _Waiter(len(records))
        # One call for the request's records (librdkafka partitions each by its key, as
        # produce() does): a third less CPU per record than a produce() call each.
        messages = [{"key": key, "value": value} for key, value in records]
        try:
            if producer.produce_batch(self.topic, messages, on_delivery=waiter.delivered) < len(messages):
                self._produce_refused(producer, messages, waiter, deadline)
        except KafkaException as exc:
            raise KafkaUnavailable(f"Kafka did not acknowledge the records ({_describe(exc)})") from exc
        if not waiter.done.wait(max(0.0, deadline - time.monotonic())):
            raise KafkaUnavailable(
                f"Kafka did not acknowledge the records ({self._refusal or 'KafkaTimeoutError'}: {waiter.pending} of "
                f"{len(records)} not acknowledged within {self.ack_timeout_s:g} s)")
        if waiter.error is not None:
            raise KafkaUnavailable(f"Kafka did not acknowledge the records (KafkaError: {waiter.error.str()})")

    def _produce_refused(self, producer: LibrdkafkaProducer, messages: list[dict[str, Any]], waiter: _Waiter,
                         deadline: float) -> None:
        """The records produce_batch did not queue (each carries its '_error'; no delivery
        report will come for it): a full queue is waited out, record by record, in order;
        any other refusal fails the request."""
        for message in messages:
            error = message.get("_error")
            if error is None:
                continue
            if error.code() != KafkaError._QUEUE_FULL:
                raise KafkaException(error)
            self._produce(producer, message["key"], message["value"], waiter, deadline)

    def _produce(self, producer: LibrdkafkaProducer, key: bytes, value: bytes, waiter: _Waiter,
                 deadline: float) -> None:
        while True:
            try:
                producer.produce(self.topic, value=value, key=key, on_delivery=waiter.delivered)
                return
            except BufferError:  # librdkafka's queue is full: wait for deliveries to free it
                if time.monotonic() >= deadline:
                    raise KafkaException(KafkaError(KafkaError._QUEUE_FULL)) from None
                time.sleep(0.005)

    def reachable(self, timeout_s: float = 2.0) -> tuple[bool, str]:
        """Whether a broker answers a metadata request now and has the topic (librdkafka
        asks the cluster; it does not answer from its cache), and why not."""
        try:
            metadata = self._get().list_topics(topic=self.topic, timeout=timeout_s)
        except (KafkaException, KafkaUnavailable) as exc:
            return False, f"metadata request failed ({self._refusal or _describe(exc)})"
        self._refusal = None
        error = metadata.topics[self.topic].error if self.topic in metadata.topics else None
        if error is not None:
            return False, f"metadata request failed (KafkaError: {error.str()}: {self.topic})"
        return True, "ok"

    def close(self, timeout_s: float | None = None) -> None:
        """Flush what is buffered and close (used at worker exit)."""
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None and self._pid == os.getpid():
            _close_quietly(producer, self.ack_timeout_s if timeout_s is None else timeout_s)
            # Its polling thread ends within one poll: after close() nothing of it logs.
            if self._poller is not None and self._poller is not threading.current_thread():
                self._poller.join(POLL_INTERVAL_S * 10)


def _close_quietly(producer: LibrdkafkaProducer, timeout_s: float) -> None:
    try:
        producer.flush(timeout_s)
    except Exception as exc:  # noqa: BLE001 - closing must not hurt a request or the worker's exit
        log.warning("the Kafka producer did not flush: %s", _describe(exc))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return f"KafkaError: {exc.args[0].str()}"
    text = str(exc)
    name = type(exc).__name__
    return text if name in text else f"{name}: {text}"
