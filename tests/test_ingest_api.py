"""The HTTP contract of the ingest API for requests that never reach Kafka.

These are unit tests: every request here is refused before anything is produced, so the
app points at a port where nothing listens and never opens a connection.
"""

from __future__ import annotations

import json
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka.errors import KafkaError, KafkaTimeoutError

from ingest_api import create_app
from ingest_api.confluent_backend import confluent_config
from ingest_api.kafka_python_backend import kafka_python_config
from ingest_api.producer import close_app_producer
from tests.conftest import free_ports

GOOD = {"user_id": "u-1", "timestamp": "2025-05-31T12:34:56+09:00", "menu_type": "japanese"}
MENU = "must be 'japanese' or 'western' (or 和食 / 洋食)"


@pytest.fixture
def app(settings):
    (port,) = free_ports(1)
    return create_app(settings.replace(kafka_bootstrap_servers=f"127.0.0.1:{port}", kafka_topic="never-used",
                                       ingest_max_batch=5, ingest_max_body_bytes=64 * 1024))


@pytest.fixture
def client(app):
    return app.test_client()


def test_invalid_single_event_gets_400_with_field_and_reason(client):
    response = client.post("/api/log", json={**GOOD, "menu_type": "chinese", "price": 3})
    assert response.status_code == 400
    assert response.json == {
        "error": "invalid event",
        "errors": [{"field": "price", "reason": "unknown field"}, {"field": "menu_type", "reason": MENU}],
    }


def test_invalid_batch_lists_every_bad_item_by_index(client):
    batch = [GOOD, {**GOOD, "user_id": ""}, GOOD, {**GOOD, "timestamp": "2025-05-31T12:34:56"}]
    response = client.post("/api/logs", json=batch)
    assert response.status_code == 400
    assert response.json == {
        "error": "invalid event",
        "errors": [
            {"index": 1, "field": "user_id", "reason": "must not be empty"},
            {"index": 3, "field": "timestamp", "reason": "has no UTC offset (add Z or +09:00, for example)"},
        ],
    }


def test_ndjson_lines_that_are_not_json_are_reported_by_index(client):
    body = json.dumps(GOOD) + "\n\n{oops\n" + json.dumps({**GOOD, "menu_type": "x"}) + "\n"
    response = client.post("/api/logs", data=body, content_type="application/x-ndjson")
    assert response.status_code == 400
    assert response.json == {
        "error": "invalid event",
        "errors": [
            {"index": 1, "field": "", "reason": "line is not JSON "
             "(Expecting property name enclosed in double quotes: line 1 column 2 (char 1))"},
            {"index": 2, "field": "menu_type", "reason": MENU},
        ],
    }


