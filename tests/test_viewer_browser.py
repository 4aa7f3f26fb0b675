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


class Watched:
    """A page that records console errors, page errors, dialogs and off-host requests."""

    def __init__(self, browser: object, base: str):
        self.base = base
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
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
    assert [t["name"] for t in traces] == ["和食 Japanese", "洋食 Western", "和食率 Japanese share (%)"]
    japanese, western, share = traces
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
    watched.assert_clean()


def test_segments_page_chart_list_paging_and_xss_as_text(watched: Watched) -> None:
    page = watched.open("/segments")
    traces = watched.chart("segments-chart")
    assert [(t["name"], t["y"]) for t in traces] == [
        ("和食派 Japanese-leaning", [241, 246, 255]),
        ("洋食派 Western-leaning", [1, 1, 2]),
        ("どちらも Even", [2, 2, 1]),
    ]
    assert traces[0]["x"] == ["2025-05-29", "2025-05-30", "2025-05-31"]
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
    assert page.inner_text("#user-preference") == "和食派 Japanese-leaning"
    watched.shoot("user")
    watched.assert_clean()


def test_a_date_not_aggregated_reads_well(watched: Watched) -> None:
    page = watched.open("/daily?date=2025-05-15&from=2020-01-01&to=2020-01-31")
    assert page.inner_text("#day-empty") == (
        "2025-05-15 has not been aggregated yet (the latest aggregated date is 2025-05-31)."
    )
    assert page.inner_text("#range-empty") == "No aggregated days between 2020-01-01 and 2020-01-31."
    watched.shoot("daily_empty")
    watched.assert_clean()
