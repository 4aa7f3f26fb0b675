"""The viewer's pages and its basic auth with the Flask test client against the real
Cassandra: exact numbers on each page, escaping, empty states, bad parameters."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from datetime import date, datetime
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

import hypothesis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.viewer_data import XSS_USER, ViewerData, japanese_ids, truncate, viewer_app
from viewer.db import close_app
from viewer.params import encode_cursor

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def app(standard_viewer: object) -> object:
    return standard_viewer


@pytest.fixture
def client(app: object) -> object:
    """A reader who chose English (the pages' texts below; tests/test_viewer_i18n.py has both)."""
    client = app.test_client()  # type: ignore[attr-defined]
    client.set_cookie("lang", "en")
    return client


def page(client: object, url: str, status: int = 200) -> str:
    response = client.get(url)  # type: ignore[attr-defined]
    assert response.status_code == status, response.get_data(as_text=True)[:2000]
    assert response.mimetype == "text/html"
    return response.get_data(as_text=True)


def figure(html: str, chart_id: str) -> dict:
    match = re.search(rf'<script type="application/json" data-chart="{chart_id}">(.*?)</script>', html, re.S)
    assert match, f"no figure {chart_id}"
    return json.loads(match.group(1))


def test_root_redirects_to_daily(client: object) -> None:
    response = client.get("/")  # type: ignore[attr-defined]
    assert response.status_code == 302 and response.headers["Location"] == "/daily"


def test_daily_page_defaults_to_latest_date_and_30_day_range(client: object) -> None:
    html = page(client, "/daily")
    assert "Last aggregated: <strong>Sat 2025-05-31</strong>" in html
    assert "(at 2025-06-01 11:00 JST)" in html  # 02:00 UTC in the business time zone
    assert '<span class="value" id="day-japanese">120</span>' in html
    assert '<span class="value" id="day-western">95</span>' in html
    assert '<span class="value" id="day-total">215</span>' in html
    assert '<span class="value" id="day-share">55.8%</span>' in html
    fig = figure(html, "daily-chart")
    japanese, western, share, moving = fig["data"]
    assert moving["name"] == "Japanese share, 7 days (%)" and moving["yaxis"] == "y2"
    assert moving["x"] == japanese["x"] and moving["y"][0] == 51.79 and moving["y"][-1] == 56.19
    assert japanese["name"] == "Japanese" and western["name"] == "Western"
    # 2025-05-02 .. 2025-05-31 without the 15th
    assert japanese["x"][0] == "2025-05-02" and japanese["x"][-1] == "2025-05-31" and len(japanese["x"]) == 29
    assert "2025-05-15" not in japanese["x"]
    assert japanese["y"][-1] == 120 and western["y"][-1] == 95 and share["y"][-1] == 55.81
    assert share["yaxis"] == "y2"
    assert 'data-date="2025-05-15" class="missing"' in html
    assert "<td class=\"num\">120</td><td class=\"num\">95</td><td class=\"num\">215</td>" in html
    assert '<script src="/assets/plotly-' in html and "cdn" not in html.lower()
    assert 'id="daily-csv-link" href="/api/daily_order_summaries.csv?from=2025-05-02&amp;to=2025-05-31"' in html


def card_changes(html: str) -> dict[tuple[str, str], str]:
    """(card, reference) -> the change line's text, whitespace collapsed."""
    pattern = r'<span class="change" data-reference="(\w+)" data-card="(\w+)">(.*?)</span>\s*(?=<span class="ch|</div>)'
    found = re.findall(pattern, html, re.S)
    return {(card, ref): re.sub(r"<[^>]+>", "", " ".join(text.split())) for ref, card, text in found}


def test_daily_cards_show_the_change_against_the_previous_day_and_a_week_earlier(client: object) -> None:
    changes = card_changes(page(client, "/daily?date=2025-05-31"))
    assert changes == {
        ("japanese", "previous_day"): "vs previous day: −10 (−7.7%)",
        ("japanese", "week_before"): "vs same weekday last week: −4 (−3.2%)",
        ("western", "previous_day"): "vs previous day: −5 (−5.0%)",
        ("western", "week_before"): "vs same weekday last week: −7 (−6.9%)",
        ("total", "previous_day"): "vs previous day: −15 (−6.5%)",
        ("total", "week_before"): "vs same weekday last week: −11 (−4.9%)",
        ("japanese_share", "previous_day"): "vs previous day: −0.7 pt",
        ("japanese_share", "week_before"): "vs same weekday last week: +0.9 pt",
    }
    after_gap = card_changes(page(client, "/daily?date=2025-05-16"))
    assert after_gap[("total", "previous_day")] == "vs previous day: no data"
    assert after_gap[("japanese", "week_before")] == "vs same weekday last week: +7 (+6.4%)"


def test_daily_page_says_when_orders_arrived_after_the_last_run(client: object) -> None:
    html = page(client, "/daily?date=2025-05-30")
    assert (
        '<p class="late" id="day-late">Late orders: <strong id="day-late-count">7</strong> orders '
        "arrived after the last run (at 2025-05-31 02:00 JST); the next nightly run folds them in.</p>"
    ) in html
    assert 'id="day-late"' not in page(client, "/daily?date=2025-05-31")  # its run saw everything


def test_daily_page_shows_rejected_counts_and_samples_escaped(client: object) -> None:
    html = page(client, "/daily")
    # The range table's Rejected column: 7 on 05-31, 99 on 05-30, 0 elsewhere, missing dates too.
    cells = dict(re.findall(r'<tr data-date="([0-9-]+)".*?<td class="num rejected-count">([0-9,]+)</td></tr>', html))
    assert len(cells) == 30 and cells["2025-05-31"] == "7" and cells["2025-05-30"] == "99"
    assert cells["2025-05-15"] == "0" and set(cells.values()) == {"0", "7", "99"}
    assert '<th class="num" title="records the streaming job rejected">Rejected</th>' in html
    section = html[html.index('<section class="card" id="rejected">'):]
    assert '<strong id="rejected-count">7</strong> records of Sat 2025-05-31 rejected by the streaming job' in section
    samples = re.findall(r'<tr><td class="reason">(.*?)</td><td class="coordinates">(.*?)</td>'
                         r'<td class="payload">(.*?)</td></tr>', section, re.S)
    assert [coordinates for _, coordinates, _ in samples] == [
        "order-logs:0:0", "order-logs:0:1", "order-logs:0:2", "order-logs:1:3", "order-logs:1:4"]  # up to 5
    # Hostile payloads and reasons are text: autoescaped markup, control characters and bad bytes escaped.
    assert samples[0][2] == '&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; <span class="muted">(27 bytes)</span>'
    assert samples[1][2] == 'bell\\x07ring <span class="muted">(9 bytes)</span>'
    assert samples[2][0] == "&lt;img src=x onerror=alert(1)&gt;: unknown field"
    assert samples[3][2].startswith("\\xff\\xfe{") and samples[4][2] == "(none)"
    assert "<script>alert" not in html and "<img src=x" not in html and "\x07" not in html
    assert "<code>python -m tools.rejected list --date 2025-05-31</code>" in section


def test_daily_page_of_a_date_with_no_rejected_records_or_none_kept(client: object) -> None:
    html = page(client, "/daily?date=2025-05-29")
    assert '<p class="empty" id="rejected-none">No rejected records on Thu 2025-05-29.</p>' in html
    html = page(client, "/daily?date=2025-05-30")
    assert '<strong id="rejected-count">99</strong> records of Fri 2025-05-30' in html
    assert "None of them is kept any more: rejected records expire after 30 days." in html
    assert 'id="rejected-samples"' not in html


def test_daily_page_of_a_chosen_date_and_range(client: object) -> None:
    html = page(client, "/daily?date=2025-05-10&from=2025-05-09&to=2025-05-11")
    assert '<span class="value" id="day-japanese">110</span>' in html
    assert '<span class="value" id="day-western">100</span>' in html
    fig = figure(html, "daily-chart")
    assert fig["data"][0]["x"] == ["2025-05-09", "2025-05-10", "2025-05-11"]
    assert fig["data"][0]["y"] == [109, 110, 111]
    assert fig["data"][1]["y"] == [97, 100, 103]


def test_daily_chart_overlays_a_second_period_day_by_day(client: object) -> None:
    html = page(client, "/daily?date=2025-05-18&from=2025-05-16&to=2025-05-18&compare_from=2025-05-01")
    traces = figure(html, "daily-chart")["data"]
    assert [t["name"] for t in traces[4:]] == ["Total, 2025-05-01 – 2025-05-03",
                                               "Japanese share (%), 2025-05-01 – 2025-05-03"]
    total, share = traces[4:]
    assert total["x"] == share["x"] == ["2025-05-16", "2025-05-17", "2025-05-18"]
    assert total["customdata"] == ["2025-05-01", "2025-05-02", "2025-05-03"]
    assert total["y"] == [194, 198, 202] and share["y"] == [52.06, 51.52, 50.99] and share["yaxis"] == "y2"
    assert 'name="compare_from" value="2025-05-01"' in html
    assert "Dashed: Thu 2025-05-01 – Sat 2025-05-03 (3 aggregated days)" in html


def test_daily_page_links_this_month_against_last_month(client: object) -> None:
    html = page(client, "/daily")
    assert ('id="month-compare-link" href="/daily?from=2025-05-01&amp;to=2025-05-31&amp;compare_from=2025-04-01'
            '&amp;date=2025-05-31"') in html


def test_daily_page_heatmap_of_weekday_and_hour(client: object) -> None:
    html = page(client, "/daily?from=2025-05-24&to=2025-05-31")
    fig = figure(html, "hourly-chart")
    orders, share = fig["data"]
    assert (orders["type"], orders["name"], share["name"]) == ("heatmap", "Orders", "Japanese share (%)")
    assert orders["y"][5] == "Sat" and orders["x"][12] == "12:00"
    assert orders["z"][5][12] == 106 and orders["z"][4][19] == 120  # Saturday lunch, Friday dinner
    assert share["z"][5][12] == round(100 * 84 / 106, 2) and share["z"][6][12] is None  # Sunday: no data
    assert share.get("visible") is False  # the switch shows one at a time
    # The text alternative: a summary sentence and the table of every cell.
    assert ("Orders by weekday and hour (Asia/Tokyo) over 3 aggregated dates: the most on Sat at 19:00 "
            "(300 orders)") in html
    assert "<caption>Orders by hour and weekday, 2025-05-24 – 2025-05-31: Japanese / Western (Japanese share)" in html
    row = re.search(r'<tr data-hour="12">(.*?)</tr>', html, re.S).group(1)  # type: ignore[union-attr]
    cells = re.findall(r'<td class="num" data-weekday="(\d)">(.*?)</td>', row, re.S)
    assert dict(cells)["6"] == "84 / 22 (79.2%)"
    assert dict(cells)["5"] == "80 / 30 (72.7%)"
    assert "no data" in dict(cells)["7"]
    assert 'data-chart-switch="hourly-chart"' in html


def test_daily_page_heatmap_of_a_range_without_hourly_counts(client: object) -> None:
    html = page(client, "/daily?from=2025-05-01&to=2025-05-10")
    assert 'data-chart="hourly-chart"' not in html
    assert "No orders by hour between 2025-05-01 and 2025-05-10." in html


def test_daily_page_of_a_date_not_aggregated_says_so(client: object) -> None:
    html = page(client, "/daily?date=2025-05-15")
    assert "Thu 2025-05-15 has not been aggregated yet. The latest aggregated date is Sat 2025-05-31." in html
    html = page(client, "/daily?from=2020-01-01&to=2020-01-31")
    assert "No aggregated days between Wed 2020-01-01 and Fri 2020-01-31." in html


def test_daily_page_bad_parameter_is_400_page(client: object) -> None:
    html = page(client, "/daily?date=<b>x</b>", 400)
    assert "invalid parameter &#39;date&#39;: must be a date YYYY-MM-DD, got &#39;&lt;b&gt;x&lt;/b&gt;&#39;" in html
    assert "<b>x</b>" not in html


def test_segments_page_sizes_chart_and_first_page(client: object) -> None:
    html = page(client, "/segments")
    assert '<tr data-segment="japanese">' in html
    assert '<td class="num">255</td><td class="num">+12</td><td class="num">−3</td>' in html
    assert '<td class="num">2</td><td class="num">+1</td><td class="num">−0</td>' in html
    fig = figure(html, "segments-chart")
    assert [t["name"] for t in fig["data"]] == ["Japanese-leaning", "Western-leaning", "Even"]
    assert fig["data"][0]["x"] == ["2025-05-29", "2025-05-30", "2025-05-31"]
    assert fig["data"][0]["y"] == [241, 246, 255]
    assert fig["data"][2]["y"] == [2, 2, 1]
    flows = figure(html, "flows-chart")
    assert [(t["name"], t["y"]) for t in flows["data"]] == [
        ("Japanese-leaning entered", [3, 5, 12]), ("Japanese-leaning exited", [-1, 0, -3]),
        ("Western-leaning entered", [0, 0, 1]), ("Western-leaning exited", [0, 0, 0]),
        ("Even entered", [1, 0, 0]), ("Even exited", [0, 0, -1]),
    ]
    assert flows["data"][0]["x"] == ["2025-05-29", "2025-05-30", "2025-05-31"]
    assert flows["layout"]["barmode"] == "relative"
    listed = re.findall(r'<a class="user-id" href="[^"]*">(.*?)</a>', html)
    assert len(listed) == 100
    assert listed[1:] == japanese_ids()[1:100]
    # The XSS id is shown as text, escaped, and its link is URL-quoted.
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert XSS_USER not in html
    assert 'href="/users/%3Cscript%3Ealert(%22x%22)%3C/script%3E"' in html
    assert 'id="csv-link" href="/api/user_segments/japanese.csv"' in html
    assert "255 users in Japanese-leaning." in html
    assert 'id="sizes-csv-link" href="/api/segment_sizes.csv?from=2025-05-02&amp;to=2025-05-31"' in html
    assert 'id="next-page"' in html and 'id="prev-page"' not in html


def test_segments_page_audience_filters_show_the_count_before_the_download(client: object, cassandra: object) -> None:
    ViewerData(cassandra).members([("zz-a", 5, 1, date(2025, 5, 31)), ("zz-b", 3, 0, date(2025, 5, 20)),
                                   ("zz-c", 9, 2, date(2025, 5, 24))])
    try:
        html = page(client, "/segments?segment=japanese&prefix=zz-&min_orders=6&sort=orders")
        assert re.findall(r'<a class="user-id" href="[^"]*">(.*?)</a>', html) == ["zz-c", "zz-a"]
        assert "<strong>2</strong> users match these filters" in html
        csv_link = 'id="csv-link" href="/api/user_segments/japanese.csv?prefix=zz-&amp;min_orders=6&amp;sort=orders"'
        assert csv_link in html
        assert 'name="min_orders" min="1" value="6"' in html and '<option value="orders" selected>' in html
        html = page(client, "/segments?segment=japanese&prefix=zz-&active_within_days=7&per_page=1")
        assert re.findall(r'<a class="user-id" href="[^"]*">(.*?)</a>', html) == ["zz-a"]
        assert "<strong>1</strong> user matches these filters" in html and 'id="next-page"' not in html
    finally:
        statement = cassandra.prepare("DELETE FROM user_segments WHERE segment = 'japanese' AND user_id = ? "  # type: ignore[attr-defined]
                                      "AND bucket = ?")
        from orderlog.layout import SEGMENT_BUCKETS, bucket_of

        for user_id in ("zz-a", "zz-b", "zz-c"):
            cassandra.execute(statement, (user_id, bucket_of(user_id, SEGMENT_BUCKETS)))  # type: ignore[attr-defined]


def test_segments_page_paging_with_cursor_and_numbers(client: object) -> None:
    html = page(client, "/segments?segment=japanese&per_page=100")
    next_link = re.search(r'<a href="([^"]*)" id="next-page">', html).group(1).replace("&amp;", "&")
    html2 = page(client, next_link)
    listed = re.findall(r'<a class="user-id" href="[^"]*">(.*?)</a>', html2)
    assert listed == japanese_ids()[100:200]
    assert "<span>Page 2</span>" in html2 and '<td class="num">101</td>' in html2
    html3 = page(client, "/segments?segment=japanese&page=3")
    assert re.findall(r'<a class="user-id" href="[^"]*">(.*?)</a>', html3) == japanese_ids()[200:]
    assert 'id="prev-page"' in html3 and 'id="next-page"' not in html3


def test_segments_page_prefix_search_and_empty_result(client: object) -> None:
    html = page(client, "/segments?segment=japanese&prefix=a")
    assert re.findall(r'<a class="user-id" href="[^"]*">(.*?)</a>', html) == ["alice", "amy"]
    assert 'href="/api/user_segments/japanese.csv?prefix=a"' in html
    html = page(client, "/segments?segment=western&prefix=<i>")
    assert "No user of this segment has an ID starting with “&lt;i&gt;”." in html


def test_segments_page_of_an_older_date_and_unknown_segment(client: object) -> None:
    html = page(client, "/segments?date=2025-05-30")
    assert '<td class="num">246</td><td class="num">+5</td><td class="num">−0</td>' in html
    html = page(client, "/segments?date=2025-04-01")
    assert "Tue 2025-04-01 has not been aggregated yet. Segments are aggregated up to Sat 2025-05-31." in html
    html = page(client, "/segments?segment=sushi", 400)
    assert "invalid parameter &#39;segment&#39;: must be one of japanese, western, even" in html


def test_user_page(client: object) -> None:
    html = page(client, "/users/alice")
    assert '<span class="value" id="user-japanese">3</span>' in html
    assert '<span class="value" id="user-western">1</span>' in html
    assert '<span class="value" id="user-preference">Japanese-leaning</span>' in html
    fig = figure(html, "user-chart")
    assert fig["data"][0]["x"] == ["2024-12-31", "2025-05-30", "2025-05-31"]
    assert fig["data"][0]["y"] == [1, 1, 1] and fig["data"][1]["y"] == [0, 0, 1]
    timeline = re.search(r'<p id="segment-timeline">(.*?)</p>', html, re.S).group(1)
    assert " ".join(timeline.split()) == (
        'Segments: <span class="period" data-segment="japanese">Japanese-leaning since '
        "Tue 2024-12-31</span>"
    )


def test_user_page_timeline_shows_each_period(client: object, cassandra: object) -> None:
    ViewerData(cassandra).user("flipper", [(date(2025, 5, 20), 0, 1), (date(2025, 5, 26), 1, 0)])  # 0:1, then 1:1
    html = page(client, "/users/flipper")
    periods = re.findall(r'<span class="period" data-segment="(\w+)">(.*?)</span>', html)
    assert periods == [("even", "Even since Mon 2025-05-26"),
                       ("western", "Western-leaning Tue 2025-05-20 → Sun 2025-05-25")]


def test_user_page_escapes_an_xss_id_and_unknown_user_is_404(client: object) -> None:
    html = page(client, f"/users/{quote(XSS_USER, safe='')}")
    assert '<span class="user-id" id="user-id">&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;</span>' in html
    assert XSS_USER not in html
    html = page(client, "/users/<img src=x onerror=alert(1)>", 404)
    assert "No aggregated orders for user “&lt;img src=x onerror=alert(1)&gt;”." in html
    assert "<img src=x" not in html


def test_user_lookup_redirects(client: object) -> None:
    assert "Look up" in page(client, "/users")
    response = client.get("/users?user_id=a/b c")  # type: ignore[attr-defined]
    assert response.status_code == 302 and response.headers["Location"] == "/users/a/b%20c"


def test_users_page_finds_users_by_prefix(client: object) -> None:
    html = page(client, "/users?prefix=a")
    rows = re.findall(r'<tr><td><a class="user-id" href="([^"]*)">(.*?)</a></td><td>(.*?)</td>', html)
    assert rows == [("/users/alice", "alice", "Japanese-leaning"),
                    ("/users/amy", "amy", "Japanese-leaning"),
                    ("/users/anna", "anna", "Western-leaning")]
    assert 'id="users-more"' not in html and 'value="a"' in html
    many = page(client, "/users?prefix=p-")
    assert len(re.findall(r'class="user-id"', many)) == 20 and 'id="users-more"' in many
    none = page(client, "/users?prefix=%3Cb%3E")
    assert "No user has an ID starting with “&lt;b&gt;”." in none


def chart_summaries(html: str) -> dict[str, str]:
    return dict(re.findall(r'<p class="chart-summary" id="([\w-]+)-summary">(.*?) <a href="#[\w-]+">', html))


def test_charts_have_a_text_alternative_tables_a_caption_and_the_nav_marks_the_page(client: object) -> None:
    html = page(client, "/daily?date=2025-05-10&from=2025-05-09&to=2025-05-11")
    assert chart_summaries(html) == {"daily-chart": (
        "Orders per day, Fri 2025-05-09 to Sun 2025-05-11 (3 aggregated days): 630 orders, the most on Sun 2025-05-11 "
        "(214); "
        "Japanese share 52.9% on the first day and 51.9% on the last, 52.0% over the last 7 days.")}
    assert 'role="figure" aria-labelledby="daily-chart-summary"' in html
    assert "<caption>Daily orders Fri 2025-05-09 – Sun 2025-05-11, latest first</caption>" in html
    current = re.findall(r'<a [^>]*aria-current="page"[^>]*>', html)
    assert current == ['<a href="/daily" class="active" aria-current="page">']
    html = page(client, "/segments")
    assert chart_summaries(html) == {
        "segments-chart": "Users per segment, Thu 2025-05-29 to Sat 2025-05-31: Japanese-leaning 241 → 255; "
                          "Western-leaning 1 → 2; Even 2 → 1.",
        "flows-chart": "Users who entered and exited each segment per day, Thu 2025-05-29 to Sat 2025-05-31: "
                       "Japanese-leaning +20 −4; Western-leaning +1 −0; Even +1 −1.",
    }
    # the table both charts draw
    assert '<tr><td>Sat 2025-05-31</td><td class="num">255</td><td class="num">+12</td><td class="num">−3</td>' in html
    assert re.findall(r"<caption>(.*?)</caption>", html) == [
        "Segment sizes as of Sat 2025-05-31",
        "Segment sizes, entered and exited, Fri 2025-05-02 – Sat 2025-05-31",
        "Users of Japanese-leaning, page 1"]
    html = page(client, "/users/alice")
    assert chart_summaries(html) == {
        "user-chart": "Orders per day, Tue 2024-12-31 to Sat 2025-05-31 (3 days with orders): 3 Japanese and 1 "
                      "Western."}
    assert 'href="/users" class="active" aria-current="page"' in html


def test_plotly_is_served_by_the_app(client: object) -> None:
    import plotly

    response = client.get(f"/assets/plotly-{plotly.__version__}.min.js")  # type: ignore[attr-defined]
    assert response.status_code == 200 and response.mimetype == "text/javascript"
    body = response.get_data()
    assert len(body) > 1_000_000 and b"plotly.js" in body[:2000]
    etag = response.headers["ETag"]
    again = client.get(f"/assets/plotly-{plotly.__version__}.min.js", headers={"If-None-Match": etag})  # type: ignore[attr-defined]
    assert again.status_code == 304


# -- whatever the path and query: never a 5xx, and a 4xx page says what is wrong ------------------

PARAMETERS = ("date", "from", "to", "segment", "page", "per_page", "page_no", "prefix", "after", "user_id",
              "compare_from", "min_orders", "active_within_days", "sort", "limit")
# Dates anywhere in the calendar, and often within a few weeks of its ends.
dates = st.one_of(
    st.dates(max_value=date(1, 3, 1)), st.dates(min_value=date(9999, 10, 1)), st.dates(),
).map(date.isoformat)
numbers = st.one_of(st.integers(min_value=-5, max_value=1001), st.integers(min_value=-(10**12), max_value=10**12))
query_values = st.one_of(
    dates,
    st.sampled_from(["2025-05-31", "japanese", "western", "even", "", "2025-5-31", "2025-05-31\n"]),
    numbers.map(str),
    st.text(max_size=40),
    st.text(max_size=200).map(lambda t: encode_cursor(t) if t else t),  # cursors of any id
    st.from_regex(r"[A-Za-z0-9_-]{0,40}", fullmatch=True),  # things that look like cursors
)
queries_ = st.one_of(
    # each parameter at most once, with a value of its kind or any other
    st.fixed_dictionaries(
        {},
        optional={
            **{name: dates | query_values for name in ("date", "from", "to", "compare_from")},
            **{name: numbers.map(str) | query_values for name in ("min_orders", "active_within_days", "limit")},
            "sort": st.sampled_from(["orders", "user_id"]) | query_values,
            "segment": st.sampled_from(["japanese", "western", "even"]) | query_values,
            **{name: numbers.map(str) | query_values for name in ("page", "per_page", "page_no")},
            **{name: query_values for name in ("prefix", "after", "user_id")},
        },
    ).map(urlencode),
    # any names, repeated ones too
    st.lists(st.tuples(st.sampled_from(PARAMETERS) | st.text(max_size=8), query_values), max_size=6).map(urlencode),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=60),  # raw, with broken %-escapes
)
pages = st.sampled_from(["/daily", "/segments", "/users", "/", "/users/alice"])
page_paths = st.one_of(
    pages, pages, pages,  # the pages themselves most often, with any query
    st.text(min_size=1, max_size=140).map(lambda t: "/users/" + quote(t, safe="/")),
    # raw, with broken %-escapes ('?' and '#' would end the path)
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="?#"), max_size=30)
    .map(lambda t: "/users/" + t),
    st.text(max_size=20).map(lambda t: "/" + quote(t, safe="/")),
)


