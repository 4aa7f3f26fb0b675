"""Every failure answers plainly: JSON under /api, a page elsewhere, never a traceback.

Bad parameters are 400 naming the parameter, unknown users and segments 404, Cassandra
unreachable or timing out 503 with Retry-After (the viewer holds no data of its own).
"""

from __future__ import annotations

import logging

from cassandra import DriverException, OperationTimedOut, RequestExecutionException
from cassandra.cluster import NoHostAvailable
from flask import Flask, Response, current_app, make_response, render_template, request
from flask.globals import request_ctx
from markupsafe import escape
from werkzeug.exceptions import HTTPException

from viewer.db import SchemaOutOfDate
from viewer.i18n import language
from viewer.params import BadCursor, BadParameter

log = logging.getLogger(__name__)

CASSANDRA_ERRORS = (NoHostAvailable, OperationTimedOut, RequestExecutionException, DriverException)
RETRY_AFTER_SECONDS = 5

# Only the app's own scripts run; Plotly sets inline styles on its SVG.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)


def wants_json() -> bool:
    return request.path.startswith("/api/")


def error_response(status: int, message: str, **extra: object) -> Response | tuple[str, int]:
    if wants_json():
        response = current_app.json.response({"error": message, **extra})
        response.status_code = status
        return response
    if request_ctx.url_adapter is None:
        # Not even routed (a Host header no URL can be built for, say): the page template
        # links to the app's pages, which cannot be built either, so a bare page says it.
        return _bare_error_page(status, message), status
    return render_template("error.html", status=status, message=message), status


def _bare_error_page(status: int, message: str) -> str:
    return (f'<!doctype html>\n<html lang="{language()}"><head><meta charset="utf-8"><title>{status}</title></head>'
            f'<body><main><h1>{status}</h1><p id="error-message">{escape(message)}</p></main></body></html>\n')


def _bad_parameter(e: BadParameter) -> Response | tuple[str, int]:
    return error_response(400, str(e), parameter=e.name)


def _bad_cursor(e: BadCursor) -> Response | tuple[str, int]:
    return error_response(400, f"invalid parameter 'after': {e}", parameter="after")


def _http(e: HTTPException) -> Response | tuple[str, int]:
    message = e.description if e.code != 404 else f"not found: {request.path}"
    response = error_response(e.code or 500, message)
    if e.code == 405 and isinstance(response, Response):
        response.headers["Allow"] = ", ".join(e.valid_methods or [])  # type: ignore[attr-defined]
    return response


def _cassandra(e: Exception) -> Response | tuple[str, int]:
    log.warning("Cassandra unavailable: %s", e)
    response = error_response(503, "the data store (Cassandra) is unavailable; retry shortly")
    if isinstance(response, tuple):
        response = make_response(response)
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def _schema_out_of_date(e: SchemaOutOfDate) -> Response | tuple[str, int]:
    log.error("%s", e)
    return error_response(503, str(e))


def _unexpected(e: Exception) -> Response | tuple[str, int]:
    log.exception("unexpected error on %s", request.path)
    return error_response(500, "internal error (logged on the server)")


def _headers(response: Response) -> Response:
    return with_security_headers(response, request.path)


def with_security_headers(response: Response, path: str) -> Response:
    """The headers every answer carries (those it does not set itself)."""
    # The names present, read once: werkzeug's setdefault raises (and builds) an HTTP
    # exception for every name it does not find, which every answer paid four times.
    present = {name.lower() for name, _ in response.headers}
    for name, value in _SECURITY_HEADERS:
        if name.lower() not in present:
            response.headers[name] = value
    if "cache-control" not in present and (path.startswith("/api/") or response.mimetype == "text/html"):
        # Customer data: never kept by shared caches. Answers with an ETag (response_cache)
        # say `private, no-cache` instead: a browser may keep them but must revalidate.
        response.headers["Cache-Control"] = "no-store"
    return response


_SECURITY_HEADERS = (("Content-Security-Policy", CSP), ("X-Content-Type-Options", "nosniff"),
                     ("Referrer-Policy", "same-origin"))


def init_app(app: Flask) -> None:
    app.register_error_handler(BadParameter, _bad_parameter)
    app.register_error_handler(BadCursor, _bad_cursor)
    app.register_error_handler(HTTPException, _http)
    app.register_error_handler(SchemaOutOfDate, _schema_out_of_date)
    for exc in CASSANDRA_ERRORS:
        app.register_error_handler(exc, _cassandra)
    app.register_error_handler(Exception, _unexpected)
    app.after_request(_headers)
