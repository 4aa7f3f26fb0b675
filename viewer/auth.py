"""Optional HTTP basic auth for the whole viewer: segment lists are customer data. When
ORDERLOG_VIEWER_USER and ORDERLOG_VIEWER_PASSWORD are set, every page, API call and asset requires them;
only the probes (/healthz, /readyz) stay open: they tell nothing about customers."""

from __future__ import annotations

import hmac

from flask import Flask, Response, current_app, request
from werkzeug.datastructures import Authorization

from viewer.health import PUBLIC_ENDPOINTS


def credentials_ok(auth: Authorization | None, user: str, password: str) -> bool:
    """Whether a request's Authorization holds these basic-auth credentials."""
    if auth is None or auth.type != "basic":
        return False
    # Compare both in constant time, always both, so timing says nothing.
    ok_user = hmac.compare_digest((auth.username or "").encode(), user.encode())
    ok_password = hmac.compare_digest((auth.password or "").encode(), password.encode())
    return ok_user and ok_password


def _require_auth() -> Response | None:
    viewer = current_app.config["SETTINGS"].viewer
    user, password = viewer.user, viewer.password
    if not user or request.endpoint in PUBLIC_ENDPOINTS or credentials_ok(request.authorization, user, password):
        return None
    response = current_app.json.response({"error": "authentication required"})
    response.status_code = 401
    response.headers["WWW-Authenticate"] = 'Basic realm="orderlog viewer", charset="UTF-8"'
    return response


def init_app(app: Flask) -> None:
    app.before_request(_require_auth)
