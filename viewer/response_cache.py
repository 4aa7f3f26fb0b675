"""The viewer's answers from memory between aggregate runs, and conditional requests.

Everything the viewer shows comes from what the aggregate job wrote, so a page or API
answer stays right until the next run finishes. Each worker keeps its answers keyed by that
run (``Store.generation``: the latest_aggregate_run row, read at most once a second) and
the request, and answers ``If-None-Match`` with ``304``. Two things the streaming job
writes, the late-order note and the rejected counts, appear in a few answers
(``STREAM_FED``): those are kept at most ``ORDERLOG_VIEWER_CACHE_SECONDS`` as well. So is
the status page, whose stream progress is live: it is at most that old.

Not cached: a segment's CSV export (streamed, any size), errors, redirects, the assets (they have
their own long-lived caching), the probes (/healthz, /readyz: they tell the present state).
``ORDERLOG_VIEWER_CACHE_SECONDS=0`` turns all of it off.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict

from flask import Flask, Response, current_app, g, request

from viewer.db import get_store
from viewer.health import PUBLIC_ENDPOINTS
from viewer.i18n import is_page, language

# Endpoints whose answer includes what the streaming job writes.
STREAM_FED = {"api.daily_order_summaries", "api.rejected_events", "pages.daily", "status.status_page",
              "status.status_overview"}
NOT_CACHED = ("assets.plotly_js", "api.openapi", *PUBLIC_ENDPOINTS)
MAX_ENTRIES = 4096
MAX_BODY_BYTES = 1024 * 1024
# Browsers may keep an answer but must ask again (with its ETag) before showing it; shared
# caches (proxies) must not keep customer data at all.
CACHE_CONTROL = "private, no-cache"
EXTENSION = "orderlog_response_cache"


class ResponseCache:
    """A bounded LRU of answers, each under its ETag (which names the run and the request)."""

    def __init__(self, max_entries: int = MAX_ENTRIES):
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[bytes, int, str]] = OrderedDict()
        self._generation = ""
        self._lock = threading.Lock()

    def get(self, etag: str) -> tuple[bytes, int, str] | None:
        with self._lock:
            hit = self._entries.get(etag)
            if hit is not None:
                self._entries.move_to_end(etag)
            return hit

    def put(self, generation: str, etag: str, entry: tuple[bytes, int, str]) -> None:
        with self._lock:
            if generation != self._generation:  # a new run: nothing older is worth keeping
                self._entries.clear()
                self._generation = generation
            self._entries[etag] = entry
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)


def _etag_of_request() -> tuple[str, str] | None:
    """(generation, ETag) of this request's answer, or None when it is not cached."""
    if request.method != "GET" or request.endpoint in (None, *NOT_CACHED) or _is_segment_export():
        return None
    store = get_store()
    if not store.caching:
        return None
    generation = store.generation()
    key = generation
    if request.endpoint in STREAM_FED:
        key += f":{int(time.time() // store.cache_seconds)}"
    # A page's answer depends on its language (?lang=, cookie or Accept-Language: not all in
    # the path), so the language is in its key and ETag; the API's answers are the same in both.
    if is_page():
        key += f":{language()}"
    digest = hashlib.sha256(f"{key}\n{request.full_path}".encode("utf-8", "surrogatepass")).hexdigest()
    return generation, digest[:32]


def _is_segment_export() -> bool:
    # A segment's CSV shares the route of its pages ("<segment>.csv"); the range exports
    # (daily summaries, segment sizes) are small and kept like the JSON answers.
    return request.endpoint == "api.segment_members" and request.path.endswith(".csv")


def _answer_from_cache() -> Response | None:
    found = _etag_of_request()
    if found is None:
        return None
    g.response_cache = found
    generation, etag = found
    # Weak comparison, as RFC 9110 asks for If-None-Match. "*" means "any current answer":
    # a kept one is, else only the answer itself says whether there is one (_keep; a 404 is not).
    wanted = request.if_none_match
    if not wanted.star_tag and wanted.contains_weak(etag):
        response = Response(status=304)
    else:
        hit = _cache().get(etag)
        if hit is None:
            return None
        body, status, content_type = hit
        response = Response(status=304) if wanted.star_tag else Response(body, status=status, content_type=content_type)
    g.response_cache_hit = True
    response.set_etag(etag)
    response.headers["Cache-Control"] = CACHE_CONTROL
    return response


def _keep(response: Response) -> Response:
    found = g.get("response_cache")
    if found is None or g.get("response_cache_hit") or response.status_code != 200:
        return response
    if response.is_streamed or response.direct_passthrough:
        return response
    body = response.get_data()
    if len(body) > MAX_BODY_BYTES:
        return response
    generation, etag = found
    _cache().put(generation, etag, (body, response.status_code, response.content_type or "application/octet-stream"))
    if request.if_none_match.star_tag:
        response = Response(status=304)
    response.set_etag(etag)
    response.headers["Cache-Control"] = CACHE_CONTROL
    return response


def _cache() -> ResponseCache:
    return current_app.extensions[EXTENSION]


def init_app(app: Flask) -> None:
    """Register after auth (an unauthorised request never reaches the cache) and after the
    error handlers' header hook (so that this one's Cache-Control is the one kept)."""
    app.extensions[EXTENSION] = ResponseCache()
    app.before_request(_answer_from_cache)
    app.after_request(_keep)
