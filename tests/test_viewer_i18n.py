"""The language switch: the labels of both languages, the choice per request (?lang=, the
cookie, Accept-Language, Japanese), every page in each language, and the response cache's
answers kept apart by language. Pure units first, then the Flask test client on the real
Cassandra."""

from __future__ import annotations

import re
import string
from collections.abc import Iterator
from datetime import date

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orderlog.menu import EN, JA, MENU_NAMES, SEGMENT_NAMES
from tests.viewer_data import LATEST, load_standard, viewer_app
from viewer import charts
from viewer.db import close_app
from viewer.i18n import COOKIE, DEFAULT, LANGUAGES, choose, day, from_accept_language, label
from viewer.labels import LABELS, PAIRS, WEEKDAYS

# Kana and kanji: what an English page must not show outside user data and the switch.
JAPANESE_SCRIPT = re.compile(r"[\u3000-\u30ff\u3400-\u9fff\uff00-\uffef]")


def fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


# -- the labels ----------------------------------------------------------------------------


def test_both_languages_have_the_same_keys_and_no_empty_label() -> None:
    assert set(LABELS) == set(LANGUAGES) == {JA, EN}
    assert set(LABELS[JA]) == set(LABELS[EN]) == set(PAIRS)
    for lang in LANGUAGES:
        assert all(text.strip() for text in LABELS[lang].values()), lang
        assert set(MENU_NAMES[lang]) == set(MENU_NAMES[DEFAULT]) and all(MENU_NAMES[lang].values())
        assert set(SEGMENT_NAMES[lang]) == set(SEGMENT_NAMES[DEFAULT]) and all(SEGMENT_NAMES[lang].values())
        assert len(WEEKDAYS[lang]) == 7


def test_both_texts_of_a_label_fill_in_the_same_values_and_plurals_come_in_pairs() -> None:
    for key, (ja, en) in PAIRS.items():
        assert fields(ja) == fields(en), key
        if key.endswith(".one"):
            assert key.removesuffix(".one") + ".other" in PAIRS, key
            assert "count" in fields(en), key


def test_every_label_the_templates_name_exists() -> None:
    """A template's t("key") of a key that does not exist would fail the page at render time."""
    from pathlib import Path

    import viewer

    used = {"t": set(), "tn": set()}
    for template in (Path(viewer.__file__).parent / "templates").glob("*.html"):
        for function, key in re.findall(r"""\b(tn?)\(["']([\w.]+)["']\s*[,)]""", template.read_text()):
            used[function].add(key)
    assert len(used["t"]) > 100 and used["tn"]
    assert used["t"] - set(PAIRS) == set()
    assert {f"{key}.{form}" for key in used["tn"] for form in ("one", "other")} - set(PAIRS) == set()


def test_the_japanese_texts_are_japanese_and_the_english_ones_english() -> None:
    assert all(JAPANESE_SCRIPT.search(text) for text in LABELS[JA].values())
    assert not any(JAPANESE_SCRIPT.search(text) for text in LABELS[EN].values())


def test_a_label_escapes_what_is_filled_in_but_keeps_its_own_markup() -> None:
    assert label(EN, "fresh.last", date="<b>", at="&") == "Last aggregated: <strong>&lt;b&gt;</strong> (at &amp;)"


def test_dates_are_written_with_their_weekday_per_language() -> None:
    assert day(JA, date(2025, 5, 31)) == "2025-05-31 (土)"
    assert day(EN, date(2025, 5, 31)) == "Sat 2025-05-31"


def test_chart_texts_follow_the_language() -> None:
    assert charts.daily_summary([], lang=JA) == "集計済みの日はありません。"
    assert charts.daily_summary([], lang=EN) == "No aggregated days."
    assert charts.user_figure([], lang=EN)["layout"]["yaxis"]["title"]["text"] == "orders"
    assert charts.user_figure([], lang=JA)["layout"]["yaxis"]["title"]["text"] == "注文数"


# -- the choice ------------------------------------------------------------------------------


