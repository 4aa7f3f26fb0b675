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
from collections.abc import Callable, Iterable

from flask import Flask, Response, current_app, g, request
from werkzeug.datastructures import ETags
from werkzeug.wrappers import Request

from viewer import db
from viewer.auth import credentials_ok
from viewer.db import get_store, stream_window
from viewer.errors import with_security_headers
from viewer.health import PUBLIC_ENDPOINTS
from viewer.i18n import is_page, language
from viewer.metrics import counter_of
from viewer.params import BadParameter, check_single

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
    # A page's answer depends on its language (?lang=, cookie or Accept-Language: not all in
    # the path), so the language is in its key and ETag; the API's answers are the same in both.
    page_language = language() if is_page() else None
    return generation, etag_for(generation, request.endpoint, request.full_path, store.cache_seconds, page_language)


def etag_for(generation: str, endpoint: str, full_path: str, cache_seconds: float, page_language: str | None) -> str:
    """The ETag (and cache key) of an answer: the run, the request's path and query, the
    page's language, and for what the streaming job writes the cache_seconds window."""
    key = generation
    if endpoint in STREAM_FED:
        key += f":{stream_window(cache_seconds)}"
    if page_language is not None:
        key += f":{page_language}"
    return hashlib.sha256(f"{key}\n{full_path}".encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _is_segment_export() -> bool:
    return is_segment_export(request.endpoint, request.path)


def is_segment_export(endpoint: str | None, path: str) -> bool:
    # A segment's CSV shares the route of its pages ("<segment>.csv"); the range exports
    # (daily summaries, segment sizes) are small and kept like the JSON answers.
    return endpoint == "api.segment_members" and path.endswith(".csv")


def _answer_from_cache() -> Response | None:
    found = _etag_of_request()
    if found is None:
        return None
    g.response_cache = found
    response = _kept_answer(_cache(), found[1], request.if_none_match)
    if response is not None:
        g.response_cache_hit = True
    return response


def _kept_answer(cache: ResponseCache, etag: str, wanted: ETags) -> Response | None:
    """The answer under etag: 304 when the client has it, the kept one, or None."""
    # Weak comparison, as RFC 9110 asks for If-None-Match. "*" means "any current answer":
    # a kept one is, else only the answer itself says whether there is one (_keep; a 404 is not).
    if not wanted.star_tag and wanted.contains_weak(etag):
        response = Response(status=304)
    else:
        hit = cache.get(etag)
        if hit is None:
            return None
        body, status, content_type = hit
        response = Response(status=304) if wanted.star_tag else Response(body, status=status, content_type=content_type)
    response.set_etag(etag)
    response.headers["Cache-Control"] = CACHE_CONTROL
    return response


def _repeats_a_parameter(request: Request) -> bool:
    # Flask's path refuses it (400) before it looks in the cache: so does this one.
    try:
        check_single(request.args)
    except BadParameter:
        return True
    return False


class KeptApiAnswers:
    """WSGI, in front of Flask: a GET of the API whose answer this worker keeps is answered
    from it without Flask's request machinery (its context, eight hooks, the error handlers),
    which cost a kept answer about twice what the answer itself does. The same checks as
    Flask's path (the route, a repeated parameter, basic auth, the run, the ETag,
    If-None-Match); the same headers and metrics. Anything else, and anything that goes wrong here, goes to
    Flask, which answers (and reports) it; so this only ever serves what Flask would have.

    A request it answered once, byte for byte the same in everything its answer depends on
    (path, query, credentials, If-None-Match) under the same run (and for stream-fed answers
    the same window), gets the same status, headers and body again without any parsing:
    ``ReadyAnswers``."""

    def __init__(self, app: Flask):
        self.app = app
        self.flask_wsgi_app = app.wsgi_app
        self.ready = ReadyAnswers()

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") == "GET" and environ.get("PATH_INFO", "").startswith("/api/"):
            started = time.perf_counter()
            try:
                answer = self._ready_or_kept(environ, started)
            except Exception:  # noqa: BLE001  Flask answers whatever this cannot (a 404, Cassandra down...)
                answer = None
            if answer is not None:
                status, headers, body, counted = answer
                start_response(status, list(headers))
                counted(started)
                return [body]
        return self.flask_wsgi_app(environ, start_response)

    def _ready_or_kept(self, environ: dict, started: float) -> ReadyAnswer | None:
        store = self.app.extensions[db.EXTENSION].get()
        if not store.caching:
            return None
        generation = store.generation()
        key = ReadyAnswers.key_of(environ)
        answer = self.ready.get(key, generation, store.cache_seconds)
        if answer is not None:
            return answer
        window = stream_window(store.cache_seconds)
        kept = self._kept(environ, store, generation)
        if kept is None:
            return None
        response, rule, stream_fed = kept
        captured: list = []
        body = b"".join(response(environ, lambda status, headers, exc_info=None: captured.extend((status, headers))))
        status, headers = captured
        answer = (status, tuple(headers), body, counter_of(rule, "GET", response.status_code))
        if not stream_fed:
            self.ready.put(key, generation, None, answer)
        elif window == stream_window(store.cache_seconds):  # its ETag is of this window
            self.ready.put(key, generation, window, answer)
        return answer

    def _kept(self, environ: dict, store: db.Store, generation: str) -> tuple[Response, str, bool] | None:
        request = Request(environ)
        rule, _ = self.app.url_map.bind_to_environ(environ).match(return_rule=True)
        endpoint = rule.endpoint
        if endpoint in NOT_CACHED or is_segment_export(endpoint, request.path) or _repeats_a_parameter(request):
            return None
        viewer = self.app.config["SETTINGS"].viewer
        if viewer.user and not credentials_ok(request.authorization, viewer.user, viewer.password):
            return None
        etag = etag_for(generation, endpoint, request.full_path, store.cache_seconds, None)
        response = _kept_answer(self.app.extensions[EXTENSION], etag, request.if_none_match)
        if response is None:
            return None
        with_security_headers(response, request.path)
        return response, rule.rule, endpoint in STREAM_FED


# status line, WSGI headers, body, and what counts the answer in the metrics (given its start)
ReadyAnswer = tuple[str, tuple[tuple[str, str], ...], bytes, Callable[[float], None]]


class ReadyAnswers:
    """The finished answers KeptApiAnswers gave, by the raw request fields they depend on,
    valid for the run (and stream window) they were made under. Bounded like ResponseCache;
    a new run empties it. Only requests that passed every check once are here, so a wrong
    password, another query or another If-None-Match is never one of its keys."""

    def __init__(self, max_entries: int = MAX_ENTRIES):
        self.max_entries = max_entries
        self._entries: dict[tuple, tuple[str, int | None, ReadyAnswer]] = {}
        self._generation = ""

    @staticmethod
    def key_of(environ: dict) -> tuple:
        # Everything of the request the answer depends on, as received (the method is GET).
        return (environ.get("SCRIPT_NAME", ""), environ["PATH_INFO"], environ.get("QUERY_STRING", ""),
                environ.get("HTTP_AUTHORIZATION"), environ.get("HTTP_IF_NONE_MATCH"))

    def get(self, key: tuple, generation: str, cache_seconds: float) -> ReadyAnswer | None:
        found = self._entries.get(key)
        if found is None:
            return None
        made_under, window, answer = found
        if made_under != generation or (window is not None and window != stream_window(cache_seconds)):
            return None
        return answer

    def put(self, key: tuple, generation: str, window: int | None, answer: ReadyAnswer) -> None:
        """Keep answer, made under generation (and, when stream-fed, in that window of cache_seconds)."""
        if generation != self._generation or len(self._entries) >= self.max_entries:
            self._entries = {}  # a new run, or full: start again (a plain dict: no lock on the read path)
            self._generation = generation
        self._entries[key] = (generation, window, answer)


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
    app.wsgi_app = KeptApiAnswers(app)  # type: ignore[method-assign]