api_calls = st.sampled_from([
    "/api/daily_order_summaries", "/api/segment_sizes", "/api/rejected_events", "/api/user_segments",
    "/api/user_segments/japanese", "/api/user_segments/even.csv", "/api/users/alice", "/api/status",
    "/api/daily_order_summaries.csv", "/api/segment_sizes.csv", "/api/users",
])
any_paths = page_paths | api_calls | st.text(max_size=140).map(lambda t: "/api/users/" + quote(t, safe="/"))


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(path=any_paths, query=queries_)
def test_any_request_gets_no_5xx_and_a_4xx_says_what_is_wrong(app: object, path: str, query: str) -> None:
    """Pages answer HTML, with an error page that says what is wrong; the API answers JSON,
    with an error that says it (and names the parameter of a 400)."""
    response = app.test_client().get(path, query_string=query)  # type: ignore[attr-defined]
    hypothesis.event(f"status {response.status_code}")  # see --hypothesis-show-statistics
    assert response.status_code < 500, response.get_data(as_text=True)[:500]
    if 300 <= response.status_code < 400:
        assert response.headers["Location"]
        return
    if path.startswith("/api/"):
        if response.status_code >= 400:
            body = response.get_json()
            assert body["error"] and (response.status_code != 400 or body["parameter"] in body["error"])
        return
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    if response.status_code >= 400:
        message = re.search(r'<p id="error-message">(.*?)</p>', html, re.S)
        assert message and message.group(1).strip(), html[:500]
        if response.status_code == 400:
            assert "invalid parameter" in message.group(1)