def test_the_choice_is_parameter_then_cookie_then_accept_language_then_japanese() -> None:
    assert choose("en", "ja", "ja") == "en"
    assert choose("ja", "en", "en") == "ja"
    assert choose(None, "en", "ja") == "en"
    assert choose("xx", "en", "ja") == "en"  # an unknown parameter is ignored
    assert choose(None, None, "en-US,en;q=0.9,ja;q=0.8") == "en"
    assert choose(None, "klingon", "fr, en-GB;q=0.5") == "en"
    assert choose(None, None, None) == "ja"
    assert choose("", "", "") == "ja"


@pytest.mark.parametrize(("header", "expected"), [
    ("ja;q=0.4, en;q=0.6", "en"),
    ("en;q=0.4, ja;q=0.6", "ja"),
    ("ja;q=0, en;q=0.1", "en"),  # q=0: not acceptable
    ("en;q=0", None),
    ("de, fr", None),
    ("*", "ja"),
    ("EN-us", "en"),
    ("ja;q=2", None),  # not a q-value
    (";;;q=,,\x00", None),
])
def test_accept_language_is_read_by_q_value(header: str, expected: str | None) -> None:
    assert from_accept_language(header) == expected


@given(st.none() | st.text(), st.none() | st.text(), st.none() | st.text())
def test_any_three_values_choose_a_known_language(parameter, cookie, accept_language) -> None:
    chosen = choose(parameter, cookie, accept_language)
    assert chosen in LANGUAGES
    if parameter in LANGUAGES:
        assert chosen == parameter
    elif cookie in LANGUAGES:
        assert chosen == cookie


# -- the pages in each language (real Cassandra) ---------------------------------------------

PAGES = {
    "/daily": "nav.daily",
    "/segments": "nav.segments",
    "/users": "nav.users",
    "/users?prefix=a": "users.caption",
    "/users/alice": "user.history",
    "/status?to=2025-05-31": "status.title",
}


@pytest.fixture(scope="module")
def app(standard_viewer: object) -> object:
    return standard_viewer


def get(app: object, url: str, **headers: str) -> object:
    return app.test_client(use_cookies=False).get(url, headers=headers)  # type: ignore[attr-defined]


def html_lang(html: str) -> str:
    return re.match(r'<!doctype html>\s*<html lang="(\w+)">', html).group(1)  # type: ignore[union-attr]


def visible_text(html: str) -> str:
    """The page's text without user data (ids), the switch's own "日本語" and scripts."""
    html = re.sub(r"<script.*?</script>", "", html, flags=re.S)
    html = re.sub(r'<a [^>]*lang="ja"[^>]*>.*?</a>', "", html)
    html = re.sub(r'<(a|span) class="user-id"[^>]*>.*?</\1>', "", html)
    return re.sub(r"<[^>]+>", " ", html)


@pytest.mark.integration
@pytest.mark.parametrize("url", PAGES)
def test_each_page_in_english_has_its_english_labels_and_no_japanese(app: object, url: str) -> None:
    response = get(app, url, Cookie="lang=en")
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and html_lang(html) == "en"
    assert response.headers["Content-Language"] == "en"
    key = PAGES[url]
    assert str(label(EN, key, prefix="a")) in html
    for nav in ("nav.daily", "nav.segments", "nav.users", "nav.status"):
        assert f">{LABELS[EN][nav]}</a>" in html
    assert JAPANESE_SCRIPT.findall(visible_text(html)) == []


@pytest.mark.integration
@pytest.mark.parametrize("url", PAGES)
def test_each_page_in_japanese_has_its_japanese_labels(app: object, url: str) -> None:
    response = get(app, url)
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and html_lang(html) == "ja"
    assert response.headers["Content-Language"] == "ja"
    assert str(label(JA, PAGES[url], prefix="a")) in html
    for nav in ("nav.daily", "nav.segments", "nav.users", "nav.status"):
        assert f">{LABELS[JA][nav]}</a>" in html
    text = visible_text(html)
    for english in ("Last aggregated", "Daily orders", "Download CSV", "Japanese-leaning", "Segments"):
        assert english not in text, english


