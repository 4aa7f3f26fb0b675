"""The status page (/status) and its JSON twin (/api/status_overview) against the real
Cassandra: the stream's progress as the job persists it, per day orders ingested against
aggregated, the dates waiting for the nightly run, rejected records with sample reasons,
and the recent aggregate runs, with exact figures from the standard dataset."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.viewer_data import IMG_REASON, load_standard, viewer_app
from viewer.db import close_app
from viewer.status import ago
from viewer.status_queries import BEHIND, CAUGHT_UP, NO_PROGRESS, SILENT, StreamQueryProgress, stream_state

TOPIC = "order-logs"
# The window whose yesterday is the standard dataset's latest date (2025-05-31).
WINDOW = "to=2025-06-01"
NOT_JSON = "record is not JSON (Expecting value)"


def _progress(query_id: str, heard: datetime | None, behind: dict[int, int]) -> StreamQueryProgress:
    return StreamQueryProgress(query_id, "r", 3, heard, 100, 10, 1.0, 2.0, behind, 9, 1, heard, None)


def test_the_stream_state_comes_from_the_query_last_heard_from():
    now = datetime(2026, 5, 31, 3, 0, tzinfo=UTC)
    assert stream_state([], now) == NO_PROGRESS
    assert stream_state([_progress("q", now - timedelta(seconds=20), {0: 0, 1: 0})], now) == CAUGHT_UP
    assert stream_state([_progress("q", now - timedelta(seconds=20), {0: 0, 1: 4})], now) == BEHIND
    assert stream_state([_progress("q", now - timedelta(minutes=6), {0: 0})], now) == SILENT
    assert stream_state([_progress("q", None, {})], now) == SILENT
    idle = StreamQueryProgress("q", "r", 3, now - timedelta(hours=2), 100, 0, 0.0, 0.0, {0: 0}, 0, 0,
                               now - timedelta(hours=2), now - timedelta(seconds=8))
    assert idle.last_heard_at == now - timedelta(seconds=8) and stream_state([idle], now) == CAUGHT_UP


def test_durations_read_as_a_person_says_them():
    assert [ago(None), ago(0.4), ago(59), ago(60), ago(3_599), ago(7_200), ago(200_000)] == [
        "—", "0 s", "59 s", "1 min", "59 min", "2 h", "2 d"]




@pytest.fixture(scope="module")
def app(cassandra: object, settings: object) -> Iterator[object]:
    load_standard(cassandra)
    app = viewer_app(settings, kafka_topic=TOPIC)
    yield app
    close_app(app)  # type: ignore[arg-type]


@pytest.fixture
def progress(cassandra: object) -> Iterator[object]:
    """Writes stream_progress rows as the streaming job does; empties the table after."""
    insert = cassandra.prepare(  # type: ignore[attr-defined]
        "INSERT INTO stream_progress (topic, query_id, run_id, batch_id, batch_at, batch_duration_ms, input_rows, "
        "input_rows_per_second, processed_rows_per_second, offsets_behind, rows_valid, rows_rejected, written_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )

    def write(query_id: str, seconds_ago: float, behind: dict[int, int], batch_id: int = 41,
              topic: str = TOPIC) -> None:
        at = datetime.now(UTC) - timedelta(seconds=seconds_ago)
        cassandra.execute(insert, (topic, query_id, "run-1", batch_id, at - timedelta(seconds=2), 1500,  # type: ignore[attr-defined]
                                   4000, 2600.0, 3100.5, behind, 3990, 10, at))

    cassandra.execute("TRUNCATE stream_progress", timeout=60)  # type: ignore[attr-defined]
    yield write
    cassandra.execute("TRUNCATE stream_progress", timeout=60)  # type: ignore[attr-defined]


def _html(app: object, url: str) -> str:
    response = app.test_client().get(url, headers={"Accept-Language": "en"})  # type: ignore[attr-defined]
    assert response.status_code == 200, response.get_data(as_text=True)[:2000]
    assert response.mimetype == "text/html"
    return response.get_data(as_text=True)


def _text(html: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>(.*?)</(?:p|span|ul|tbody)>', html, re.S)
    assert match, f"no #{element_id}"
    return " ".join(re.sub(r"<[^>]+>", " ", match.group(1)).split())


def _row(html: str, day: str) -> list[str]:
    match = re.search(rf'<tr data-date="{day}">(.*?)</tr>', html, re.S)
    assert match, f"no row for {day}"
    return [" ".join(re.sub(r"<[^>]+>", " ", cell).split()) for cell in re.findall(r"<td[^>]*>(.*?)</td>",
                                                                                   match.group(1), re.S)]


@pytest.mark.integration
def test_the_page_shows_a_stream_behind_and_the_days_figures(app: object, progress) -> None:
    progress("q-old", 86_400 * 3, {0: 0}, batch_id=7)  # an earlier checkpoint's query
    progress("q-now", 20, {0: 5, 1: 0, 2: 12})
    html = _html(app, f"/status?{WINDOW}")
    assert '<a href="/status" class="active" aria-current="page">Status</a>' in html  # the header's link
    assert _text(html, "stream-state").startswith("Behind: 17 records not processed yet")
    assert _text(html, "stream-offsets-behind") == "17"
    assert _text(html, "stream-last-batch") == "41"
    assert _text(html, "stream-last-heard") in ("20 s ago", "21 s ago", "22 s ago")
    assert _text(html, "stream-rate") == "3,100/s"  # 3,100.5 rows/s
    detail = _text(html, "stream-detail")
    assert "took 1,500 ms: 4,000 records read (3,990 valid, 10 rejected)" in detail
    assert _text(html, "stream-partitions") == "0: 5, 1: 0, 2: 12"
    assert "Older streaming queries of this topic (earlier checkpoints): 1" in html
    # Ingested (stream), aggregated (summary), late, rejected, sample reasons (escaped).
    assert _row(html, "2025-06-01") == ["2025-06-01", "0", "—", "", "0", ""]
    assert _row(html, "2025-05-31") == ["2025-05-31", "215", "215", "", "7", f"{NOT_JSON} &lt;img src=x "
                                        "onerror=alert(1)&gt;: unknown field"]
    assert _row(html, "2025-05-30") == ["2025-05-30", "207", "230", "7", "99", ""]
    assert _row(html, "2025-05-29") == ["2025-05-29", "0", "226", "", "0", ""]
    assert IMG_REASON not in html  # escaped, never markup
    assert html.count('<tr data-date="') == 14
    assert "an upper bound of the orders" in html
    # 05-30 waits for the nightly run: 7 orders arrived after its run.
    assert _text(html, "waiting-dates") == ("2025-05-30 : 7 orders arrived after its last run "
                                            "(started 2025-05-31 02:00 JST).")
    # ... and in Japanese on a Japanese page (the job's plan words it in English for its logs).
    japanese = app.test_client().get(f"/status?{WINDOW}", headers={"Accept-Language": "ja"})  # type: ignore[attr-defined]
    assert _text(japanese.get_data(as_text=True), "waiting-dates") == (
        "2025-05-30 : 前回の集計（2025-05-31 02:00 JST 開始）の後に 7 件の注文が届きました。")
    runs = re.findall(r'<tr class="run-(\w+)"><td>([\d-]+)</td><td>(\w+)</td>.*?<td class="num duration">([^<]*)</td>',
                      html, re.S)
    assert runs == [("succeeded", "2025-05-31", "nightly", "1.2 s"), ("succeeded", "2025-05-30", "nightly", "1.2 s")]


@pytest.mark.integration
def test_the_page_says_when_no_progress_is_recorded_or_the_job_is_silent(app: object, progress) -> None:
    html = _html(app, f"/status?{WINDOW}")
    assert _text(html, "stream-state").startswith("No progress recorded")
    progress("q-other-topic", 5, {0: 0}, topic="another-topic")
    assert _text(_html(app, f"/status?{WINDOW}"), "stream-state").startswith("No progress recorded")
    progress("q-now", 3_600, {0: 0})
    html = _html(app, f"/status?{WINDOW}")
    assert _text(html, "stream-state").startswith("Silent: no word from the streaming job for 1 h")
    progress("q-now", 5, {0: 0})
    assert _text(_html(app, f"/status?{WINDOW}"), "stream-state").startswith("Keeping up:")


@pytest.mark.integration
def test_the_json_twin_has_the_same_figures(app: object, progress) -> None:
    progress("q-now", 20, {0: 5, 1: 0, 2: 12})
    response = app.test_client().get(f"/api/status_overview?{WINDOW}")  # type: ignore[attr-defined]
    assert response.status_code == 200
    body = response.get_json()
    assert (body["from"], body["to"]) == ("2025-05-19", "2025-06-01")
    assert body["stream"]["state"] == BEHIND
    (query,) = body["stream"]["queries"]
    assert query["offsets_behind"] == {"0": 5, "1": 0, "2": 12} and query["offsets_behind_total"] == 17
    assert (query["batch_id"], query["rows_valid"], query["rows_rejected"]) == (41, 3990, 10)
    days = {d["date"]: d for d in body["days"]}
    assert len(body["days"]) == 14 and body["days"][0]["date"] == "2025-06-01"
    assert days["2025-05-30"] == {"date": "2025-05-30", "ingested": 207, "aggregated": 230, "late_orders": 7,
                                  "rejected": 99, "rejected_reasons": []}
    assert days["2025-05-31"]["rejected_reasons"] == [NOT_JSON, IMG_REASON]
    assert days["2025-05-20"]["aggregated"] == 120 + 90 + 0 and days["2025-06-01"]["aggregated"] is None
    assert body["waiting"] == [{"date": "2025-05-30", "late_orders": 7,
                                "why": "7 orders arrived after its last run (started 2025-05-30 17:00:00 UTC)"}]
    assert [(r["order_date"], r["status"], r["trigger"], r["duration_ms"]) for r in body["runs"]] == [
        ("2025-05-31", "succeeded", "nightly", 1234), ("2025-05-30", "succeeded", "nightly", 1234)]


@pytest.mark.integration
def test_the_default_window_ends_today_and_links_to_the_latest_aggregated_date(app: object, progress) -> None:
    body = app.test_client().get("/api/status_overview").get_json()  # type: ignore[attr-defined]
    today = datetime.now(UTC).astimezone(app.config["SETTINGS"].business.tz).date()  # type: ignore[attr-defined]
    assert body["to"] == today.isoformat() and body["waiting"] == [] and body["runs"] == []
    html = _html(app, "/status")
    assert '<a href="/status?to=2025-05-31" id="window-latest">2025-05-31</a>' in html
    assert _text(html, "waiting-none").startswith("No date of")


@pytest.mark.integration
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(path=st.sampled_from(["/status", "/api/status_overview"]),
       to=st.one_of(st.dates().map(date.isoformat), st.text(max_size=20),
                    st.sampled_from(["0001-01-05", "9999-12-31"])),
       other=st.dictionaries(st.text(max_size=8), st.text(max_size=12), max_size=3))
def test_any_window_gets_an_answer_or_a_400_naming_to(app: object, path: str, to: str, other: dict) -> None:
    """Any `to`, the ends of the calendar included, and any other parameter (surrogates too)."""
    query = {**{k.encode("utf-8", "surrogatepass"): v.encode("utf-8", "surrogatepass") for k, v in other.items()},
             b"to": to.encode("utf-8", "surrogatepass")}
    response = app.test_client().get(path, query_string=query)  # type: ignore[attr-defined]
    assert response.status_code in (200, 400), response.get_data(as_text=True)[:500]
    if response.status_code == 400 and path.startswith("/api/"):
        assert response.get_json()["parameter"] == "to"