# A Host header is as much input as a query: any latin-1 text a client may send (a label
# longer than 63 characters, an empty label, a bad port) must not reach a 5xx.
host_headers = st.one_of(
    st.sampled_from(["x" * 64, "a..b", ".", "[::1", "127.0.0.1:99999", "é.example", "-", "a_b"]),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0xFF), min_size=1, max_size=80),
)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(path=st.sampled_from(["/", "/daily", "/segments", "/users/alice", "/status", "/healthz", "/readyz",
                             "/nope", "/api/status", "/api/users/alice", "/api/nope"]),
       host=host_headers)
def test_any_host_header_gets_no_5xx(app: object, path: str, host: str) -> None:
    """A page that cannot even be routed for its Host answers a bare error page: the usual
    one links to the app's pages, which cannot be built for that host."""
    response = app.test_client().get(path, headers={"Host": host})  # type: ignore[attr-defined]
    assert response.status_code < 500, response.get_data(as_text=True)[:500]
    if response.status_code >= 400 and not path.startswith("/api/") and path not in ("/healthz", "/readyz"):
        assert response.mimetype == "text/html"
        assert re.search(r'<p id="error-message">.+</p>', response.get_data(as_text=True)), response.data[:300]


def test_a_host_no_url_can_carry_gets_a_400_page_that_says_so(app: object) -> None:
    response = app.test_client().get("/daily", headers={"Host": "x" * 64})  # type: ignore[attr-defined]
    assert response.status_code == 400
    assert '<p id="error-message">The browser (or proxy) sent a request that this server could not understand.</p>' \
        in response.get_data(as_text=True)


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(
    path=st.sampled_from(["/daily", "/segments", "/api/daily_order_summaries", "/api/segment_sizes",
                          "/api/rejected_events", "/api/daily_order_summaries.csv", "/api/segment_sizes.csv"]),
    query=st.fixed_dictionaries({}, optional={"date": dates, "from": dates, "to": dates}),
)
def test_any_dates_get_an_answer_not_a_5xx(app: object, path: str, query: dict[str, str]) -> None:
    """Dates anywhere, the ends of the calendar included: a page, an empty range, the
    usual 404 of a date not aggregated, or a 400 naming the parameter."""
    response = app.test_client().get(path, query_string=query)  # type: ignore[attr-defined]
    assert response.status_code in (200, 400, 404), response.get_data(as_text=True)[:500]
    if path.startswith("/api/") and response.status_code == 400:
        assert response.get_json()["parameter"] in ("date", "from", "to")