@pytest.mark.parametrize(
    ("path", "body", "content_type", "status", "error"),
    [
        ("/api/log", "{", "application/json", 400,
         "malformed JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
        ("/api/log", "", "application/json", 400, "malformed JSON: Expecting value: line 1 column 1 (char 0)"),
        ("/api/log", b"\xff{}", "application/json", 400, "malformed JSON: the body is not UTF-8"),
        ("/api/log", '{"user_id": NaN}', "application/json", 400, "malformed JSON: NaN is not valid JSON"),
        ("/api/log", "[" * 100_000, "application/json", 413, "request body is larger than 4096 bytes"),
        ("/api/logs", "[" * 50_000, "application/json", 400, "malformed JSON: event 0 is nested too deeply"),
        ("/api/log", json.dumps(GOOD), "text/plain", 415, "Content-Type must be application/json (got text/plain)"),
        ("/api/log", json.dumps(GOOD), None, 415, "Content-Type must be application/json (got none)"),
        ("/api/log", json.dumps(GOOD), "application/x-ndjson", 415,
         "Content-Type must be application/json (got application/x-ndjson)"),
        ("/api/log", json.dumps(GOOD), "application/json; charset=latin-1", 415, "charset must be utf-8 (got latin-1)"),
        ("/api/logs", json.dumps(GOOD), "application/xml", 415,
         "Content-Type must be application/json or application/x-ndjson (got application/xml)"),
        ("/api/logs", json.dumps(GOOD), "application/json", 400, "a batch must be a JSON array of events (or NDJSON)"),
        ("/api/logs", "[]", "application/json", 400, "the batch is empty"),
        ("/api/logs", "\n\n", "application/x-ndjson", 400, "the batch is empty"),
        ("/api/logs", json.dumps([GOOD] * 6), "application/json", 413,
         "the batch has more than 5 events; at most 5 are accepted per request"),
        ("/api/logs", "\n".join([json.dumps(GOOD)] * 6), "application/x-ndjson", 413,
         "the batch has more than 5 events; at most 5 are accepted per request"),
        ("/api/logs", "[" + " " * 70_000 + "]", "application/json", 413, "request body is larger than 65536 bytes"),
        ("/api/log", json.dumps({**GOOD, "user_id": "x" * 5000}), "application/json", 413,
         "request body is larger than 4096 bytes"),
    ],
)
def test_bad_requests_get_a_clear_error(client, path, body, content_type, status, error):
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post(path, data=body, headers=headers)
    assert (response.status_code, response.json) == (status, {"error": error})
    assert response.content_type == "application/json"


def test_unknown_routes_and_methods_answer_json(client):
    response = client.get("/api/nothing")
    assert (response.status_code, response.json) == (404, {"error": "no route /api/nothing"})
    response = client.get("/api/logs")
    assert (response.status_code, response.json) == (
        405, {"error": "method GET is not allowed on /api/logs (allowed: POST)"}
    )
    assert "POST" in response.headers["Allow"]
    response = client.put("/healthz")
    assert response.status_code == 405 and response.content_type == "application/json"


@pytest.mark.parametrize(
    ("authorization", "status"),
    [
        (None, 401),
        ("Bearer wrong", 401),
        ("Bearer s3cret-but-longer", 401),
        ("Basic s3cret", 401),
        ("s3cret", 401),
        ("Bearer s3cret", 400),  # past auth: the (invalid) event is looked at
        ("bearer s3cret", 400),
    ],
)
def test_bearer_token_is_required_when_configured(settings, authorization, status):
    (port,) = free_ports(1)
    app = create_app(settings.replace(kafka_bootstrap_servers=f"127.0.0.1:{port}", ingest_api_token="s3cret"))
    headers = {"Authorization": authorization} if authorization else {}
    response = app.test_client().post("/api/log", json={}, headers=headers)
    assert response.status_code == status
    if status == 401:
        assert response.json == {"error": "missing or wrong bearer token (Authorization: Bearer <token>)"}
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="ingest"'
    # the OpenAPI document stays public and declares the scheme
    document = app.test_client().get("/openapi.json").json
    assert document["paths"]["/api/log"]["post"]["security"] == [{"bearer": []}]


def test_liveness_and_readiness_answer_without_the_token(settings):
    (port,) = free_ports(1)
    app = create_app(settings.replace(kafka_bootstrap_servers=f"127.0.0.1:{port}", ingest_api_token="s3cret"))
    client = app.test_client()
    live = client.get("/healthz")
    assert (live.status_code, live.json) == (200, {"status": "ok"})
    # past auth: readiness asks Kafka, which nothing answers on that port
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.headers["Retry-After"] == "5"
    assert "WWW-Authenticate" not in ready.headers
    document = client.get("/openapi.json").json
    assert "security" not in document["paths"]["/healthz"]["get"]
    assert "security" not in document["paths"]["/readyz"]["get"]


def test_readiness_is_503_naming_kafka_when_nothing_listens(settings, kafka_client):
    (port,) = free_ports(1)
    app = create_app(settings.replace(kafka_bootstrap_servers=f"127.0.0.1:{port}", kafka_topic="never-used",
                                      kafka_client=kafka_client))
    client = app.test_client()
    response = client.get("/readyz")
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    body = response.json
    assert {k: body[k] for k in ("status", "kafka", "topic")} == {
        "status": "unavailable", "kafka": "unreachable", "topic": "never-used"}
    # where, then the client's own words for what failed
    where = f"Kafka at 127.0.0.1:{port}: "
    assert body["error"].startswith(where) and len(body["error"]) > len(where)
    # the process itself is fine: liveness does not depend on Kafka
    assert client.get("/healthz").status_code == 200


def test_the_token_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("ORDERLOG_INGEST_API_TOKEN", "from-env")
    (port,) = free_ports(1)
    monkeypatch.setenv("ORDERLOG_KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{port}")
    client = create_app().test_client()
    assert client.post("/api/log", json={}).status_code == 401
    assert client.post("/api/log", json={}, headers={"Authorization": "Bearer from-env"}).status_code == 400


def test_limits_come_from_orderlog_settings(monkeypatch):
    monkeypatch.setenv("ORDERLOG_INGEST_MAX_BATCH", "2")
    monkeypatch.setenv("ORDERLOG_INGEST_MAX_BODY_BYTES", "1000")
    monkeypatch.setenv("ORDERLOG_KAFKA_TOPIC", "topic-from-env")
    app = create_app()
    assert (app.config["SETTINGS"].ingest.max_batch, app.config["MAX_CONTENT_LENGTH"]) == (2, 1000)
    assert app.config["SETTINGS"].kafka.topic == "topic-from-env"
    response = app.test_client().post("/api/logs", json=[GOOD] * 3)
    assert response.json == {"error": "the batch has more than 2 events; at most 2 are accepted per request"}


def test_the_producer_is_durable_and_batched():
    config = kafka_python_config(["127.0.0.1:9092"], 10_000)
    assert (config["acks"], config["enable_idempotence"]) == ("all", True)
    assert config["retries"] > 1_000_000 and config["linger_ms"] > 0 and config["compression_type"] == "lz4"
    # Kafka gives up on a record no later than the request that waits for it.
    assert config["delivery_timeout_ms"] == 10_000


def test_the_confluent_producer_has_the_same_guarantees():
    config = confluent_config(["127.0.0.1:9092", "127.0.0.1:9093"], 10_000)
    assert config["bootstrap.servers"] == "127.0.0.1:9092,127.0.0.1:9093"
    assert (config["acks"], config["enable.idempotence"], config["compression.type"]) == ("all", True, "lz4")
    assert 0 < config["linger.ms"] <= 10_000
    # librdkafka gives up on a record no later than the request that waits for it.
    assert config["message.timeout.ms"] == 10_000 and config["request.timeout.ms"] < 10_000


@pytest.mark.parametrize("client", ["confluent-kafka", "kafka-python"])
def test_the_client_setting_chooses_the_producer(settings, client):
    from ingest_api.producer import get_producer

    app = create_app(settings.replace(kafka_client=client, kafka_topic="t"))
    assert type(get_producer(app)).__name__ == {"confluent-kafka": "ConfluentProducer",
                                                "kafka-python": "KafkaPythonProducer"}[client]


class _FakeFuture:
    def __init__(self, error):
        self.error = error

    def get(self, timeout):
        if self.error:
            raise self.error


class _FakeProducer:
    """Stands in for KafkaProducer (this is a unit test): the first one fails with ``error``,
    and its close() raises as kafka-python 3.0.12's does while records are pending."""

    made: list[_FakeProducer] = []
    error: Exception | None = None

    def __init__(self, **config):
        self.close_called = threading.Event()
        self.error = _FakeProducer.error if not _FakeProducer.made else None
        _FakeProducer.made.append(self)

    def send(self, topic, key, value):
        return _FakeFuture(self.error)

    def close(self, timeout=None):
        self.close_called.set()
        if self.error:
            raise KafkaTimeoutError("Timeout waiting for future")


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (KafkaError("Cannot perform send because at least one previous idempotent request has failed"),
         "KafkaError: Cannot perform send"),
        # what a producer stuck without a producer id gives (a timeout, retriable): replaced too
        (KafkaTimeoutError("Timeout after waiting for 10 secs."), "KafkaTimeoutError: Timeout after waiting"),
    ],
    ids=["non-retriable", "timeout"],
)
def test_a_producer_is_replaced_after_a_request_it_did_not_acknowledge(settings, monkeypatch, error, reason):
    import ingest_api.kafka_python_backend as module

    monkeypatch.setattr(_FakeProducer, "made", [])
    monkeypatch.setattr(_FakeProducer, "error", error)
    monkeypatch.setattr(module, "KafkaProducer", _FakeProducer)
    client = create_app(settings.replace(kafka_topic="t", kafka_client="kafka-python")).test_client()
    failed = client.post("/api/log", json=GOOD)
    assert failed.status_code == 503 and failed.headers["Retry-After"] == "5"
    assert failed.json["error"].startswith(f"Kafka did not acknowledge the records ({reason}")
    assert client.post("/api/log", json=GOOD).status_code == 202
    assert len(_FakeProducer.made) == 2
    # the old one is closed in the background, and its close() raising harms nobody
    assert _FakeProducer.made[0].close_called.wait(timeout=10)
    assert not _FakeProducer.made[1].close_called.is_set()
    assert client.post("/api/log", json=GOOD).status_code == 202 and len(_FakeProducer.made) == 2



