"""The viewer in a real browser: Debian's headless Chromium driven by Playwright, against
the viewer served by gunicorn (as `make viewer` runs it) on the real Cassandra.

For each page: the Plotly chart rendered with the expected data (read back from the
plot's DOM element), no console error, nothing loaded from another host, an XSS user_id
shown as text; a screenshot of each page goes to tests/screenshots/ (git-ignored).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest

from tests.conftest import gunicorn_server
from tests.viewer_data import XSS_PAYLOAD, XSS_USER, japanese_ids, load_standard

pytestmark = [pytest.mark.integration, pytest.mark.browser]

SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def server(cassandra: object, settings: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The viewer under gunicorn on a free port, on the test keyspace with the standard data."""
    load_standard(cassandra)
    env = {
        "ORDERLOG_CASSANDRA_KEYSPACE": settings.cassandra.keyspace,  # type: ignore[attr-defined]
        "ORDERLOG_VIEWER_WORKERS": "1",
        "ORDERLOG_VIEWER_THREADS": "4",
        "ORDERLOG_VIEWER_CACHE_SECONDS": "0",
        "ORDERLOG_VIEWER_USER": "",
        "ORDERLOG_VIEWER_PASSWORD": "",
    }
    log = tmp_path_factory.mktemp("viewer") / "gunicorn.log"
    with gunicorn_server("viewer", env, log, "/readyz", timeout=30) as (_, url):
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Debian's chromium is needed: make browser"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


# The browser's language, which it sends as Accept-Language: the tests below read the English
# pages unless they say otherwise (test_the_language_switch_* reads both).
LOCALES = {"ja": "ja-JP", "en": "en-US"}


class Watched:
    """A page that records console errors, page errors, dialogs and off-host requests."""

    def __init__(self, browser: object, base: str, lang: str = "en"):
        self.base = base
        self.context = browser.new_context(  # type: ignore[attr-defined]
            viewport={"width": 1280, "height": 900}, locale=LOCALES[lang])
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.foreign: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("response", lambda r: r.status >= 400 and self.errors.append(f"{r.status} {r.url}"))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        host = urlsplit(base).netloc
        self.page.on("request", lambda r: urlsplit(r.url).netloc != host and self.foreign.append(r.url))

    def open(self, path: str) -> object:
        response = self.page.goto(self.base + path)
        assert response is not None and response.status == 200, path
        return self.page

    def chart(self, chart_id: str) -> list[dict]:
        """The traces Plotly drew (the plot element's own data), once it has rendered."""
        self.page.wait_for_selector(f"#{chart_id}[data-rendered='true']", timeout=20_000)
        assert self.page.locator(f"#{chart_id} .main-svg").count() > 0
        return self.page.evaluate(
            f"""() => document.getElementById({chart_id!r}).data.map(
                t => ({{name: t.name, type: t.type, x: Array.from(t.x), y: Array.from(t.y)}}))"""
        )

    def shoot(self, name: str) -> None:
        SCREENSHOTS.mkdir(exist_ok=True)
        self.page.screenshot(path=str(SCREENSHOTS / f"viewer_{name}.png"), full_page=True)

    def assert_clean(self) -> None:
        assert self.errors == []
        assert self.dialogs == []
        assert self.foreign == []

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def watched(browser: object, server: str) -> Iterator[Watched]:
    w = Watched(browser, server)
    yield w
    w.close()


def test_daily_page_chart_numbers_and_date_picker(watched: Watched) -> None:
    page = watched.open("/daily")
    traces = watched.chart("daily-chart")
    assert [t["name"] for t in traces] == ["Japanese", "Western", "Japanese share (%)", "Japanese share, 7 days (%)"]
    japanese, western, share, moving = traces
    assert moving["y"][-1] == 56.19
    assert japanese["x"][0] == "2025-05-02" and japanese["x"][-1] == "2025-05-31" and len(japanese["x"]) == 29
    assert japanese["y"][-3:] == [129, 130, 120] and western["y"][-3:] == [97, 100, 95]
    assert share["y"][-1] == 55.81
    assert page.locator(".bars path").count() >= 2 * 29  # the bars were drawn
    assert page.inner_text("#day-japanese") == "120" and page.inner_text("#day-western") == "95"
    assert "2025-05-31" in page.inner_text("#last-aggregated")
    # Rejected records: the range table's column, and the date's samples with hostile payloads as text.
    assert page.inner_text('tr[data-date="2025-05-31"] td.rejected-count') == "7"
    assert page.inner_text('tr[data-date="2025-05-30"] td.rejected-count') == "99"
    payloads = page.locator("#rejected-samples td.payload").all_inner_texts()
    assert payloads[0] == f"{XSS_PAYLOAD.decode()} (27 bytes)" and payloads[1] == "bell\\x07ring (9 bytes)"
    assert page.locator("#rejected-samples script, #rejected-samples img").count() == 0  # never markup
    assert page.inner_text("#rejected-hint").startswith("Every rejected record of the date")
    watched.shoot("daily")
    # Pick another date with the date picker.
    page.fill("input[name=date]", "2025-05-10")
    page.click("form.inline button >> nth=0")
    page.wait_for_url("**date=2025-05-10**")
    assert page.inner_text("#day-japanese") == "110" and page.inner_text("#day-total") == "210"
    watched.chart("daily-chart")
    # This month against last month: the month's bars with the month before dashed over them.
    page.click("#month-compare-link")
    page.wait_for_url("**compare_from=2025-04-01**")
    names = [t["name"] for t in watched.chart("daily-chart")]
    assert names[-2:] == ["Total, 2025-04-01 – 2025-05-01", "Japanese share (%), 2025-04-01 – 2025-05-01"]
    watched.assert_clean()


