"""The OpenAPI 3 description of the ingest API, built from the same limits the app applies."""

from __future__ import annotations

from typing import Any

from orderlog.events import (
    MAX_EVENT_BYTES,
    ORDER_ID_MAX_LENGTH,
    ORDER_ID_PATTERN,
    USER_ID_MAX_LENGTH,
)
from orderlog.openapi import RETRY_AFTER, json_response, ref


def _schemas(max_batch: int) -> dict[str, Any]:
    event = {
        "type": "object",
        "additionalProperties": False,
        "required": ["user_id", "timestamp", "menu_type"],
        "properties": {
            "user_id": {
                "type": "string", "minLength": 1, "maxLength": USER_ID_MAX_LENGTH,
                "description": "no control characters; not only whitespace",
            },
            "timestamp": {
                "description": "ISO-8601 with a UTC offset (2025-05-31T12:34:56+09:00) or epoch seconds/"
                "milliseconds (number or digit string); from 2000-01-01 to one day ahead of the server",
                "oneOf": [{"type": "string"}, {"type": "number"}],
            },
            "menu_type": {
                "type": "string",
                "description": "japanese or western (any case), or the aliases 和食 / 洋食",
            },
            "order_id": {
                "type": "string", "minLength": 1, "maxLength": ORDER_ID_MAX_LENGTH,
                "pattern": f"^{ORDER_ID_PATTERN.pattern}$",
                "description": "optional client id; retries with the same id are counted once",
            },
        },
        "example": {"user_id": "u-1", "timestamp": "2025-05-31T12:34:56+09:00", "menu_type": "japanese"},
    }
    field_error = {
        "type": "object",
        "required": ["field", "reason"],
        "properties": {
            "index": {"type": "integer", "minimum": 0, "description": "position in the batch (batches only)"},
            "field": {"type": "string", "description": "the field, or empty for the event as a whole"},
            "reason": {"type": "string"},
        },
    }
    return {
        "OrderEvent": event,
        "Batch": {"type": "array", "minItems": 1, "maxItems": max_batch, "items": ref("OrderEvent")},
        "Accepted": {
            "type": "object", "required": ["status", "order_id"],
            "properties": {"status": {"type": "string", "enum": ["accepted"]}, "order_id": {"type": "string"}},
        },
        "BatchAccepted": {
            "type": "object", "required": ["status", "count", "order_ids"],
            "properties": {
                "status": {"type": "string", "enum": ["accepted"]},
                "count": {"type": "integer", "minimum": 1},
                "order_ids": {"type": "array", "items": {"type": "string"}, "description": "in request order"},
            },
        },
        "Error": {
            "type": "object", "required": ["error"],
            "properties": {
                "error": {"type": "string"},
                "errors": {"type": "array", "items": ref("FieldError")},
                "error_count": {"type": "integer", "description": "set when only the first errors are listed"},
                "order_ids": {
                    "type": "array", "items": {"type": "string"},
                    "description": "503 only: the ids the events were given; retry with them to stay idempotent",
                },
            },
        },
        "FieldError": field_error,
        "Alive": {
            "type": "object", "required": ["status"], "properties": {"status": {"enum": ["ok"]}},
        },
        "Health": {
            "type": "object", "required": ["status", "kafka", "topic"],
            "properties": {
                "status": {"enum": ["ok", "unavailable"]},
                "kafka": {"enum": ["reachable", "unreachable"]},
                "topic": {"type": "string"},
                "error": {"type": "string"},
            },
        },
    }


def _post(
    summary: str, request_content: dict[str, Any], accepted: str, auth: bool, body_limit: int, body_description: str
) -> dict:
    responses = {
        "202": json_response(ref(accepted), "Kafka acknowledged every event (acks=all)"),
        "400": json_response(ref("Error"), "malformed JSON (with where), or invalid events (each bad field and why)"),
        "413": json_response(ref("Error"), f"body over {body_limit} bytes, or more events than a batch may have"),
        "415": json_response(ref("Error"), "wrong Content-Type"),
        "503": json_response(
            ref("Error"),
            "Kafka did not acknowledge in time; nothing was acknowledged, but some events may still reach "
            "Kafka: retry with the order_ids of this answer, which is idempotent",
            RETRY_AFTER,
        ),
    }
    if auth:
        responses["401"] = json_response(ref("Error"), "missing or wrong bearer token")
    return {
        "summary": summary,
        "requestBody": {"required": True, "description": body_description, "content": request_content},
        "responses": responses,
    }


def openapi_document(*, max_batch: int, max_body_bytes: int, auth: bool) -> dict[str, Any]:
    """The document served at /openapi.json."""
    batch = ref("Batch")
    document: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {
            "title": "orderlog ingest API",
            "version": "1.0.0",
            "description": "Order events in, produced to Kafka. 202 only after Kafka acknowledged every "
            "record of the request; an invalid batch produces nothing.",
        },
        "paths": {
            "/api/log": {
                "post": _post(
                    "one order event",
                    {"application/json": {"schema": ref("OrderEvent")}},
                    "Accepted", auth, min(MAX_EVENT_BYTES, max_body_bytes),
                    f"one event, at most {min(MAX_EVENT_BYTES, max_body_bytes)} bytes",
                )
            },
            "/api/logs": {
                "post": _post(
                    f"a batch of up to {max_batch} events: a JSON array, or NDJSON (one event per line)",
                    {"application/json": {"schema": batch}, "application/x-ndjson": {"schema": batch}},
                    "BatchAccepted", auth, max_body_bytes,
                    f"at most {max_body_bytes} bytes. application/json: an array of events. "
                    "application/x-ndjson: the same events, each a JSON object on its own line (blank lines "
                    f"are ignored). Each event (array element or line) is at most {MAX_EVENT_BYTES} bytes.",
                )
            },
            "/healthz": {
                "get": {
                    "summary": "liveness: the process answers (asks nothing of Kafka; never needs the token)",
                    "responses": {"200": json_response(ref("Alive"), "the process is alive")},
                }
            },
            "/readyz": {
                "get": {
                    "summary": "readiness: whether Kafka answers a metadata request for the topic (never needs "
                    "the token)",
                    "responses": {
                        "200": json_response(ref("Health"), "Kafka is reachable"),
                        "503": json_response(ref("Health"), "Kafka is unreachable", RETRY_AFTER),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics, summed over the server's workers (never needs the token)",
                    "responses": {"200": {"description": "the Prometheus text format",
                                          "content": {"text/plain": {"schema": {"type": "string"}}}}},
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "this document",
                    "responses": {"200": {"description": "OpenAPI 3", "content": {"application/json": {}}}},
                }
            },
        },
        "components": {"schemas": _schemas(max_batch)},
    }
    if auth:
        document["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        for path in ("/api/log", "/api/logs"):
            document["paths"][path]["post"]["security"] = [{"bearer": []}]
    return document