def test_a_confluent_producer_is_replaced_after_a_fatal_error(caplog):
    """librdkafka reports a fatal error (an idempotence violation it cannot repair) through
    error_cb; that producer will never send again, so the next request gets a new one."""
    from confluent_kafka import KafkaError as LibrdkafkaError

    from ingest_api.confluent_backend import ConfluentProducer

    (port,) = free_ports(1)
    backend = ConfluentProducer("t", confluent_config([f"127.0.0.1:{port}"], 2_000), 2.0)
    first = backend._get()
    backend._on_error(LibrdkafkaError(LibrdkafkaError._ALL_BROKERS_DOWN, "all down"))  # not fatal: kept
    assert backend._get() is first
    backend._on_error(LibrdkafkaError(LibrdkafkaError._FATAL, "idempotence broken", fatal=True))
    replacement = backend._get()
    assert replacement is not first and backend._get() is replacement
    assert "replacing the Kafka producer after a fatal error" in caplog.text
    backend.close(timeout_s=0)

# --- a batch is counted and bounded before it is decoded ---------------------------------------

SIXTEEN_MIB = 16 * 1024 * 1024


def _sixteen_mib_of(element: bytes, separator: bytes, head: bytes = b"", tail: bytes = b"") -> bytes:
    """As many copies of element as a 16 MiB body holds, between head and tail."""
    count = (SIXTEEN_MIB - len(head) - len(tail) + len(separator)) // (len(element) + len(separator))
    return head + element + (separator + element) * (count - 1) + tail