# -- basic auth ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def locked(app: object, settings: object) -> Iterator[object]:
    locked = viewer_app(settings, viewer_user="analyst", viewer_password="s3cret")
    yield locked.test_client()  # type: ignore[attr-defined]
    close_app(locked)  # type: ignore[arg-type]


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.mark.parametrize(
    "url",
    ["/daily", "/segments", "/users/alice", "/api/user_segments", "/api/user_segments/japanese.csv",
     "/api/daily_order_summaries?date=2025-05-31", "/static/viewer.js", "/api/users/alice", "/api/openapi.json"],
)
def test_with_auth_every_route_needs_the_credentials(locked: object, url: str) -> None:
    anonymous = locked.get(url)  # type: ignore[attr-defined]
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"] == 'Basic realm="orderlog viewer", charset="UTF-8"'
    assert anonymous.get_json() == {"error": "authentication required"}
    assert locked.get(url, headers=_basic("analyst", "wrong")).status_code == 401  # type: ignore[attr-defined]
    assert locked.get(url, headers=_basic("other", "s3cret")).status_code == 401  # type: ignore[attr-defined]
    assert locked.get(url, headers=_basic("analyst", "s3cret")).status_code == 200  # type: ignore[attr-defined]


def test_with_auth_the_openapi_document_declares_basic_auth(locked: object) -> None:
    document = locked.get("/api/openapi.json", headers=_basic("analyst", "s3cret")).get_json()  # type: ignore[attr-defined]
    assert document["components"]["securitySchemes"] == {"basic": {"type": "http", "scheme": "basic"}}
    assert "401" in document["paths"]["/api/status"]["get"]["responses"]


