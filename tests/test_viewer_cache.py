"""The viewer answers from memory between aggregate runs, with ETag and 304, and shows a
run's new numbers right after it finishes: on the real Cassandra, and with the real
aggregate job for the freshness test."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime

import flask
import pytest
from prometheus_client import REGISTRY

from jobs.aggregate import aggregate
from orderlog.menu import JAPANESE, WESTERN
from tests.test_aggregate_model import insert_orders, order
from tests.viewer_data import LATEST, load_standard, viewer_app
from viewer.db import GENERATION_MEMO_S, LATEST_RUN_SCOPE, close_app

pytestmark = pytest.mark.integration


def note_finished_run(session: object, day: date) -> None:
    """What jobs/aggregate_ledger.py writes when a run finishes."""
    import uuid

    statement = session.prepare(  # type: ignore[attr-defined]
        "INSERT INTO latest_aggregate_run (scope, run_id, order_date, status, finished_at) VALUES (?, ?, ?, ?, ?)"
    )
    session.execute(statement, (LATEST_RUN_SCOPE, uuid.uuid1(), day, "succeeded", datetime.now(UTC)))  # type: ignore[attr-defined]


def set_japanese_size(session: object, day: date, users: int) -> None:
    statement = session.prepare(  # type: ignore[attr-defined]
        "UPDATE segment_sizes SET users = ? WHERE year = ? AND as_of = ? AND segment = ?"
    )
    session.execute(statement, (users, day.year, day, JAPANESE))  # type: ignore[attr-defined]


@pytest.fixture
def cached(clean_cassandra: object, settings: object) -> Iterator[object]:
    """The viewer with its cache on, over the standard dataset and one finished run."""
    load_standard(clean_cassandra)
    note_finished_run(clean_cassandra, LATEST)
    app = viewer_app(settings, viewer_cache_seconds=5)
    yield app.test_client()  # type: ignore[attr-defined]
    close_app(app)  # type: ignore[arg-type]


def japanese_count(response: object) -> int:
    return response.get_json()["segments"][JAPANESE]["count"]  # type: ignore[attr-defined]


def test_answers_are_kept_until_a_run_finishes_and_revalidated_with_etags(cached, clean_cassandra) -> None:
    first = cached.get("/api/user_segments")
    assert first.status_code == 200
    etag = first.headers["ETag"]
    assert first.headers["Cache-Control"] == "private, no-cache"
    before = japanese_count(first)

    revalidated = cached.get("/api/user_segments", headers={"If-None-Match": etag})
    assert revalidated.status_code == 304 and revalidated.get_data() == b""
    assert revalidated.headers["ETag"] == etag and revalidated.headers["Cache-Control"] == "private, no-cache"

    # A write that no finished run announces (a run in progress) is not served yet.
    set_japanese_size(clean_cassandra, LATEST, before + 1000)
    time.sleep(GENERATION_MEMO_S + 0.2)
    kept = cached.get("/api/user_segments")
    assert japanese_count(kept) == before and kept.headers["ETag"] == etag

    note_finished_run(clean_cassandra, LATEST)
    time.sleep(GENERATION_MEMO_S + 0.2)
    fresh = cached.get("/api/user_segments", headers={"If-None-Match": etag})
    assert fresh.status_code == 200 and japanese_count(fresh) == before + 1000
    assert fresh.headers["ETag"] != etag


def test_a_range_is_sliced_from_the_year_read_once_per_run(cached, clean_cassandra) -> None:
    """Range calls read their year partition whole once per run: a range never asked
    before is answered from it, so a write no finished run announces is not in it either."""
    def japanese_sizes(url: str) -> list[int]:
        return [d["segments"][JAPANESE]["users"] for d in cached.get(url).get_json()["days"]]

    before = japanese_sizes(f"/api/segment_sizes?from={LATEST}&to={LATEST}")
    set_japanese_size(clean_cassandra, LATEST, before[0] + 1000)
    time.sleep(GENERATION_MEMO_S + 0.2)
    another_range = f"/api/segment_sizes?from=2025-05-30&to={LATEST}"
    assert japanese_sizes(another_range)[-1] == before[0]
    note_finished_run(clean_cassandra, LATEST)
    time.sleep(GENERATION_MEMO_S + 0.2)
    assert japanese_sizes(another_range)[-1] == before[0] + 1000


def test_a_dates_summary_comes_from_the_year_read_and_its_late_orders_stay_live(clean_cassandra, settings) -> None:
    """The summary of a date never asked before costs no read (the year partition was read
    once this run), so a write no finished run announces is not in it; its late orders
    follow the stream's totals within cache_seconds all the same."""
    load_standard(clean_cassandra)
    note_finished_run(clean_cassandra, LATEST)
    app = viewer_app(settings, viewer_cache_seconds=1)
    client = app.test_client()  # type: ignore[attr-defined]
    other = date(2025, 5, 30)
    try:
        assert client.get(f"/api/daily_order_summaries?date={LATEST}").status_code == 200
        update = clean_cassandra.prepare(  # type: ignore[attr-defined]
            "UPDATE daily_order_summaries SET japanese = ? WHERE year = ? AND order_date = ?")
        clean_cassandra.execute(update, (999_999, other.year, other))  # type: ignore[attr-defined]
        first = client.get(f"/api/daily_order_summaries?date={other}").get_json()
        assert first["japanese"] != 999_999

        stream = clean_cassandra.prepare(  # type: ignore[attr-defined]
            "UPDATE stream_day_counts SET records = ? WHERE year = ? AND day = ? AND kind = ? AND query_id = ?")
        clean_cassandra.execute(stream, (100, other.year, other, "orders", "query-late"))  # type: ignore[attr-defined]
        time.sleep(1.2)
        later = client.get(f"/api/daily_order_summaries?date={other}").get_json()
        assert later["late_orders"] == first["late_orders"] + 100 and later["japanese"] == first["japanese"]

        note_finished_run(clean_cassandra, LATEST)
        time.sleep(GENERATION_MEMO_S + 0.2)
        assert client.get(f"/api/daily_order_summaries?date={other}").get_json()["japanese"] == 999_999
    finally:
        close_app(app)  # type: ignore[arg-type]