def test_daily_page_heatmap_of_weekday_and_hour_and_its_switch(watched: Watched) -> None:
    page = watched.open("/daily?from=2025-05-24&to=2025-05-31")
    traces = watched.chart("hourly-chart")
    assert [(t["name"], t["type"]) for t in traces] == [("Orders", "heatmap"), ("Japanese share (%)", "heatmap")]
    drawn = lambda: page.evaluate(  # noqa: E731
        """() => document.getElementById('hourly-chart').data.map(t => ({visible: t.visible, z: t.z}))"""
    )
    orders, share = drawn()
    assert orders["z"][5][12] == 106 and orders["z"][4][19] == 120 and orders["z"][6][12] == 0
    assert share["z"][5][12] == 79.25 and share["z"][6][12] is None
    assert share["visible"] is False and orders["visible"] is not False
    assert page.locator("#hourly-chart .hm, #hourly-chart image").count() > 0  # the heatmap was painted
    # The switch shows the Japanese share instead of the orders.
    page.get_by_label("Japanese share", exact=True).check()
    page.wait_for_selector("#hourly-chart[data-view='1']", timeout=10_000)
    orders, share = drawn()
    assert (orders["visible"], share["visible"]) == (False, True)
    assert page.inner_text('#hourly-table tr[data-hour="12"] td[data-weekday="6"]') == "84 / 22 (79.2%)"
    watched.shoot("daily_hourly")
    watched.assert_clean()


def test_segments_page_chart_list_paging_and_xss_as_text(watched: Watched) -> None:
    page = watched.open("/segments")
    traces = watched.chart("segments-chart")
    assert [(t["name"], t["y"]) for t in traces] == [
        ("Japanese-leaning", [241, 246, 255]),
        ("Western-leaning", [1, 1, 2]),
        ("Even", [2, 2, 1]),
    ]
    assert traces[0]["x"] == ["2025-05-29", "2025-05-30", "2025-05-31"]
    flows = watched.chart("flows-chart")
    assert [t["y"] for t in flows[:2]] == [[3, 5, 12], [-1, 0, -3]]
    ids = page.locator("a.user-id").all_inner_texts()
    assert ids == japanese_ids()[:100]
    assert ids[0] == XSS_USER  # shown as text, never run (no dialog, see assert_clean)
    watched.shoot("segments")
    page.click("#next-page")
    page.wait_for_selector("text=Page 2")
    assert page.locator("a.user-id").all_inner_texts() == japanese_ids()[100:200]
    page.fill("input[name=prefix]", "a")
    page.click("text=Search")
    page.wait_for_url("**prefix=a**")
    assert page.locator("a.user-id").all_inner_texts() == ["alice", "amy"]
    assert page.get_attribute("#csv-link", "href") == "/api/user_segments/japanese.csv?prefix=a"
    watched.assert_clean()


def test_user_page_of_the_xss_user_shows_the_id_as_text(watched: Watched) -> None:
    page = watched.open(f"/users/{quote(XSS_USER, safe='')}")
    assert page.inner_text("#user-id") == XSS_USER
    assert page.locator("#user-id script").count() == 0
    traces = watched.chart("user-chart")
    assert [(t["x"], t["y"]) for t in traces] == [(["2025-05-31"], [1]), (["2025-05-31"], [0])]
    watched.shoot("user_xss")
    page = watched.open("/users/alice")
    traces = watched.chart("user-chart")
    assert traces[0]["x"] == ["2024-12-31", "2025-05-30", "2025-05-31"] and traces[0]["y"] == [1, 1, 1]
    assert page.inner_text("#user-preference") == "Japanese-leaning"
    watched.shoot("user")
    watched.assert_clean()


