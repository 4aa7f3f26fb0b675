"""The ingest API against the real broker: what is acknowledged is in Kafka, exactly.

Each test gets a fresh topic (the ``kafka_topic`` fixture) and reads back what the API
produced, so the assertions are about the records Kafka really holds.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone

import hypothesis
import jsonschema_rs
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from ingest_api import create_app

pytestmark = pytest.mark.integration

GOOD = {"user_id": "u-1", "timestamp": "2025-05-31T12:34:56+09:00", "menu_type": "japanese"}
JST = timezone(timedelta(hours=9))


@pytest.fixture
def app(settings, kafka_topic, kafka_client):
    return create_app(settings.replace(kafka_topic=kafka_topic, kafka_client=kafka_client))


@pytest.fixture
def client(app):
    return app.test_client()


def consume(settings, topic: str, expected: int, timeout_s: float = 30) -> list[tuple[str, dict]]:
    """Every record of the topic as (key, value): read until ``expected``, then a little
    longer, because a record more than expected would be a bug too."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic, bootstrap_servers=settings.kafka.bootstrap_list, auto_offset_reset="earliest", enable_auto_commit=False
    )
    records: list[tuple[str, dict]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and len(records) < expected:
            records.extend(_decoded(consumer.poll(timeout_ms=500)))
        records.extend(_decoded(consumer.poll(timeout_ms=1500)))
    finally:
        consumer.close()
    return records


def _decoded(batch: dict) -> list[tuple[str, dict]]:
    return [(m.key.decode(), json.loads(m.value)) for messages in batch.values() for m in messages]


def test_a_posted_event_is_in_kafka_normalized_and_keyed_by_user(client, settings, kafka_topic):
    before = datetime.now(UTC)
    response = client.post("/api/log", json={**GOOD, "menu_type": "和食", "user_id": "ユーザー1"})
    after = datetime.now(UTC)
    assert response.status_code == 202
    order_id = response.json["order_id"]
    assert response.json == {"status": "accepted", "order_id": order_id} and len(order_id) == 32

    [(key, value)] = consume(settings, kafka_topic, 1)
    received_at = datetime.fromisoformat(value.pop("received_at"))
    assert key == "ユーザー1"
    assert value == {
        "order_id": order_id,
        "user_id": "ユーザー1",
        "menu_type": "japanese",
        "timestamp": "2025-05-31T12:34:56.000+09:00",
    }
    assert before - timedelta(milliseconds=1) <= received_at <= after and received_at.utcoffset() == timedelta(0)


def test_a_client_order_id_and_epoch_timestamp_are_kept(client, settings, kafka_topic):
    event = {"user_id": "u-9", "timestamp": 1748662496123, "menu_type": "Western", "order_id": "shop-7:42"}
    response = client.post("/api/log", json=event)
    assert response.json == {"status": "accepted", "order_id": "shop-7:42"}
    [(key, value)] = consume(settings, kafka_topic, 1)
    value.pop("received_at")
    assert (key, value) == (
        "u-9",
        {"order_id": "shop-7:42", "user_id": "u-9", "menu_type": "western",
         "timestamp": "2025-05-31T03:34:56.123+00:00"},
    )


def _sent_time(seconds: int, iso: bool) -> int | str:
    return datetime.fromtimestamp(seconds, JST).isoformat(timespec="milliseconds") if iso else seconds


# ISO timestamps: the fast path (ingest_api/fast_batch.py); epoch numbers: the careful path.
@pytest.mark.parametrize("iso", [True, False], ids=["iso", "epoch"])
@pytest.mark.parametrize("as_ndjson", [False, True], ids=["json-array", "ndjson"])
def test_a_batch_arrives_whole_with_ids_in_request_order(client, settings, kafka_topic, as_ndjson, iso):
    batch = [
        {"user_id": f"u-{n % 37}", "timestamp": _sent_time(1748662496 + n, iso),
         "menu_type": ("japanese", "洋食")[n % 2]}
        for n in range(1000)
    ]
    if as_ndjson:
        body = "\n".join(json.dumps(e, ensure_ascii=False) for e in batch) + "\n"
        response = client.post("/api/logs", data=body.encode(), content_type="application/x-ndjson")
    else:
        response = client.post("/api/logs", json=batch)
    assert response.status_code == 202
    order_ids = response.json["order_ids"]
    assert response.json["count"] == 1000 and len(set(order_ids)) == 1000

    records = consume(settings, kafka_topic, 1000)
    assert len(records) == 1000
    by_id = {value["order_id"]: (key, value) for key, value in records}
    assert set(by_id) == set(order_ids)
    for order_id, event in zip(order_ids, batch, strict=True):
        key, value = by_id[order_id]
        assert key == event["user_id"] == value["user_id"]
        assert value["menu_type"] == ("western" if event["menu_type"] == "洋食" else "japanese")
        # The canonical form: the offset as sent (UTC for epoch input), milliseconds.
        sent = event["timestamp"]
        canonical = sent if iso else datetime.fromtimestamp(sent, UTC).isoformat(timespec="milliseconds")
        assert value["timestamp"] == canonical
        assert datetime.fromisoformat(value["received_at"]).utcoffset() == timedelta(0)
    # one user's orders stay in the order they were sent (same key -> same partition)
    for user in ("u-0", "u-5"):
        sent = [oid for oid, e in zip(order_ids, batch, strict=True) if e["user_id"] == user]
        assert [v["order_id"] for k, v in records if k == user] == sent


def test_records_a_full_producer_queue_refuses_wait_their_turn_in_order(settings, kafka_topic):
    """produce_batch queues what fits; the rest (librdkafka's queue full) are produced one by
    one as deliveries free room: every record acknowledged once, each user's in order."""
    from ingest_api.confluent_backend import ConfluentProducer, confluent_config

    config = confluent_config(settings.kafka.bootstrap_list, 10_000, **{"queue.buffering.max.messages": 100})
    producer = ConfluentProducer(kafka_topic, config, ack_timeout_s=10.0)
    records = [(f"u-{n % 7}".encode(), json.dumps({"n": n}).encode()) for n in range(1000)]
    try:
        producer.send_all(records)
    finally:
        producer.close()
    got = consume(settings, kafka_topic, 1000)
    assert sorted(value["n"] for _, value in got) == list(range(1000))
    for user in range(7):
        assert [v["n"] for k, v in got if k == f"u-{user}"] == list(range(user, 1000, 7))


def test_an_invalid_batch_produces_nothing(client, settings, kafka_topic):
    bad_batch = [GOOD] * 50 + [{**GOOD, "menu_type": "chinese"}] + [GOOD] * 50
    response = client.post("/api/logs", json=bad_batch)
    assert response.status_code == 400
    assert response.json["errors"] == [
        {"index": 50, "field": "menu_type", "reason": "must be 'japanese' or 'western' (or 和食 / 洋食)"}
    ]
    marker = client.post("/api/log", json={**GOOD, "order_id": "marker"})
    assert marker.status_code == 202
    assert [v["order_id"] for _, v in consume(settings, kafka_topic, 1)] == ["marker"]


def test_readyz_reports_kafka_reachable(client, kafka_topic):
    assert (client.get("/healthz").status_code, client.get("/healthz").json) == (200, {"status": "ok"})
    response = client.get("/readyz")
    assert (response.status_code, response.json) == (
        200, {"status": "ok", "kafka": "reachable", "topic": kafka_topic}
    )


MISSING_TOPIC = {
    "kafka-python": ("KafkaTimeoutError: Failed to update metadata after 1.5 secs.",
                     "metadata request failed ([Error 3] UnknownTopicOrPartitionError: no-such-topic-ingest)"),
    "confluent-kafka": ("KafkaTimeoutError: 1 of 1 not acknowledged within 3 s",
                        "metadata request failed (KafkaError: Broker: Unknown topic or partition: "
                        "no-such-topic-ingest)"),
}


def test_a_missing_topic_is_unavailable_not_accepted(settings, kafka_client):
    client = create_app(settings.replace(kafka_topic="no-such-topic-ingest", ingest_ack_timeout_ms=3000,
                                         kafka_client=kafka_client)).test_client()
    response = client.post("/api/log", json=GOOD)
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    reason, health_error = MISSING_TOPIC[kafka_client]
    assert response.json["error"] == (
        f"Kafka did not acknowledge the records ({reason}); "
        "nothing was acknowledged, but some events may still reach Kafka: retry later with these order_ids, "
        "which counts each event once"
    )
    assert len(response.json["order_ids"]) == 1
    health = client.get("/readyz")
    assert health.status_code == 503
    assert health.json["error"] == f"Kafka at {settings.kafka.bootstrap_servers}: {health_error}"


# --- the OpenAPI document matches the app ---------------------------------------------------


def test_every_route_of_the_app_is_in_the_openapi_document(app, client):
    document = client.get("/openapi.json").json
    assert document["openapi"].startswith("3.")
    routes = {
        (rule.rule, method.lower())
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    documented = {(path, method) for path, item in document["paths"].items() for method in item}
    assert routes == documented


def _validator(document: dict, schema_name: str) -> jsonschema_rs.Validator:
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": document["components"]}
    return jsonschema_rs.validator_for(schema)


def test_responses_validate_against_the_document(client):
    document = client.get("/openapi.json").json
    cases = [
        ("/api/log", GOOD, 202),
        ("/api/logs", [GOOD, GOOD], 202),
        ("/api/log", {**GOOD, "x": 1}, 400),
        ("/api/logs", [GOOD, {}], 400),
    ]
    for path, body, status in cases:
        response = client.post(path, json=body)
        assert response.status_code == status
        declared = document["paths"][path]["post"]["responses"][str(status)]
        ref = declared["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
        _validator(document, ref).validate(response.json)
    _validator(document, "Health").validate(client.get("/readyz").json)
    _validator(document, "Alive").validate(client.get("/healthz").json)
    # the request schema accepts what the API accepts
    _validator(document, "OrderEvent").validate(GOOD)
    assert not _validator(document, "OrderEvent").is_valid({**GOOD, "extra": 1})


# --- fuzzing: no generated request gets a 5xx while Kafka is up --------------------------------


@schemathesis.serializer("application/x-ndjson")
def _ndjson(ctx, value) -> bytes:
    """What schemathesis generates for the NDJSON body (the Batch schema), one event a line."""
    lines = value if isinstance(value, list) else [value]
    return "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines).encode()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_schemathesis_generated_requests_never_get_5xx_and_match_the_document(app, mode):
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    statuses: Counter[tuple[str, str, int]] = Counter()
    checks = [
        not_a_server_error, status_code_conformance, content_type_conformance,
        response_schema_conformance, response_headers_conformance,
    ]
    for result in schema.get_all_operations():
        operation = result.ok()
        # a GET without parameters has no invalid form to generate
        if mode == GenerationMode.POSITIVE or operation.method.upper() == "POST":
            _fuzz(operation, mode, checks, statuses)
    assert statuses and all(status < 500 for *_, status in statuses)
    # Both endpoints, and both kinds of batch body, were sent.
    sent = {(label, media_type) for label, media_type, _ in statuses}
    assert {("POST /api/log", "application/json"), ("POST /api/logs", "application/json"),
            ("POST /api/logs", "application/x-ndjson")} <= sent


def _fuzz(operation, mode, checks, statuses: Counter) -> None:
    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case):
        response = case.call()
        statuses[(operation.label, case.media_type or "", response.status_code)] += 1
        case.validate_response(response, checks=checks)

    run()


timestamps = st.one_of(
    st.datetimes(
        min_value=datetime(1990, 1, 1), max_value=datetime(2030, 1, 1),
        timezones=st.sampled_from([UTC, datetime.now().astimezone().tzinfo]),
    ).map(lambda d: d.isoformat()),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.integers(min_value=10**300, max_value=10**330),
    st.floats(allow_nan=False),
    st.text(max_size=40),
)
events = st.fixed_dictionaries(
    {
        "user_id": st.one_of(st.text(max_size=140), st.integers(), st.none()),
        "timestamp": timestamps,
        "menu_type": st.one_of(
            st.sampled_from(["japanese", "WESTERN", "和食", "洋食", "", "thai"]), st.text(max_size=10)
        ),
    },
    optional={
        "order_id": st.one_of(st.from_regex(r"[A-Za-z0-9._:-]{1,70}", fullmatch=True), st.text(max_size=5)),
        "extra": st.integers(),
    },
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
valid_events = st.fixed_dictionaries(
    {
        "user_id": st.text(st.characters(codec="utf-8", categories=["L", "N", "P"]), min_size=1, max_size=20),
        "timestamp": st.integers(min_value=946_684_800, max_value=1_748_662_496),
        "menu_type": st.sampled_from(["japanese", "Western", "和食", "洋食"]),
    }
)
bodies = st.one_of(
    valid_events.map(lambda e: json.dumps(e).encode()),
    st.lists(valid_events, min_size=1, max_size=5).map(lambda b: json.dumps(b).encode()),
    st.lists(valid_events, min_size=1, max_size=5).map(lambda b: "\n".join(json.dumps(e) for e in b).encode()),
    events.map(lambda e: json.dumps(e).encode()),
    st.lists(events, min_size=1, max_size=5).map(lambda b: json.dumps(b).encode()),
    st.lists(events, min_size=1, max_size=5).map(lambda b: "\n".join(json.dumps(e) for e in b).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=300),
)
# What a header can carry: latin-1 without control characters (WSGI decodes headers as latin-1).
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=40)
content_types = st.one_of(
    st.sampled_from(["application/json", "application/x-ndjson"]),
    st.sampled_from(["application/json", "application/x-ndjson", "text/plain", "", "multipart/form-data",
                     "application/x-www-form-urlencoded", "application/json; charset=utf-8"]),
    st.builds("{}; charset={}".format, st.sampled_from(["application/json", "application/x-ndjson"]),
              st.sampled_from(["UTF-8", "utf8", "latin-1", "utf-16", '"utf-8"', ""]) | header_text),
    header_text,
)
headers = st.dictionaries(
    st.sampled_from(["Authorization", "Transfer-Encoding", "Content-Encoding", "Expect", "Accept", "Host",
                     "X-Forwarded-For", "Cookie", "X-Anything"]),
    header_text | st.sampled_from(["chunked", "gzip", "Bearer s3cret", "Bearer ", "Basic Og==", "100-continue"]),
    max_size=4,
)
# Environ entries a server sets from the request line and framing: a Content-Length that
# lies (too small, too large, not a number), and the flag of a server that ends the body.
framing = st.fixed_dictionaries(
    {},
    optional={
        "CONTENT_LENGTH": st.one_of(st.integers(-5, 400).map(str), st.integers(0, 10**9).map(str), header_text),
        "wsgi.input_terminated": st.just(True),
    },
)
# What a 4xx must say, by status: the error names the problem.
PROBLEMS = {
    400: ("malformed JSON", "invalid event", "a batch must be a JSON array", "the batch is empty",
          "the request body ended before"),
    401: ("missing or wrong bearer token",),
    413: ("request body is larger than", "the batch has more than"),
    415: ("Content-Type must be", "charset must be utf-8"),
}


@pytest.fixture
def apps(app, settings, kafka_topic, kafka_client):
    """The app as configured by default, and with a bearer token required."""
    locked = create_app(settings.replace(kafka_topic=kafka_topic, ingest_api_token="s3cret", kafka_client=kafka_client))
    return {"open": app.test_client(), "token": locked.test_client()}


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(
    which=st.sampled_from(["open", "token"]),
    path=st.sampled_from(["/api/log", "/api/logs"]),
    body=bodies,
    content_type=content_types,
    extra_headers=headers,
    environ=framing,
)
def test_any_request_gets_an_answer_below_500_and_a_4xx_names_the_problem(
    apps, which, path, body, content_type, extra_headers, environ
):
    request_headers = {**extra_headers, "Content-Type": content_type} if content_type else extra_headers
    response = apps[which].post(path, data=body, headers=request_headers, environ_overrides=environ)
    hypothesis.event(f"status {response.status_code}")  # see --hypothesis-show-statistics
    assert response.status_code in (202, 400, 401, 413, 415), response.get_data(as_text=True)
    assert response.content_type == "application/json"
    if response.status_code == 202:
        assert response.json["status"] == "accepted"
        return
    error = response.json["error"]
    assert error.startswith(PROBLEMS[response.status_code]), error
    for item in response.json.get("errors", []):
        assert item["reason"] and set(item) <= {"index", "field", "reason"}
