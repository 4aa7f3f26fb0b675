"""The pages' language: chosen per request, remembered in a cookie, and the labels in it.

The choice, first that names a known language: ``?lang=`` (which also sets the cookie),
the ``lang`` cookie, the ``Accept-Language`` header (q-values honoured), else Japanese. Any
other value of any of the three is ignored, never an error. The JSON API and the CSVs do not
depend on it (their keys and headers stay English for the scripts that read them); the HTML
pages do, so they say ``Vary: Cookie, Accept-Language`` and the response cache keys them by
language (viewer/response_cache.py).

Templates call ``t("key", name=value)`` (labels in viewer/labels.py), ``tn`` for a count's
singular or plural, and the ``day`` filter for a date as a reader of the language writes it.
"""

from __future__ import annotations

from datetime import date
from typing import Any
from urllib.parse import quote, urlencode

from flask import Flask, Response, g, request
from markupsafe import Markup
from werkzeug.datastructures import LanguageAccept
from werkzeug.http import parse_accept_header

from orderlog.menu import EN, JA, MENU_NAMES, SEGMENT_NAMES
from viewer.labels import LABELS, WEEKDAYS

LANGUAGES: tuple[str, ...] = (JA, EN)
DEFAULT = JA
PARAMETER = "lang"
COOKIE = "lang"
COOKIE_MAX_AGE = 400 * 86_400  # the longest browsers keep a cookie
# How each language names itself on the switch (the same in both languages).
NATIVE_NAMES = {JA: "日本語", EN: "English"}
VARY = ("Cookie", "Accept-Language")


def known(value: str | None) -> str | None:
    """The language a parameter or cookie value names, or None (any other string)."""
    return value if value in LANGUAGES else None


def from_accept_language(header: str | None) -> str | None:
    """The best of LANGUAGES for an Accept-Language header ("en-US,en;q=0.9,ja;q=0.8"),
    by q-value (werkzeug's parser: a language tag matches its primary subtag, q=0 refuses,
    '*' takes the first), or None when it names none of them or is not a header at all."""
    if not header:
        return None
    return parse_accept_header(header, LanguageAccept).best_match(LANGUAGES)


def choose(parameter: str | None, cookie: str | None, accept_language: str | None) -> str:
    """The page's language: ?lang=, then the cookie, then Accept-Language, then DEFAULT."""
    return known(parameter) or known(cookie) or from_accept_language(accept_language) or DEFAULT


def language() -> str:
    """This request's language (chosen once per request)."""
    if "lang" not in g:
        g.lang = choose(request.args.get(PARAMETER), request.cookies.get(COOKIE),
                        request.headers.get("Accept-Language"))
    return g.lang  # type: ignore[no-any-return]


def label(lang: str, key: str, **values: Any) -> Markup:
    """A label in ``lang`` with ``values`` filled in (escaped: a label is trusted markup, a
    value never is)."""
    return Markup(LABELS[lang][key]).format(**values)


def text(lang: str, key: str, **values: Any) -> str:
    """A label as plain text (for chart JSON and messages that are escaped later)."""
    return LABELS[lang][key].format(**values)


def plural(lang: str, key: str, count: int, **values: Any) -> Markup:
    """``key.one`` or ``key.other`` as English needs (Japanese has the same text in both),
    with ``count`` filled in with thousands separators."""
    return label(lang, f"{key}.{'one' if count == 1 else 'other'}", count=f"{count:,}", **values)


def weekday_name(lang: str, iso_weekday: int) -> str:
    """A weekday's short name; ``iso_weekday`` 1 is Monday, 7 Sunday."""
    return WEEKDAYS[lang][iso_weekday - 1]


def day(lang: str, value: date) -> str:
    """A date for reading, with its weekday: "2025-05-31 (土)" / "Sat 2025-05-31" (URLs
    and data keep the bare ISO date)."""
    weekday = WEEKDAYS[lang][value.weekday()]
    return f"{value.isoformat()} ({weekday})" if lang == JA else f"{weekday} {value.isoformat()}"


def switch_links() -> list[dict[str, Any]]:
    """The header's links to this page in each language, query parameters kept."""
    args = [(k, v) for k, v in request.args.items(multi=True) if k != PARAMETER]
    path = quote(request.script_root + request.path, safe="/")
    return [
        {"lang": code, "name": NATIVE_NAMES[code], "current": code == language(),
         "href": f"{path}?{urlencode([*args, (PARAMETER, code)])}"}
        for code in LANGUAGES
    ]


def is_page() -> bool:
    """Whether this request's answer is a page (which depends on the language); the probes
    and the metrics are not, whatever a client sends them."""
    from viewer.health import PUBLIC_ENDPOINTS  # here: viewer.health's imports lead back to this module

    return request.endpoint not in PUBLIC_ENDPOINTS and not request.path.startswith(("/api/", "/assets/", "/static/"))


def _remember_and_vary(response: Response) -> Response:
    if not is_page():
        return response
    if known(request.args.get(PARAMETER)):
        response.set_cookie(COOKIE, language(), max_age=COOKIE_MAX_AGE, path="/", samesite="Lax", httponly=True)
    response.vary.update(VARY)
    if response.mimetype == "text/html":
        response.headers["Content-Language"] = language()
    return response


def _template_globals() -> dict[str, Any]:
    lang = language()
    return {
        "lang": lang,
        "t": lambda key, **values: label(lang, key, **values),
        "tn": lambda key, count, **values: plural(lang, key, count, **values),
        "menu_labels": MENU_NAMES[lang],
        "segment_labels": SEGMENT_NAMES[lang],
        "has_label": lambda key: key in LABELS[lang],
        "weekday_name": lambda iso_weekday: weekday_name(lang, iso_weekday),
        "language_links": switch_links,
    }


def init_app(app: Flask) -> None:
    app.context_processor(_template_globals)
    app.add_template_filter(lambda value: day(language(), value), "day")
    app.after_request(_remember_and_vary)