API_CALLS = [
    f"/api/daily_order_summaries?date={LATEST}", "/api/daily_order_summaries?from=2025-05-01&to=2025-05-31",
    "/api/daily_order_summaries.csv?from=2025-05-25&to=2025-05-31", "/api/user_segments",
    f"/api/user_segments/{JAPANESE}?per_page=5", f"/api/user_segments/{WESTERN}?prefix=u&per_page=3",
    "/api/segment_sizes?from=2025-05-25&to=2025-05-31", f"/api/rejected_events?date={LATEST}", "/api/status",
    "/api/users?prefix=u", "/api/hourly_orders?from=2025-05-25&to=2025-05-31",
]


def answers_counted(rule: str, status: int) -> float:
    """The viewer's request counter of a route and status (viewer/metrics.py)."""
    labels = {"endpoint": rule, "method": "GET", "status": str(status)}
    return REGISTRY.get_sample_value("orderlog_viewer_requests_total", labels) or 0.0


def headers_of(response: object) -> list[tuple[str, str]]:
    return sorted(response.headers.items())  # type: ignore[attr-defined]


def test_kept_api_answers_skip_flask_and_are_exactly_what_flask_answers(clean_cassandra, settings) -> None:
    """KeptApiAnswers (viewer/response_cache.py) answers a kept API answer before Flask: the
    same status, body and headers as Flask's own path, 304s alike, and Flask never sees it;
    with basic auth, only with the right credentials; a repeated parameter still gets 400."""
    from werkzeug.test import Client
    from werkzeug.wrappers import Response as WerkzeugResponse

    load_standard(clean_cassandra)
    note_finished_run(clean_cassandra, LATEST)
    app = viewer_app(settings, viewer_cache_seconds=30, viewer_user="analyst", viewer_password="s3cret")
    seen_by_flask: list[str] = []
    # First of Flask's hooks: Flask's own cache answers from a later one.
    app.before_request_funcs.setdefault(None, []).insert(  # type: ignore[attr-defined]
        0, lambda: seen_by_flask.append(flask.request.full_path))
    client = app.test_client()  # type: ignore[attr-defined]
    flask_only = Client(app.wsgi_app.flask_wsgi_app, WerkzeugResponse)  # type: ignore[attr-defined]
    good = {"Authorization": "Basic " + base64.b64encode(b"analyst:s3cret").decode()}
    wrong = {"Authorization": "Basic " + base64.b64encode(b"analyst:guess").decode()}
    try:
        for url in API_CALLS:
            first = client.get(url, headers=good)
            assert first.status_code == 200, (url, first.get_data())
            seen_by_flask.clear()
            rule = app.url_map.bind("localhost").match(url.split("?")[0], return_rule=True)[0].rule
            counted_before = answers_counted(rule, 200)
            # The second is made from the kept answer, the third is the second given again (ReadyAnswers).
            kept, again = client.get(url, headers=good), client.get(url, headers=good)
            assert seen_by_flask == [], f"{url} went through Flask"
            assert answers_counted(rule, 200) == counted_before + 2
            from_flask = flask_only.get(url, headers=good)
            for answer in (kept, again):
                assert (answer.status_code, answer.get_data(), headers_of(answer)) == (
                    from_flask.status_code, from_flask.get_data(), headers_of(from_flask)), url
            assert len(seen_by_flask) == 1
            etag = kept.headers["ETag"]
            not_modified = [client.get(url, headers={**good, "If-None-Match": etag}) for _ in range(2)]
            assert len(seen_by_flask) == 1
            flask_304 = flask_only.get(url, headers={**good, "If-None-Match": etag})
            for answer in not_modified:
                assert answer.status_code == flask_304.status_code == 304
                assert headers_of(answer) == headers_of(flask_304) and answer.get_data() == b""
            for headers in ({}, wrong, {"Authorization": "Bearer s3cret"}):
                refused = client.get(url, headers=headers)
                assert refused.status_code == 401 and "WWW-Authenticate" in refused.headers
                assert refused.get_data() not in (b"", kept.get_data())
        twice = client.get(f"/api/daily_order_summaries?date={LATEST}&date={LATEST}", headers=good)
        assert twice.status_code == 400 and "more than once" in twice.get_json()["error"]
    finally:
        close_app(app)  # type: ignore[arg-type]


