"""The viewer: Flask + Plotly pages, a JSON API and CSV export over what the aggregate
job wrote to Cassandra.

    gunicorn -c viewer/gunicorn.conf.py 'viewer:create_app()'     # make viewer

Configuration: the ORDERLOG_* variables of orderlog.config (Cassandra hosts, keyspace,
business time zone, viewer host and port), plus VIEWER_USER / VIEWER_PASSWORD (HTTP
basic auth for everything when both are set) and VIEWER_CACHE_SECONDS (how long the
"latest aggregated date" is remembered, default 5).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from flask import Flask, request

from orderlog.config import ConfigError, load_settings


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.from_mapping(
        SETTINGS=None,
        CACHE_SECONDS=float(os.environ.get("VIEWER_CACHE_SECONDS", "5")),
        VIEWER_USER=os.environ.get("VIEWER_USER", ""),
        VIEWER_PASSWORD=os.environ.get("VIEWER_PASSWORD", ""),
        # The viewer only reads; nothing it serves takes a body.
        MAX_CONTENT_LENGTH=16 * 1024,
    )
    if test_config:
        app.config.update(test_config)
    if app.config["SETTINGS"] is None:
        app.config["SETTINGS"] = load_settings()
    if bool(app.config["VIEWER_USER"]) != bool(app.config["VIEWER_PASSWORD"]):
        raise ConfigError("set both VIEWER_USER and VIEWER_PASSWORD for basic auth, or neither")
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.json.sort_keys = False  # type: ignore[attr-defined]

    from viewer import api, assets, auth, db, errors, pages
    from viewer.params import UserIdConverter, check_single

    # User ids may hold slashes, doubled or leading ones too: they are matched whole, and
    # no path is redirected from '//' to '/' (which, under /users/, is another user).
    app.url_map.merge_slashes = False
    app.url_map.converters["user_id"] = UserIdConverter
    db.init_app(app)
    auth.init_app(app)
    app.before_request(lambda: check_single(request.args))
    errors.init_app(app)
    app.register_blueprint(assets.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(pages.bp)
    return app