@pytest.mark.integration
def test_the_pages_numbers_labels_and_charts_in_japanese(app: object) -> None:
    html = get(app, "/daily").get_data(as_text=True)
    assert "最終集計: <strong>2025-05-31 (土)</strong>" in html
    assert '<span class="label">和食</span><span class="value" id="day-japanese">120</span>' in html
    assert "前日比:" in html and "前週同曜日比:" in html
    assert "<caption>日別の注文数 2025-05-02 (金) – 2025-05-31 (土)（新しい順）</caption>" in html
    figure = re.search(r'data-chart="daily-chart">(.*?)</script>', html, re.S).group(1)  # type: ignore[union-attr]
    assert '"name": "和食"' in figure and '"name": "和食率 (%)"' in figure and '"text": "注文数"' in figure
    assert "日別の注文数 2025-05-02 (金) – 2025-05-31 (土)（集計済み 29 日）" in html  # the text alternative
    html = get(app, "/segments").get_data(as_text=True)
    assert "<caption>2025-05-31 (土) 時点のセグメントの大きさ</caption>" in html and ">和食派</a>" in html


@pytest.mark.integration
def test_an_error_page_follows_the_language(app: object) -> None:
    response = get(app, "/users/nobody-at-all", Cookie="lang=en")
    html = response.get_data(as_text=True)
    assert response.status_code == 404 and html_lang(html) == "en"
    assert "<h1>404 Not found</h1>" in html and "No aggregated orders for user “nobody-at-all”." in html
    html = get(app, "/users/nobody-at-all").get_data(as_text=True)
    assert html_lang(html) == "ja" and "<h1>404 見つかりません</h1>" in html
    assert "ユーザー「nobody-at-all」の集計済みの注文はありません。" in html
    html = get(app, "/daily?date=nope&lang=en").get_data(as_text=True)
    assert html_lang(html) == "en" and "<h1>400 Bad request</h1>" in html


@pytest.mark.integration
def test_the_bare_error_page_of_a_host_no_url_can_carry_says_its_language_too(app: object) -> None:
    for lang in LANGUAGES:
        response = get(app, f"/daily?lang={lang}", Host="x" * 64)
        assert response.status_code == 400 and html_lang(response.get_data(as_text=True)) == lang


@pytest.mark.integration
def test_the_choice_order_on_a_page_and_the_cookie_it_sets(app: object) -> None:
    def lang_of(url: str, **headers: str) -> str:
        return html_lang(get(app, url, **headers).get_data(as_text=True))

    assert lang_of("/users") == "ja"
    assert lang_of("/users", **{"Accept-Language": "en-US,en;q=0.9"}) == "en"
    assert lang_of("/users", Cookie="lang=ja", **{"Accept-Language": "en"}) == "ja"
    assert lang_of("/users?lang=en", Cookie="lang=ja", **{"Accept-Language": "ja"}) == "en"
    assert lang_of("/users?lang=xx", Cookie="lang=en") == "en"  # unknown: the current choice stays

    chosen = get(app, "/users?lang=en")
    cookie = chosen.headers["Set-Cookie"]
    assert cookie.startswith(f"{COOKIE}=en;") and "Path=/" in cookie and "SameSite=Lax" in cookie
    assert "HttpOnly" in cookie and re.search(r"Max-Age=\d{8}", cookie)  # about a year
    assert "Set-Cookie" not in get(app, "/users?lang=xx").headers
    assert "Set-Cookie" not in get(app, "/users", Cookie="lang=en").headers

    client = app.test_client()  # type: ignore[attr-defined]
    client.get("/daily?lang=en")
    assert html_lang(client.get("/segments").get_data(as_text=True)) == "en"  # remembered
    client.get("/segments?lang=ja")
    assert html_lang(client.get("/daily").get_data(as_text=True)) == "ja"


@pytest.mark.integration
def test_the_switch_keeps_the_page_and_its_parameters_and_marks_the_current_language(app: object) -> None:
    html = get(app, "/segments?segment=western&prefix=a%26b&lang=ja", Cookie="lang=en").get_data(as_text=True)
    links = re.findall(r'<a href="([^"]*)" lang="(\w+)" hreflang="(\w+)" data-lang="\w+" ?([^>]*)>([^<]*)</a>', html)
    assert links == [
        ("/segments?segment=western&amp;prefix=a%26b&amp;lang=ja", "ja", "ja", 'class="active" aria-current="true"',
         "日本語"),
        ("/segments?segment=western&amp;prefix=a%26b&amp;lang=en", "en", "en", "", "English"),
    ]
    html = get(app, "/users/a%2Fb%20c%3F", Cookie="lang=en").get_data(as_text=True)  # a user id to quote
    assert 'href="/users/a/b%20c%3F?lang=ja"' in html