@pytest.mark.parametrize(
    ("content_type", "element", "separator", "head", "tail"),
    [
        ("application/x-ndjson", b"{}", b"\n", b"", b"\n"),
        ("application/json", b"{}", b",", b"[", b"]"),
        ("application/json", b"[]", b",", b"[", b"]"),
        ("application/json", b"0", b",", b"[", b"]"),
    ],
    ids=["ndjson-lines", "array-of-objects", "array-of-arrays", "array-of-zeros"],
)
def test_a_16_mib_batch_of_tiny_events_is_refused_without_decoding_it_whole(
    settings, content_type: str, element: bytes, separator: bytes, head: bytes, tail: bytes
) -> None:
    import tracemalloc

    (port,) = free_ports(1)
    client = create_app(settings.replace(kafka_bootstrap_servers=f"127.0.0.1:{port}", ingest_max_batch=10_000,
                                         ingest_max_body_bytes=SIXTEEN_MIB)).test_client()
    body = _sixteen_mib_of(element, separator, head, tail)
    assert len(body) <= SIXTEEN_MIB and body.count(element) > 2_000_000
    tracemalloc.start()
    try:
        response = client.post("/api/logs", data=body, content_type=content_type)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (response.status_code, response.json) == (
        413, {"error": "the batch has more than 10000 events; at most 10000 are accepted per request"}
    )
    # Reading the body takes about two copies of it; decoding it whole took ten and more.
    assert peak < 3 * len(body), f"peak {peak / 2**20:.0f} MiB for a {len(body) / 2**20:.0f} MiB body"


