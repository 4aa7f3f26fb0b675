"""The ingest API: validated order events into Kafka.

``create_app()`` builds the Flask application (served by gunicorn with
``ingest_api/gunicorn.conf.py``); ``create_app({...})`` overrides configuration in tests.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException, InternalServerError

from ingest_api import producer
from ingest_api.routes import RequestProblem, bp, json_http_error
from orderlog.config import load_settings

# Seconds a client is told to wait (Retry-After) when Kafka is unavailable.
DEFAULT_RETRY_AFTER_S = 5


def default_config() -> dict[str, Any]:
    """The configuration from ORDERLOG_* variables (and INGEST_API_TOKEN)."""
    settings = load_settings()
    return {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "KAFKA_TOPIC": settings.kafka_topic,
        "INGEST_MAX_BATCH": settings.ingest_max_batch,
        # Flask refuses larger bodies with 413 before they are read.
        "MAX_CONTENT_LENGTH": settings.ingest_max_body_bytes,
        "INGEST_ACK_TIMEOUT_MS": settings.ingest_ack_timeout_ms,
        "INGEST_API_TOKEN": os.environ.get("INGEST_API_TOKEN") or None,
        "INGEST_RETRY_AFTER_S": DEFAULT_RETRY_AFTER_S,
        # Extra kafka-python producer settings (tests, tuning).
        "KAFKA_PRODUCER_CONFIG": {},
    }


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.from_mapping(default_config())
    if test_config:
        app.config.from_mapping(test_config)
    app.json.sort_keys = False  # type: ignore[attr-defined]

    producer.init_app(app)
    app.register_blueprint(bp)
    app.register_error_handler(RequestProblem, lambda p: (jsonify(p.body), p.status, p.headers))
    app.register_error_handler(HTTPException, json_http_error)
    app.register_error_handler(InternalServerError, _internal_error)
    return app


def _internal_error(error: InternalServerError) -> tuple[Any, int]:
    return jsonify({"error": "internal error; the events were not accepted"}), 500