def test_conditional_requests_follow_rfc_9110(cached) -> None:
    etag = cached.get("/api/daily_order_summaries").headers["ETag"]
    # If-None-Match compares weakly: a proxy may have turned the tag into a weak one.
    weak = cached.get("/api/daily_order_summaries", headers={"If-None-Match": f'"other", W/{etag}'})
    assert weak.status_code == 304
    # "*" matches any current answer, and there is none for an unknown user.
    assert cached.get("/api/daily_order_summaries", headers={"If-None-Match": "*"}).status_code == 304
    missing = cached.get("/api/users/nobody-at-all", headers={"If-None-Match": "*"})
    assert missing.status_code == 404 and missing.get_json()["user_id"] == "nobody-at-all"
    other = cached.get("/api/daily_order_summaries", headers={"If-None-Match": '"not-this-one"'})
    assert other.status_code == 200 and other.headers["ETag"] == etag


def test_the_openapi_document_describes_etags_where_answers_are_kept(cached) -> None:
    paths = cached.get("/api/openapi.json").get_json()["paths"]
    summaries = paths["/api/daily_order_summaries"]["get"]
    assert "ETag" in summaries["responses"]["200"]["headers"] and "304" in summaries["responses"]
    assert {"name": "If-None-Match", "in": "header"}.items() <= summaries["parameters"][-1].items()
    export = paths["/api/user_segments/{segment}.csv"]["get"]
    assert "304" not in export["responses"] and "headers" not in export["responses"]["200"]


def test_the_query_is_part_of_the_key_and_errors_and_csv_are_not_kept(cached) -> None:
    page_1 = cached.get("/api/user_segments/japanese?per_page=2")
    page_2 = cached.get("/api/user_segments/japanese?per_page=2&page=2")
    assert page_1.headers["ETag"] != page_2.headers["ETag"]
    assert page_1.get_json()["user_ids"] != page_2.get_json()["user_ids"]
    assert cached.get("/api/user_segments/japanese?per_page=2").get_json() == page_1.get_json()

    missing = cached.get("/api/users/nobody-at-all")
    assert missing.status_code == 404 and "ETag" not in missing.headers
    assert missing.headers["Cache-Control"] == "no-store"
    export = cached.get("/api/user_segments/japanese.csv")
    assert export.status_code == 200 and "ETag" not in export.headers
    assert export.headers["Cache-Control"] == "no-store"