def test_a_date_not_aggregated_reads_well(watched: Watched) -> None:
    page = watched.open("/daily?date=2025-05-15&from=2020-01-01&to=2020-01-31")
    assert page.inner_text("#day-empty") == (
        "Thu 2025-05-15 has not been aggregated yet. The latest aggregated date is Sat 2025-05-31."
    )
    assert page.inner_text("#range-empty") == "No aggregated days between Wed 2020-01-01 and Fri 2020-01-31."
    watched.shoot("daily_empty")
    watched.assert_clean()


def test_the_language_switch_turns_the_pages_english_and_the_next_page_stays_english(
    browser: object, server: str
) -> None:
    w = Watched(browser, server, lang="ja")  # a reader whose browser asks for Japanese
    try:
        page = w.open("/daily?date=2025-05-10&from=2025-05-09&to=2025-05-11")
        assert page.get_attribute("html", "lang") == "ja"
        assert page.inner_text("h1") == "日別注文"
        assert page.get_attribute("#language-switch a[aria-current]", "lang") == "ja"
        names = [t["name"] for t in w.chart("daily-chart")]
        assert names[:3] == ["和食", "洋食", "和食率 (%)"]
        # The switch is reachable by keyboard: focus the link, press Enter.
        english = page.locator('#language-switch a[hreflang="en"]')
        assert english.inner_text() == "English" and english.get_attribute("lang") == "en"
        english.focus()
        assert page.evaluate("document.activeElement.textContent") == "English"
        page.keyboard.press("Enter")
        page.wait_for_url("**lang=en**")
        assert page.get_attribute("html", "lang") == "en"
        assert page.inner_text("h1") == "Daily orders"
        assert page.inner_text("#day-japanese") == "110"  # the same page and date
        assert page.get_attribute("#language-switch a[aria-current]", "lang") == "en"
        names = [t["name"] for t in w.chart("daily-chart")]
        assert names[:3] == ["Japanese", "Western", "Japanese share (%)"]
        cookie = next(c for c in w.context.cookies() if c["name"] == "lang")
        assert cookie["value"] == "en" and cookie["sameSite"] == "Lax" and cookie["httpOnly"]
        # The next page, without ?lang=: still English (the cookie), whatever the browser asks for.
        page.click("header nav >> text=Segments")
        page.wait_for_url("**/segments")
        assert page.get_attribute("html", "lang") == "en" and page.inner_text("h1") == "Segments"
        assert [t["name"] for t in w.chart("segments-chart")] == ["Japanese-leaning", "Western-leaning", "Even"]
        # And back to Japanese.
        page.click('#language-switch a[hreflang="ja"]')
        page.wait_for_url("**lang=ja**")
        assert page.get_attribute("html", "lang") == "ja" and page.inner_text("h1") == "セグメント"
        w.shoot("segments_ja")
        w.assert_clean()
    finally:
        w.close()


# -- accessibility (axe-core) and phone width ------------------------------------------------

AXE_FOLDER = Path(__file__).resolve().parent / "browser"  # package.json pins axe-core
AXE = AXE_FOLDER / "node_modules" / "axe-core" / "axe.min.js"
EVERY_PAGE = [
    "/daily",
    "/daily?date=2025-05-16&from=2025-05-01&to=2025-05-31&compare_from=2025-04-01",
    "/segments",
    "/segments?segment=western&min_orders=1&sort=orders",
    "/users",
    "/users?prefix=a",
    "/users/alice",
    "/users/" + quote(XSS_USER, safe=""),
    "/status",
]


@pytest.fixture(scope="module")
def axe_script() -> Path:
    """axe-core from npm (make browser installs it; installed here when missing)."""
    import subprocess

    if not AXE.exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=AXE_FOLDER, check=True, timeout=600)
    return AXE


@pytest.mark.parametrize("lang", LOCALES)
@pytest.mark.parametrize("path", EVERY_PAGE)
def test_every_page_has_no_serious_or_critical_accessibility_violation(
    browser: object, server: str, axe_script: Path, path: str, lang: str
) -> None:
    # axe is injected as an inline script, which the pages' CSP (script-src 'self') forbids: only
    # this test's context bypasses it.
    context = browser.new_context(  # type: ignore[attr-defined]
        bypass_csp=True, viewport={"width": 1280, "height": 900}, locale=LOCALES[lang])
    try:
        page = context.new_page()
        response = page.goto(server + path)
        assert response is not None and response.status == 200
        assert page.get_attribute("html", "lang") == lang
        page.add_script_tag(path=str(axe_script))
        violations = page.evaluate(
            """async () => (await axe.run(document, {resultTypes: ['violations']})).violations
                 .filter(v => v.impact === 'serious' || v.impact === 'critical')
                 .map(v => `${v.impact} ${v.id}: ${v.nodes.map(n => n.target.join(' ')).slice(0, 5).join(', ')}`)"""
        )
        assert violations == [], path
    finally:
        context.close()