def test_with_auth_the_probes_answer_without_credentials_and_are_never_cached(locked: object, settings: object) -> None:
    live = locked.get("/healthz")  # type: ignore[attr-defined]
    assert (live.status_code, live.get_json()) == (200, {"status": "ok"})
    ready = locked.get("/readyz")  # type: ignore[attr-defined]
    keyspace = settings.cassandra.keyspace  # type: ignore[attr-defined]
    assert (ready.status_code, ready.get_json()) == (
        200, {"status": "ok", "cassandra": "reachable", "keyspace": keyspace})
    # outside the response cache: no ETag to revalidate, never a 304 for a remembered answer
    assert "ETag" not in ready.headers
    assert locked.get("/readyz", headers={"If-None-Match": "*"}).status_code == 200  # type: ignore[attr-defined]
    document = locked.get("/api/openapi.json", headers=_basic("analyst", "s3cret")).get_json()  # type: ignore[attr-defined]
    for probe in ("/healthz", "/readyz"):
        assert document["paths"][probe]["get"]["security"] == []
        assert "401" not in document["paths"][probe]["get"]["responses"]


def test_without_auth_config_no_credentials_are_needed(client: object) -> None:
    assert client.get("/api/user_segments").status_code == 200  # type: ignore[attr-defined]


def test_auth_needs_both_user_and_password(settings: object) -> None:
    from orderlog.config import ConfigError

    with pytest.raises(ConfigError, match="ORDERLOG_VIEWER_USER='analyst': expected ORDERLOG_VIEWER_PASSWORD too"):
        viewer_app(settings, viewer_user="analyst")