# --- timestamps no float can hold are a 400, not a 500 -------------------------------------------

OUT_OF_RANGE = {"field": "timestamp", "reason": "is out of range"}


@pytest.mark.parametrize(
    "timestamp", [int("1" * 330), "1" * 330, -int("9" * 330), 1e308],
    ids=["330-digit-integer", "330-digit-string", "negative-330-digit-integer", "1e308"],
)
def test_a_timestamp_of_330_digits_is_a_400_naming_it(client, timestamp):
    response = client.post("/api/log", json={**GOOD, "timestamp": timestamp})
    assert (response.status_code, response.json) == (400, {"error": "invalid event", "errors": [OUT_OF_RANGE]})


@pytest.mark.parametrize("as_ndjson", [False, True], ids=["json-array", "ndjson"])
def test_a_timestamp_of_330_digits_in_a_batch_is_a_400_naming_its_index(client, as_ndjson):
    batch = [GOOD, {**GOOD, "timestamp": int("1" * 330)}, GOOD]
    if as_ndjson:
        body, content_type = "\n".join(json.dumps(e) for e in batch), "application/x-ndjson"
    else:
        body, content_type = json.dumps(batch), "application/json"
    response = client.post("/api/logs", data=body, content_type=content_type)
    assert (response.status_code, response.json) == (
        400, {"error": "invalid event", "errors": [{"index": 1, **OUT_OF_RANGE}]}
    )


def test_a_content_length_that_lies_is_a_400_saying_so(client):
    body = json.dumps([GOOD])
    response = client.post("/api/logs", data=body, content_type="application/json",
                           environ_overrides={"CONTENT_LENGTH": str(len(body) + 50)})
    assert (response.status_code, response.json) == (
        400, {"error": f"the request body ended before its Content-Length ({len(body) + 50} bytes)"}
    )
    # Shorter than the body: only that much is read, which here is not JSON.
    response = client.post("/api/logs", data=body, content_type="application/json",
                           environ_overrides={"CONTENT_LENGTH": "3"})
    assert (response.status_code, response.json["error"]) == (
        400, "malformed JSON: Unterminated string starting at: line 1 column 3 (byte 2)"
    )


def _sample(client, name: str, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = client.get("/metrics").get_data(as_text=True)
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == name and s.labels == labels)


def test_kafka_unacknowledged_requests_are_counted_as_failures_and_refused_events(settings, kafka_client):
    (port,) = free_ports(1)
    app = create_app(settings.replace(kafka_bootstrap_servers=f"127.0.0.1:{port}", ingest_ack_timeout_ms=1000,
                                      kafka_client=kafka_client))
    client = app.test_client()
    # one process, no gunicorn: the default registry, shared by the apps of this test run
    failures = _sample(client, "orderlog_ingest_kafka_failures_total")
    refused = _sample(client, "orderlog_ingest_events_refused_total", reason="kafka_unavailable")
    requests = _sample(client, "orderlog_ingest_requests_refused_total", reason="kafka_unavailable")
    assert client.post("/api/logs", json=[GOOD, GOOD]).status_code == 503
    assert _sample(client, "orderlog_ingest_kafka_failures_total") == failures + 1
    assert _sample(client, "orderlog_ingest_events_refused_total", reason="kafka_unavailable") == refused + 2
    assert _sample(client, "orderlog_ingest_requests_refused_total", reason="kafka_unavailable") == requests + 1
    close_app_producer(app)


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(path=st.sampled_from(["/", "/healthz", "/api/log", "/openapi.json", "/nope"]),
       host=st.one_of(st.sampled_from(["x" * 64, "a..b", ".", "[::1", "127.0.0.1:99999"]),
                      st.text(st.characters(min_codepoint=0x21, max_codepoint=0xFF), min_size=1, max_size=80)))
def test_any_host_header_gets_no_5xx(app, path, host):
    response = app.test_client().get(path, headers={"Host": host})
    assert response.status_code < 500, response.get_data(as_text=True)[:300]
    if response.status_code >= 400:
        assert response.get_json()["error"]
