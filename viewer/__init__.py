"""The viewer: Flask + Plotly pages, a JSON API and CSV export over what the aggregate
job wrote to Cassandra.

    gunicorn -c viewer/gunicorn.conf.py 'viewer:create_app()'     # make viewer

Configuration: the ORDERLOG_* settings of orderlog.config (Cassandra, the business time
zone, and the viewer's section: bind address, basic auth, cache), kept whole in
``app.config["SETTINGS"]``.
"""

from __future__ import annotations

from flask import Flask, request

from orderlog.config import Settings, load_settings


def create_app(settings: Settings | None = None) -> Flask:
    """The app on ``settings`` (the process's own by default)."""
    app = Flask(__name__)
    app.config.from_mapping(
        SETTINGS=settings or load_settings(),
        # The viewer only reads; nothing it serves takes a body.
        MAX_CONTENT_LENGTH=16 * 1024,
    )
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.json.sort_keys = False  # type: ignore[attr-defined]

    # Here, not at the top: `import viewer.params` (tests, tools) must not load every
    # blueprint and Plotly with it.
    from viewer import api, assets, auth, db, errors, health, i18n, metrics, pages, response_cache, status
    from viewer.params import UserIdConverter, check_single

    # User ids may hold slashes, doubled or leading ones too: they are matched whole, and
    # no path is redirected from '//' to '/' (which, under /users/, is another user).
    app.url_map.merge_slashes = False
    app.url_map.converters["user_id"] = UserIdConverter
    db.init_app(app)
    metrics.init_app(app)
    auth.init_app(app)
    app.before_request(lambda: check_single(request.args))
    errors.init_app(app)
    i18n.init_app(app)
    response_cache.init_app(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(assets.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(status.bp)
    return app
