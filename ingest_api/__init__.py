"""The ingest API: validated order events into Kafka.

``create_app()`` builds the Flask application (served by gunicorn with
``ingest_api/gunicorn.conf.py``); ``create_app(settings)`` runs it on given settings (tests),
kept whole in ``app.config["SETTINGS"]``.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException, InternalServerError

from ingest_api import metrics, producer
from ingest_api.routes import RequestProblem, bp, json_http_error
from orderlog.config import Settings, load_settings

# Seconds a client is told to wait (Retry-After) when Kafka is unavailable.
DEFAULT_RETRY_AFTER_S = 5


def create_app(settings: Settings | None = None, **config: Any) -> Flask:
    """The app on ``settings`` (the process's own by default). ``config`` adds Flask
    configuration that is not a setting: ``INGEST_RETRY_AFTER_S``, and
    ``KAFKA_PRODUCER_CONFIG`` (extra kafka-python producer settings: tests, tuning)."""
    settings = settings or load_settings()
    app = Flask(__name__)
    app.config.from_mapping(
        SETTINGS=settings,
        # Flask refuses larger bodies with 413 before they are read.
        MAX_CONTENT_LENGTH=settings.ingest.max_body_bytes,
        INGEST_RETRY_AFTER_S=DEFAULT_RETRY_AFTER_S,
        KAFKA_PRODUCER_CONFIG={},
        **config,
    )
    app.json.sort_keys = False  # type: ignore[attr-defined]

    producer.init_app(app)
    metrics.init_app(app)
    app.register_blueprint(bp)
    app.register_error_handler(RequestProblem, lambda p: (jsonify(p.body), p.status, p.headers))
    app.register_error_handler(HTTPException, json_http_error)
    app.register_error_handler(InternalServerError, _internal_error)
    return app


def _internal_error(error: InternalServerError) -> tuple[Any, int]:
    return jsonify({"error": "internal error; the events were not accepted"}), 500