# -- empty states: last, because they empty the tables ------------------------------------


def test_empty_states_read_well(app: object, cassandra: object) -> None:
    truncate(cassandra)
    client = app.test_client()  # type: ignore[attr-defined]
    client.set_cookie("lang", "en")
    html = page(client, "/daily")
    assert "Nothing aggregated yet" in html
    assert "No daily summaries yet: the aggregate job has not run." in html
    assert "data-chart" not in html and "/assets/plotly-" not in html
    html = page(client, "/segments")
    assert "No segments yet: the aggregate job has not run." in html
    assert "No users in this segment." in html
    assert client.get("/api/daily_order_summaries").get_json() == {"error": "nothing has been aggregated yet"}
    body = client.get("/api/user_segments").get_json()
    assert body["as_of"] is None and body["message"] == "no segment sizes yet: the aggregate job has not run"
    assert body["segments"]["japanese"]["count"] == 0 and body["segments"]["japanese"]["user_ids"] == []
    missing = client.get("/api/daily_order_summaries?date=2025-05-31")
    assert missing.status_code == 404
    assert missing.get_json()["error"] == "2025-05-31 has not been aggregated yet (nothing is aggregated yet)"
    assert client.get("/api/user_segments/japanese.csv").get_data(as_text=True) == "\ufeffuser_id,japanese,western\r\n"
    for export in ("/api/daily_order_summaries.csv", "/api/segment_sizes.csv"):
        assert client.get(export).get_json() == {"error": "nothing has been aggregated yet"}
    assert client.get("/api/segment_sizes.csv?to=2025-05-31").get_data(as_text=True) == (
        "\ufeffas_of,segment,users,entered,exited\r\n"
    )
    assert client.get("/api/status").get_json() == {
        "latest_summary_date": None, "aggregated_at": None, "segments_as_of": None, "last_run": None
    }
    # Nothing aggregated: the rejected counts of the 30 days up to today in the business time zone.
    body = client.get("/api/rejected_events").get_json()
    today = datetime.now(ZoneInfo("Asia/Tokyo")).date()
    assert body["to"] in (today.isoformat(), datetime.now(ZoneInfo("Asia/Tokyo")).date().isoformat())
    assert (len(body["days"]), body["total"]) == (30, 0)
    assert 'id="rejected"' not in page(client, "/daily")  # no date to show
    html = page(client, "/daily?date=2025-05-31")
    assert "No rejected records on Sat 2025-05-31." in html


def test_cassandra_unreachable_is_503_with_retry_after_never_500(settings: object) -> None:
    from tests.conftest import free_ports

    (port,) = free_ports(1)  # nothing listens there: the driver cannot connect
    app = viewer_app(settings.replace(cassandra_port=port))  # type: ignore[attr-defined]
    client = app.test_client()  # type: ignore[attr-defined]
    response = client.get("/api/daily_order_summaries?date=2025-05-31")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.get_json() == {"error": "the data store (Cassandra) is unavailable; retry shortly"}
    response = client.get("/segments?lang=en")
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    html = response.get_data(as_text=True)
    assert "the data store (Cassandra) is unavailable; retry shortly" in html
    assert "Aggregation status unavailable." in html
    # the probes: alive, not ready, and why, in one line
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.headers["Retry-After"] == "5"
    body = ready.get_json()
    assert {k: body[k] for k in ("status", "cassandra")} == {"status": "unavailable", "cassandra": "unreachable"}
    assert body["error"].startswith(f"Cassandra at 127.0.0.1:{port}: ")
    assert "Connection refused" in body["error"] and "\n" not in body["error"]