def test_range_exports_are_kept_and_revalidated_like_the_json_answers(cached) -> None:
    for url in ("/api/daily_order_summaries.csv?from=2025-05-30&to=2025-05-31", "/api/segment_sizes.csv"):
        first = cached.get(url)
        assert first.status_code == 200 and first.headers["Cache-Control"] == "private, no-cache"
        again = cached.get(url, headers={"If-None-Match": first.headers["ETag"]})
        assert again.status_code == 304
        kept = cached.get(url)
        assert kept.get_data() == first.get_data() and kept.mimetype == "text/csv"
    paths = cached.get("/api/openapi.json").get_json()["paths"]
    assert "304" in paths["/api/segment_sizes.csv"]["get"]["responses"]


def test_what_the_stream_writes_is_at_most_cache_seconds_old(clean_cassandra, settings) -> None:
    load_standard(clean_cassandra)
    note_finished_run(clean_cassandra, LATEST)
    app = viewer_app(settings, viewer_cache_seconds=1)
    client = app.test_client()  # type: ignore[attr-defined]
    try:
        before = client.get(f"/api/rejected_events?date={LATEST}").get_json()["rejected"]
        statement = clean_cassandra.prepare(  # type: ignore[attr-defined]
            "UPDATE stream_day_counts SET records = ? WHERE year = ? AND day = ? AND kind = ? AND query_id = ?"
        )
        clean_cassandra.execute(statement, (100, LATEST.year, LATEST, "rejected", "query-c"))  # type: ignore[attr-defined]
        time.sleep(1.2)
        assert client.get(f"/api/rejected_events?date={LATEST}").get_json()["rejected"] == before + 100
    finally:
        close_app(app)  # type: ignore[arg-type]


# -- freshness with the real aggregate job ---------------------------------------------------

DAY = date(2025, 5, 31)
J, W = JAPANESE, WESTERN


def every_answer(client: object) -> dict[str, str]:
    """Every page and API call that shows DAY's numbers, as text."""
    urls = [
        f"/api/daily_order_summaries?date={DAY}",
        f"/api/daily_order_summaries?from={DAY}&to={DAY}",
        "/api/daily_order_summaries",
        "/api/user_segments",
        f"/api/user_segments/{J}",
        f"/api/user_segments/{W}",
        f"/api/user_segments/{J}?min_orders=1&sort=orders",
        f"/api/segment_sizes?date={DAY}",
        f"/api/hourly_orders?from={DAY}&to={DAY}",
        f"/api/daily_order_summaries.csv?from={DAY}&to={DAY}",
        f"/api/segment_sizes.csv?from={DAY}&to={DAY}",
        "/api/users/alice",
        "/api/users?prefix=a",
        "/api/status",
        f"/daily?date={DAY}",
        f"/segments?segment={J}",
        "/users/alice",
    ]
    answers = {}
    for url in urls:
        response = client.get(url)  # type: ignore[attr-defined]
        assert response.status_code == 200, (url, response.get_data(as_text=True))
        answers[url] = response.get_data(as_text=True)
    return answers


def test_right_after_an_aggregate_run_every_page_and_call_shows_the_new_numbers(
    spark, settings, clean_cassandra
) -> None:
    insert_orders(clean_cassandra, [order(DAY, "alice", J), order(DAY, "bob", W)])
    aggregate(spark, settings, [DAY], log=lambda line: None)
    app = viewer_app(settings, viewer_cache_seconds=300)
    client = app.test_client()  # type: ignore[attr-defined]
    try:
        old = every_answer(client)
        assert old == every_answer(client)  # now from memory
        assert client.get(f"/api/daily_order_summaries?date={DAY}").get_json()["total"] == 2

        # Late orders: alice turns western, zoe appears; the job runs the date again.
        insert_orders(clean_cassandra, [order(DAY, "alice", W), order(DAY, "alice", W), order(DAY, "zoe", J)])
        aggregate(spark, settings, [DAY], log=lambda line: None)
        time.sleep(GENERATION_MEMO_S + 0.2)

        new = every_answer(client)
        changed = [url for url in new if new[url] != old[url]]
        assert sorted(changed) == sorted(new), f"unchanged after the run: {set(new) - set(changed)}"
        summary = client.get(f"/api/daily_order_summaries?date={DAY}").get_json()
        assert (summary["japanese"], summary["western"], summary["total"]) == (2, 3, 5)
        assert client.get("/api/users/alice").get_json()["preference"] == W
        assert client.get("/api/users/zoe").get_json()["preference"] == J
        segments = client.get("/api/user_segments").get_json()["segments"]
        assert {s: segments[s]["count"] for s in (J, W)} == {J: 1, W: 2}
    finally:
        close_app(app)  # type: ignore[arg-type]