@pytest.mark.integration
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    parameter=st.text(),
    cookie=st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF)),
    accept_language=st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF)),
)
def test_any_parameter_cookie_and_header_give_a_page_in_a_known_language(app, parameter, cookie,
                                                                         accept_language) -> None:
    response = app.test_client(use_cookies=False).get(  # type: ignore[attr-defined]
        "/users", query_string={"lang": parameter},
        headers={"Cookie": f"lang={cookie}", "Accept-Language": accept_language},
    )
    assert response.status_code == 200
    assert html_lang(response.get_data(as_text=True)) in LANGUAGES
    assert response.headers["Content-Language"] in LANGUAGES


# -- the response cache keeps the languages apart ------------------------------------------


@pytest.fixture
def cached(clean_cassandra: object, settings: object) -> Iterator[object]:
    from tests.test_viewer_cache import note_finished_run

    load_standard(clean_cassandra)
    note_finished_run(clean_cassandra, LATEST)
    app = viewer_app(settings, viewer_cache_seconds=5)
    yield app
    close_app(app)  # type: ignore[arg-type]


@pytest.mark.integration
@pytest.mark.parametrize("url", ["/segments", "/daily", "/users/alice"])
def test_a_304_of_one_language_is_never_served_for_the_other(cached: object, url: str) -> None:
    japanese = get(cached, url)
    english = get(cached, url, Cookie="lang=en")
    for response in (japanese, english):
        assert response.status_code == 200 and response.headers["Cache-Control"] == "private, no-cache"
        assert {"Cookie", "Accept-Language"} <= set(response.vary)
    assert japanese.headers["ETag"] != english.headers["ETag"]
    # Each language's own ETag revalidates; the other language's never does, kept answer or not.
    assert get(cached, url, **{"If-None-Match": japanese.headers["ETag"]}).status_code == 304
    again = get(cached, url, Cookie="lang=en", **{"If-None-Match": japanese.headers["ETag"]})
    assert again.status_code == 200 and html_lang(again.get_data(as_text=True)) == "en"
    assert {"Cookie", "Accept-Language"} <= set(again.vary)
    again = get(cached, url, **{"Accept-Language": "ja", "If-None-Match": english.headers["ETag"]})
    assert again.status_code == 200 and html_lang(again.get_data(as_text=True)) == "ja"
    not_modified = get(cached, url, Cookie="lang=en", **{"If-None-Match": english.headers["ETag"]})
    assert not_modified.status_code == 304 and {"Cookie", "Accept-Language"} <= set(not_modified.vary)
    # A kept English answer is not served to a Japanese reader (and the other way round).
    assert html_lang(get(cached, url, **{"Accept-Language": "en"}).get_data(as_text=True)) == "en"
    assert html_lang(get(cached, url).get_data(as_text=True)) == "ja"


@pytest.mark.integration
def test_the_api_and_the_csvs_do_not_depend_on_the_language(cached: object) -> None:
    for url in ("/api/user_segments", "/api/daily_order_summaries.csv?from=2025-05-29&to=2025-05-31"):
        japanese, english = get(cached, url), get(cached, url, Cookie="lang=en", **{"Accept-Language": "en"})
        assert japanese.get_data() == english.get_data()
        assert japanese.headers["ETag"] == english.headers["ETag"]
        assert "Cookie" not in english.vary and "Content-Language" not in english.headers
    # Nor do the probes and the metrics: no cookie set, no Vary for a proxy to key on.
    for url in ("/healthz?lang=en", "/readyz?lang=en", "/metrics?lang=en"):
        probe = get(cached, url, Cookie="lang=en", **{"Accept-Language": "en"})
        assert probe.status_code == 200, url
        assert "Cookie" not in probe.vary and "Set-Cookie" not in probe.headers
        assert "Content-Language" not in probe.headers
    assert get(cached, "/api/user_segments?lang=en").get_json()["segments"]["japanese"]["label"] == \
        "和食派 Japanese-leaning"
    csv = get(cached, "/api/daily_order_summaries.csv?from=2025-05-31&to=2025-05-31&lang=en").get_data(as_text=True)
    assert csv.startswith("\ufeffdate,japanese,western,total,japanese_share,users\r\n")