@pytest.mark.parametrize("lang", LOCALES)
@pytest.mark.parametrize("path", EVERY_PAGE)
def test_every_page_fits_a_phone_375_px_wide(browser: object, server: str, path: str, lang: str) -> None:
    # English labels are the longer ones: both languages must fit.
    context = browser.new_context(viewport={"width": 375, "height": 812}, locale=LOCALES[lang])  # type: ignore[attr-defined]
    try:
        page = context.new_page()
        response = page.goto(server + path)
        assert response is not None and response.status == 200
        assert page.get_attribute("html", "lang") == lang
        if page.locator("[data-chart]").count():
            page.wait_for_selector(".chart[data-rendered='true']", timeout=20_000)
        # No horizontal scrolling of the page: wide tables scroll inside their own box.
        assert page.evaluate("document.documentElement.scrollWidth") <= 375, path
        SCREENSHOTS.mkdir(exist_ok=True)
        name = path.strip("/").split("?")[0].replace("/", "_")[:40] or "root"
        page.screenshot(path=str(SCREENSHOTS / f"phone_{name}_{EVERY_PAGE.index(path)}_{lang}.png"), full_page=True)
    finally:
        context.close()


def test_status_page_shows_the_stream_the_days_and_the_runs(watched: Watched, cassandra: object) -> None:
    from datetime import UTC, datetime, timedelta

    from PIL import Image, ImageStat

    # The streaming job's progress row, as it writes it: 17 records behind, heard 30 s ago.
    heard = datetime.now(UTC) - timedelta(seconds=30)
    cassandra.execute(  # type: ignore[attr-defined]
        "INSERT INTO stream_progress (topic, query_id, run_id, batch_id, batch_at, batch_duration_ms, input_rows, "
        "input_rows_per_second, processed_rows_per_second, offsets_behind, rows_valid, rows_rejected, written_at) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        ("order-logs", "q-1", "run-1", 41, heard, 1500, 4000, 2600.0, 3100.0, {0: 5, 1: 0, 2: 12}, 3990, 10, heard),
    )
    page = watched.open("/daily")
    page.click("header nav >> text=Status")  # the header's link
    page.wait_for_url("**/status")
    page = watched.open("/status?to=2025-06-01")
    assert page.inner_text("#stream-state").startswith("Behind: 17 records not processed yet")
    assert page.inner_text("#stream-offsets-behind") == "17"
    assert page.inner_text("#stream-partitions") == "0: 5, 1: 0, 2: 12"
    row = page.locator('tr[data-date="2025-05-30"] td').all_inner_texts()
    assert row[:5] == ["2025-05-30", "207", "230", "7", "99"]
    reasons = page.locator('tr[data-date="2025-05-31"] td.reasons code').all_inner_texts()
    assert reasons == ["record is not JSON (Expecting value)", "<img src=x onerror=alert(1)>: unknown field"]
    assert page.locator("#status-days img, #status-days script").count() == 0  # reasons are text
    assert page.inner_text("#waiting-dates").startswith("2025-05-30: 7 orders arrived after its last run")
    assert page.locator("#status-runs tbody tr").count() == 2
    # The page's own stylesheet applied (the CSP allows only same-origin styles).
    assert page.eval_on_selector("#stream-state", "e => getComputedStyle(e).backgroundColor") == "rgb(255, 244, 224)"
    watched.shoot("status")
    shot = SCREENSHOTS / "viewer_status.png"
    with Image.open(shot) as image:
        assert image.width == 1280 and image.height >= 900, image.size
        # Not blank: the page's colours vary (a blank page has one colour, stddev 0).
        assert max(ImageStat.Stat(image.convert("L")).stddev) > 20
        # The stream's state badge (amber for "behind") is in the picture where the page drew it.
        box = page.locator("#stream-state").bounding_box()
        assert box is not None
        centre = image.convert("RGB").getpixel((int(box["x"] + 4), int(box["y"] + box["height"] / 2)))
        assert centre == (255, 244, 224), centre
    watched.assert_clean()
    cassandra.execute("TRUNCATE stream_progress", timeout=60)  # type: ignore[attr-defined]
