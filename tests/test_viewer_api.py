"""The viewer's JSON API and CSV export against the real Cassandra, on the standard
dataset of tests/viewer_data.py: exact numbers and ids, bad parameters, unknown ids."""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Iterator
from datetime import date

import pytest

from orderlog.layout import SEGMENT_BUCKETS, bucket_of
from tests.viewer_data import (
    ALICE_HISTORY,
    BULK_MEMBERS,
    HOURLY,
    IMG_REASON,
    LATEST,
    NAMED_MEMBERS,
    REJECTED_RECORDS,
    XSS_USER,
    RejectedRecord,
    ViewerData,
    day_counts,
    japanese_ids,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def app(standard_viewer: object) -> object:
    return standard_viewer


@pytest.fixture(scope="module")
def client(app: object) -> object:
    return app.test_client()  # type: ignore[attr-defined]


def get_json(client: object, url: str, status: int = 200) -> dict:
    response = client.get(url)  # type: ignore[attr-defined]
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    return response.get_json()


# -- daily order summaries -------------------------------------------------------------


def test_summary_of_a_date_is_the_seed_shape(client: object) -> None:
    body = get_json(client, "/api/daily_order_summaries?date=2025-05-31")
    assert body == {
        "date": "2025-05-31",
        "japanese": 120,
        "western": 95,
        "total": 215,
        "users": 150,
        "japanese_share": 0.5581,
        "aggregated_at": "2025-06-01T02:00:00Z",
        "late_orders": 0,
        # 05-30: 130 + 100 = 230 (share 0.5652); 05-24: 124 + 102 = 226 (share 0.5487)
        "changes": {
            "previous_day": {
                "date": "2025-05-30", "aggregated": True,
                "japanese": {"change": -10, "relative": -0.0769},
                "western": {"change": -5, "relative": -0.05},
                "total": {"change": -15, "relative": -0.0652},
                "japanese_share": -0.0071,
            },
            "week_before": {
                "date": "2025-05-24", "aggregated": True,
                "japanese": {"change": -4, "relative": -0.0323},
                "western": {"change": -7, "relative": -0.0686},
                "total": {"change": -11, "relative": -0.0487},
                "japanese_share": 0.0095,
            },
        },
    }


def test_changes_of_a_date_whose_reference_day_is_missing_say_no_data(client: object) -> None:
    # 2025-05-15 was never aggregated: the previous day of the 16th, the week before of the 22nd.
    after_gap = get_json(client, "/api/daily_order_summaries?date=2025-05-16")["changes"]
    assert after_gap["previous_day"] == {"date": "2025-05-15", "aggregated": False}
    assert after_gap["week_before"]["date"] == "2025-05-09"
    assert after_gap["week_before"]["japanese"] == {"change": 7, "relative": 0.0642}  # 116 against 109
    week_later = get_json(client, "/api/daily_order_summaries?date=2025-05-22")["changes"]
    assert week_later["week_before"] == {"date": "2025-05-15", "aggregated": False}
    assert week_later["previous_day"]["aggregated"] is True


def test_summary_of_a_date_says_how_many_orders_arrived_after_its_run(client: object) -> None:
    body = get_json(client, "/api/daily_order_summaries?date=2025-05-30")
    japanese, western, _ = day_counts(date(2025, 5, 30))
    assert (body["total"], body["late_orders"]) == (japanese + western, 7)  # the numbers do not include them yet
    # No stream totals and no recorded run: nothing known to be late.
    assert get_json(client, "/api/daily_order_summaries?date=2025-05-29")["late_orders"] == 0


def test_summary_without_parameters_is_the_latest_date(client: object) -> None:
    body = get_json(client, "/api/daily_order_summaries")
    assert (body["date"], body["japanese"], body["western"], body["total"]) == ("2025-05-31", 120, 95, 215)


def test_summary_of_a_date_not_aggregated_is_404_saying_so(client: object) -> None:
    body = get_json(client, "/api/daily_order_summaries?date=2025-05-15", 404)
    assert body == {
        "error": "2025-05-15 has not been aggregated yet (the latest aggregated date is 2025-05-31)",
        "date": "2025-05-15",
    }
    future = get_json(client, "/api/daily_order_summaries?date=2030-01-01", 404)
    assert future["error"].startswith("2030-01-01 has not been aggregated yet")


def test_range_across_a_year_boundary_lists_days_oldest_first_and_the_missing(client: object) -> None:
    body = get_json(client, "/api/daily_order_summaries?from=2024-12-30&to=2025-01-02")
    assert body["from"] == "2024-12-30" and body["to"] == "2025-01-02"
    assert [(d["date"], d["japanese"], d["western"], d["total"]) for d in body["days"]] == [
        ("2024-12-31", 131, 103, 234)
    ]
    assert body["missing"] == ["2024-12-30", "2025-01-01", "2025-01-02"]


def test_range_of_may_has_every_aggregated_day_with_exact_counts(client: object) -> None:
    body = get_json(client, "/api/daily_order_summaries?from=2025-05-01&to=2025-05-31")
    expected = []
    for n in range(1, 32):
        d = date(2025, 5, n)
        if n != 15:
            j, w, u = day_counts(d)
            expected.append({"date": d.isoformat(), "japanese": j, "western": w, "total": j + w, "users": u})
    assert [{k: day[k] for k in ("date", "japanese", "western", "total", "users")} for day in body["days"]] == (
        expected
    )
    assert body["missing"] == ["2025-05-15"]


def test_range_carries_the_japanese_share_of_the_7_days_up_to_each_date(client: object) -> None:
    body = get_json(client, "/api/daily_order_summaries?from=2025-05-16&to=2025-05-17")
    # 05-10..05-16 without the 15th (never aggregated): the six days' orders summed
    assert body["japanese_share_7d"] == [{"date": "2025-05-16", "japanese_share": 0.5265},
                                         {"date": "2025-05-17", "japanese_share": 0.5286}]
    # The window reaches before the range: 05-02's is the orders of 05-01 and 05-02.
    body = get_json(client, "/api/daily_order_summaries?from=2025-05-02&to=2025-05-02")
    assert body["japanese_share_7d"] == [{"date": "2025-05-02", "japanese_share": round(203 / 392, 4)}]
    assert "compare" not in body


def test_range_compared_with_a_second_period_of_the_same_length(client: object) -> None:
    body = get_json(client, "/api/daily_order_summaries?from=2025-05-16&to=2025-05-31&compare_from=2025-05-01")
    compare = body["compare"]
    assert (compare["from"], compare["to"]) == ("2025-05-01", "2025-05-16")
    assert [d["date"] for d in compare["days"]] == [f"2025-05-{n:02d}" for n in range(1, 17) if n != 15]
    assert compare["days"][0] == {**compare["days"][0], "japanese": 101, "western": 93, "total": 194}
    # last month against this one, across a year partition
    december = get_json(client, "/api/daily_order_summaries?from=2025-05-01&to=2025-05-31&compare_from=2024-12-01")
    assert (december["compare"]["to"], [d["date"] for d in december["compare"]["days"]]) == (
        "2024-12-31", ["2024-12-31"])
    assert get_json(client, "/api/daily_order_summaries?from=2025-05-01&compare_from=2025-13-01", 400) == {
        "error": "invalid parameter 'compare_from': '2025-13-01' is not a calendar date", "parameter": "compare_from"
    }


def test_range_with_only_to_is_the_30_days_up_to_it(client: object) -> None:
    body = get_json(client, "/api/daily_order_summaries?to=2025-05-31")
    assert body["from"] == "2025-05-02"
    assert len(body["days"]) == 29  # 30 days minus the missing 15th


@pytest.mark.parametrize(
    ("query", "parameter", "message"),
    [
        ("date=2025-13-01", "date", "invalid parameter 'date': '2025-13-01' is not a calendar date"),
        ("date=31/05/2025", "date", "invalid parameter 'date': must be a date YYYY-MM-DD, got '31/05/2025'"),
        ("date=20250531", "date", "invalid parameter 'date': must be a date YYYY-MM-DD, got '20250531'"),
        (
            "date=2025-05-31&from=2025-05-01",
            "date",
            "invalid parameter 'date': use either 'date' or 'from' and 'to'",
        ),
        (
            "from=2025-05-31&to=2025-05-01",
            "from",
            "invalid parameter 'from': 2025-05-31 is after 'to' 2025-05-01",
        ),
        ("from=2000-01-01&to=2025-05-01", "to", "invalid parameter 'to': a range may span at most 3660 days"),
    ],
)
def test_bad_summary_parameters_are_400_naming_them(client: object, query: str, parameter: str, message: str) -> None:
    body = get_json(client, f"/api/daily_order_summaries?{query}", 400)
    assert body == {"error": message, "parameter": parameter}


# -- rejected records ------------------------------------------------------------------


def test_rejected_events_of_a_date_are_its_count_and_samples_escaped(client: object) -> None:
    body = get_json(client, "/api/rejected_events?date=2025-05-31")
    sample = {"topic": "order-logs", "kafka_timestamp": "2025-05-31T03:00:00Z", "replayed": False, "replayed_at": None}
    assert body == {
        "date": "2025-05-31",
        "rejected": 7,  # 4 + 3 over the two streaming queries
        "samples": [  # every record of the date (at most 10), by coordinates
            {**sample, "partition": 0, "offset": 0, "reason": "record is not JSON (Expecting value)", "length": 27,
             "preview": '<script>alert("x")</script>'},  # JSON carries it as text; pages escape it
            {**sample, "partition": 0, "offset": 1, "reason": "record is not JSON (Expecting value)", "length": 9,
             "preview": "bell\\x07ring"},  # the control character escaped
            {**sample, "partition": 0, "offset": 2, "reason": IMG_REASON, "length": 35,
             "preview": '{"<img src=x onerror=alert(1)>": 1}'},
            {**sample, "partition": 1, "offset": 3, "reason": "record is not UTF-8", "length": 3,
             "preview": "\\xff\\xfe{"},  # bytes that are not UTF-8
            {**sample, "partition": 1, "offset": 4, "reason": "record has no value", "length": None,
             "preview": "(none)"},
            {**sample, "partition": 2, "offset": 40, "reason": "record is larger than 4096 bytes", "length": 70_000,
             "preview": "x" * 200 + "…  (first 65536 of 70000 bytes stored)"},
            {**sample, "partition": 2, "offset": 41, "reason": "menu_type: must be 'japanese' or 'western'",
             "length": 82, "preview": REJECTED_RECORDS[-1].value.decode(), "replayed": True,
             "replayed_at": "2025-06-01T01:00:00Z"},
        ],
    }


def test_rejected_events_of_a_date_with_none_or_none_kept(client: object) -> None:
    assert get_json(client, "/api/rejected_events?date=2025-05-29") == {"date": "2025-05-29", "rejected": 0,
                                                                        "samples": []}
    # Counted by the streaming job, expired from rejected_events since (their TTL).
    assert get_json(client, "/api/rejected_events?date=2025-05-30") == {"date": "2025-05-30", "rejected": 99,
                                                                        "samples": []}
    assert get_json(client, "/api/rejected_events?date=9999-12-31")["rejected"] == 0


def test_rejected_events_of_a_date_read_few_buckets_when_enough(cassandra: object, settings: object) -> None:
    """40 records, offsets 0-39 over the 32 buckets: for 10 samples, the first 8 buckets read
    with LIMIT 2 hold 16 of them, so no other bucket is read; for 40, the other 24 are asked
    for the 24 missing, in one query."""
    from datetime import UTC, datetime

    from viewer.db import Store
    from viewer.queries import rejected_of

    day = date(2025, 4, 1)
    records = [RejectedRecord(0, offset, None, b"{}", "user_id: is required", datetime(2025, 4, 1, 3, tzinfo=UTC))
               for offset in range(40)]
    ViewerData(cassandra).rejected(records)
    store = Store(cassandra, cache_seconds=0)
    reads: list[tuple] = []
    execute_async, execute = store.execute_async, store.execute

    def spy_async(name: str, params: tuple, fetch_size: int | None = None) -> object:
        if name.startswith("rejected_of"):
            reads.append(params[1:])  # (bucket, limit)
        return execute_async(name, params, fetch_size)

    def spy(name: str, params: tuple) -> object:
        if name.startswith("rejected_of"):
            reads.append(params[1:])  # (buckets, limit)
        return execute(name, params)

    store.execute_async, store.execute = spy_async, spy  # type: ignore[method-assign]
    found = rejected_of(store, day, 10)
    assert [s.offset for s in found.samples] == [*range(8), 32, 33]  # of offsets 0-7 and 32-39, by coordinates
    assert reads == [(bucket, 2) for bucket in range(8)]
    assert found.count == 0  # no stream totals were written for that date
    reads.clear()
    assert [s.offset for s in rejected_of(store, day, 40).samples] == list(range(40))
    assert reads == [(b, 5) for b in range(8)] + [(list(range(8, 32)), 24)]  # 16 found, 24 missing


def test_rejected_events_of_a_range_count_every_date(client: object) -> None:
    body = get_json(client, "/api/rejected_events?from=2025-05-29&to=2025-05-31")
    assert body == {
        "from": "2025-05-29",
        "to": "2025-05-31",
        "days": [{"date": "2025-05-29", "rejected": 0}, {"date": "2025-05-30", "rejected": 99},
                 {"date": "2025-05-31", "rejected": 7}],
        "total": 106,
    }
    across = get_json(client, "/api/rejected_events?from=2024-12-31&to=2025-01-01")
    assert across["days"] == [{"date": "2024-12-31", "rejected": 0}, {"date": "2025-01-01", "rejected": 0}]


def test_rejected_events_without_parameters_are_the_30_days_up_to_the_latest_aggregated(client: object) -> None:
    body = get_json(client, "/api/rejected_events")
    assert (body["from"], body["to"], len(body["days"]), body["total"]) == ("2025-05-02", "2025-05-31", 30, 106)
    assert get_json(client, "/api/rejected_events?to=0001-01-10")["from"] == "0001-01-01"


@pytest.mark.parametrize(
    ("query", "parameter", "message"),
    [
        ("date=2025-13-01", "date", "invalid parameter 'date': '2025-13-01' is not a calendar date"),
        ("date=%3Cscript%3E", "date", "invalid parameter 'date': must be a date YYYY-MM-DD, got '<script>'"),
        ("date=2025-05-31&to=2025-05-01", "date", "invalid parameter 'date': use either 'date' or 'from' and 'to'"),
        ("from=2025-05-31&to=2025-05-01", "from", "invalid parameter 'from': 2025-05-31 is after 'to' 2025-05-01"),
        ("from=2000-01-01&to=2025-05-01", "to", "invalid parameter 'to': a range may span at most 3660 days"),
        ("date=2025-05-31&date=2025-05-30", "date", "invalid parameter 'date': is given more than once"),
    ],
)
def test_bad_rejected_events_parameters_are_400_naming_them(client: object, query: str, parameter: str,
                                                             message: str) -> None:
    body = get_json(client, f"/api/rejected_events?{query}", 400)
    assert body == {"error": message, "parameter": parameter}


# -- segment sizes -------------------------------------------------------------------


def test_segment_sizes_of_latest_and_of_a_date(client: object) -> None:
    latest = get_json(client, "/api/segment_sizes")
    assert latest == {
        "as_of": "2025-05-31",
        "segments": {
            "japanese": {"users": 255, "entered": 12, "exited": 3},
            "western": {"users": 2, "entered": 1, "exited": 0},
            "even": {"users": 1, "entered": 0, "exited": 1},
        },
    }
    body = get_json(client, "/api/segment_sizes?date=2025-05-29")
    assert body["segments"]["japanese"] == {"users": 241, "entered": 3, "exited": 1}
    missing = get_json(client, "/api/segment_sizes?date=2025-05-01", 404)
    assert missing["error"] == (
        "2025-05-01 has not been aggregated yet (the latest aggregated date is 2025-05-31)"
    )


def test_segment_sizes_over_a_range(client: object) -> None:
    body = get_json(client, "/api/segment_sizes?from=2025-05-28&to=2025-05-31")
    assert [(d["as_of"], d["segments"]["japanese"]["users"], d["segments"]["even"]["users"]) for d in body["days"]] == [
        ("2025-05-29", 241, 2),
        ("2025-05-30", 246, 2),
        ("2025-05-31", 255, 1),
    ]


def read_csv(response: object) -> list[list[str]]:
    """The rows of a CSV download, checked to be spreadsheet-ready (BOM, CRLF lines)."""
    assert response.status_code == 200, response.get_data(as_text=True)  # type: ignore[attr-defined]
    assert response.mimetype == "text/csv"  # type: ignore[attr-defined]
    data = response.get_data()  # type: ignore[attr-defined]
    assert data.startswith(b"\xef\xbb\xbf") and data.endswith(b"\r\n")
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def test_daily_summaries_csv_has_every_aggregated_day_of_the_range(client: object) -> None:
    response = client.get("/api/daily_order_summaries.csv?from=2025-05-13&to=2025-05-16")  # type: ignore[attr-defined]
    assert response.headers["Content-Disposition"] == (
        'attachment; filename="daily_order_summaries_2025-05-13_2025-05-16.csv"'
    )
    # 2025-05-15 was never aggregated: no row (the JSON range lists it under "missing").
    assert read_csv(response) == [
        ["date", "japanese", "western", "total", "japanese_share", "users"],
        ["2025-05-13", "113", "109", "222", "0.509", "63"],
        ["2025-05-14", "114", "92", "206", "0.5534", "64"],
        ["2025-05-16", "116", "98", "214", "0.5421", "66"],
    ]


def test_daily_summaries_csv_defaults_to_the_30_days_up_to_the_latest(client: object) -> None:
    response = client.get("/api/daily_order_summaries.csv")  # type: ignore[attr-defined]
    assert 'filename="daily_order_summaries_2025-05-02_2025-05-31.csv"' in response.headers["Content-Disposition"]
    rows = read_csv(response)
    assert len(rows) == 1 + 29  # 30 days without the 15th
    assert rows[-1] == ["2025-05-31", "120", "95", "215", "0.5581", "150"]


def test_segment_sizes_csv_has_a_row_per_date_and_segment(client: object) -> None:
    response = client.get("/api/segment_sizes.csv?from=2025-05-28&to=2025-05-31")  # type: ignore[attr-defined]
    assert response.headers["Content-Disposition"] == 'attachment; filename="segment_sizes_2025-05-28_2025-05-31.csv"'
    assert read_csv(response) == [
        ["as_of", "segment", "users", "entered", "exited"],
        ["2025-05-29", "japanese", "241", "3", "1"],
        ["2025-05-29", "western", "1", "0", "0"],
        ["2025-05-29", "even", "2", "1", "0"],
        ["2025-05-30", "japanese", "246", "5", "0"],
        ["2025-05-30", "western", "1", "0", "0"],
        ["2025-05-30", "even", "2", "0", "0"],
        ["2025-05-31", "japanese", "255", "12", "3"],
        ["2025-05-31", "western", "2", "1", "0"],
        ["2025-05-31", "even", "1", "0", "1"],
    ]
    assert read_csv(client.get("/api/segment_sizes.csv?to=2025-05-01")) == [  # type: ignore[attr-defined]
        ["as_of", "segment", "users", "entered", "exited"]
    ]


@pytest.mark.parametrize("url", ["/api/daily_order_summaries.csv", "/api/segment_sizes.csv"])
@pytest.mark.parametrize(
    ("query", "parameter"),
    [("from=2025-05-31&to=2025-05-01", "from"), ("from=yesterday", "from"), ("from=2000-01-01&to=2025-01-01", "to"),
     ("to=2025-05-01&to=2025-05-02", "to")],
)
def test_bad_range_of_a_csv_export_is_400_naming_it(client: object, url: str, query: str, parameter: str) -> None:
    assert get_json(client, f"{url}?{query}", 400)["parameter"] == parameter


# -- user segments ---------------------------------------------------------------------


def test_user_segments_is_the_seed_shape_counts_and_first_page(client: object) -> None:
    body = get_json(client, "/api/user_segments")
    assert body["as_of"] == "2025-05-31"
    assert set(body["segments"]) == {"japanese", "western", "even"}
    japanese = body["segments"]["japanese"]
    assert japanese["count"] == 255 and (japanese["entered"], japanese["exited"]) == (12, 3)
    assert japanese["user_ids"] == japanese_ids()[:100]
    assert japanese["next_after"] is not None
    assert body["segments"]["western"] == {
        "label": "洋食派 Western-leaning",
        "count": 2,
        "entered": 1,
        "exited": 0,
        "user_ids": ["anna", "carol"],
        "next_after": None,
    }
    assert body["segments"]["even"]["user_ids"] == ["dave"]
    assert body["segments"]["japanese"]["label"] == "和食派 Japanese-leaning"


def test_a_page_by_number(client: object) -> None:
    body = get_json(client, "/api/user_segments/japanese?page=2&per_page=3")
    assert body["user_ids"] == ["bob", "p-0000", "p-0001"]
    assert body["users"][0] == {"user_id": "bob", "japanese": 5, "western": 2, "last_order_date": None}
    assert (body["count"], body["page"], body["per_page"], body["has_more"]) == (255, 2, 3, True)
    # The XSS id sorts first ('<' < 'a'); JSON carries it verbatim.
    first = get_json(client, "/api/user_segments/japanese?per_page=1")
    assert first["user_ids"] == [XSS_USER]


def test_every_page_by_cursor_and_by_number_covers_the_segment_once_in_order(client: object) -> None:
    ids = japanese_ids()
    assert len(ids) == 255
    seen, after, pages = [], None, 0
    while True:
        url = "/api/user_segments/japanese?per_page=40" + (f"&after={after}" if after else "")
        body = get_json(client, url)
        seen += body["user_ids"]
        pages += 1
        if not body["has_more"]:
            assert body["next_after"] is None
            break
        after = body["next_after"]
    assert seen == ids and pages == 7
    by_number = []
    for page in range(1, 8):
        by_number += get_json(client, f"/api/user_segments/japanese?per_page=40&page={page}")["user_ids"]
    assert by_number == ids
    assert get_json(client, "/api/user_segments/japanese?per_page=40&page=8")["user_ids"] == []


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("a", ["alice", "amy"]),
        ("al", ["alice"]),
        ("p-01", [f"p-{n:04d}" for n in range(100, 200)]),
        ("ユ", ["ユーザー1"]),
        ("<scr", [XSS_USER]),
        ("zzz", []),
    ],
)
def test_prefix_search(client: object, prefix: str, expected: list[str]) -> None:
    from urllib.parse import quote

    body = get_json(client, f"/api/user_segments/japanese?per_page=1000&prefix={quote(prefix)}")
    assert body["user_ids"] == expected
    assert body["prefix"] == prefix


def test_prefix_with_cursor_pages_within_the_prefix(client: object) -> None:
    first = get_json(client, "/api/user_segments/japanese?prefix=p-00&per_page=60")
    assert first["user_ids"] == [f"p-{n:04d}" for n in range(60)] and first["has_more"]
    rest = get_json(client, f"/api/user_segments/japanese?prefix=p-00&per_page=60&after={first['next_after']}")
    assert rest["user_ids"] == [f"p-{n:04d}" for n in range(60, 100)] and not rest["has_more"]


def test_other_segments_pages(client: object) -> None:
    assert get_json(client, "/api/user_segments/western")["user_ids"] == ["anna", "carol"]
    body = get_json(client, "/api/user_segments/even")
    assert body["users"] == [{"user_id": "dave", "japanese": 1, "western": 1, "last_order_date": None}]


# An audience of the Japanese segment, apart from the rest by its prefix: (id, japanese, western, last order).
AUDIENCE = [("zz-a", 5, 1, date(2025, 5, 31)), ("zz-b", 3, 0, date(2025, 5, 20)), ("zz-c", 9, 2, date(2025, 5, 24)),
            ("zz-d", 2, 1, None), ("zz-e", 7, 6, date(2025, 5, 31))]


@pytest.fixture
def audience_members(cassandra: object) -> Iterator[None]:
    ViewerData(cassandra).members(AUDIENCE)
    yield
    statement = cassandra.prepare("DELETE FROM user_segments WHERE segment = ? AND bucket = ? AND user_id = ?")  # type: ignore[attr-defined]
    for user_id, *_ in AUDIENCE:
        cassandra.execute(statement, ("japanese", bucket_of(user_id, SEGMENT_BUCKETS), user_id))  # type: ignore[attr-defined]


def audience_ids(client: object, query: str) -> tuple[list[str], dict]:
    body = get_json(client, f"/api/user_segments/japanese?prefix=zz-&{query}")
    return body["user_ids"], body


def test_audience_filters_by_orders_and_last_order_and_counts_the_matches(client: object, audience_members) -> None:
    ids, body = audience_ids(client, "min_orders=6")
    assert ids == ["zz-a", "zz-c", "zz-e"] and body["matching"] == 3 and "matching_complete" not in body
    assert body["users"][0] == {"user_id": "zz-a", "japanese": 5, "western": 1, "last_order_date": "2025-05-31"}
    # within 7 days of the segments' date 2025-05-31: a last order on 05-25 or later; none known is not active
    ids, body = audience_ids(client, "active_within_days=7")
    assert ids == ["zz-a", "zz-e"] and body["filters"] == {
        "min_orders": None, "active_within_days": 7, "active_since": "2025-05-25", "sort": "user_id"}
    assert audience_ids(client, "active_within_days=8")[0] == ["zz-a", "zz-c", "zz-e"]
    assert audience_ids(client, "min_orders=12&active_within_days=7")[0] == ["zz-e"]
    ids, body = audience_ids(client, "min_orders=1&per_page=2")
    assert ids == ["zz-a", "zz-b"] and body["has_more"] and body["matching"] == 5
    assert audience_ids(client, f"min_orders=1&per_page=2&after={body['next_after']}")[0] == ["zz-c", "zz-d"]


def test_audience_sorted_by_orders_most_first(client: object, audience_members) -> None:
    ids, body = audience_ids(client, "sort=orders&per_page=2")
    assert ids == ["zz-e", "zz-c"] and body["has_more"] and body["next_after"] is None
    assert audience_ids(client, "sort=orders&per_page=2&page=2")[0] == ["zz-a", "zz-b"]  # 3 orders each: b, d by id
    assert audience_ids(client, "sort=orders&per_page=2&page=3")[0] == ["zz-d"]
    assert audience_ids(client, "sort=orders&min_orders=6")[0] == ["zz-e", "zz-c", "zz-a"]


def test_audience_csv_follows_the_filters(client: object, audience_members) -> None:
    rows = read_csv(client.get("/api/user_segments/japanese.csv?prefix=zz-&min_orders=6"))  # type: ignore[attr-defined]
    assert rows == [["user_id", "japanese", "western"], ["zz-a", "5", "1"], ["zz-c", "9", "2"], ["zz-e", "7", "6"]]
    rows = read_csv(client.get("/api/user_segments/japanese.csv?prefix=zz-&sort=orders&active_within_days=8"))  # type: ignore[attr-defined]
    assert [r[0] for r in rows[1:]] == ["zz-e", "zz-c", "zz-a"]


def test_audience_sorted_by_orders_splits_the_list_into_bands_of_at_most_band_rows(
    client: object, audience_members, monkeypatch
) -> None:
    """With bands of at most one member, every band is split down to one orders value (or
    one member): the ranking, its pages and the CSV are the same as with one band."""
    from viewer import audience

    monkeypatch.setattr(audience, "BAND_ROWS", 1)
    assert audience_ids(client, "sort=orders&per_page=2")[0] == ["zz-e", "zz-c"]
    assert audience_ids(client, "sort=orders&per_page=2&page=2")[0] == ["zz-a", "zz-b"]
    ids, body = audience_ids(client, "sort=orders&per_page=2&page=3")
    assert ids == ["zz-d"] and not body["has_more"] and body["matching"] == 5
    rows = read_csv(client.get("/api/user_segments/japanese.csv?prefix=zz-&sort=orders"))  # type: ignore[attr-defined]
    assert [r[0] for r in rows[1:]] == ["zz-e", "zz-c", "zz-a", "zz-b", "zz-d"]


@pytest.mark.parametrize(
    ("query", "parameter", "message"),
    [("min_orders=0", "min_orders", "must be from 1 to 1000000000, got 0"),
     ("active_within_days=x", "active_within_days", "must be a whole number from 1 to 3660, got 'x'"),
     ("sort=price", "sort", "must be one of user_id, orders, got 'price'"),
     ("sort=orders&after=dTp1c2Vy", "sort", "a list sorted by orders is paged with 'page', not 'after'")],
)
def test_bad_audience_parameters_are_400(client: object, query: str, parameter: str, message: str) -> None:
    assert get_json(client, f"/api/user_segments/japanese?{query}", 400) == {
        "error": f"invalid parameter '{parameter}': {message}", "parameter": parameter}


def test_unknown_segment_is_404(client: object) -> None:
    body = get_json(client, "/api/user_segments/sushi", 404)
    assert body == {"error": "unknown segment 'sushi'; the segments are japanese, western, even"}
    assert get_json(client, "/api/user_segments/sushi.csv", 404)["error"].startswith("unknown segment 'sushi'")


@pytest.mark.parametrize(
    ("query", "parameter", "message"),
    [
        ("per_page=0", "per_page", "invalid parameter 'per_page': must be from 1 to 1000, got 0"),
        ("per_page=1001", "per_page", "invalid parameter 'per_page': must be from 1 to 1000, got 1001"),
        ("per_page=ten", "per_page", "invalid parameter 'per_page': must be a whole number from 1 to 1000, got 'ten'"),
        ("page=-1", "page", "invalid parameter 'page': must be a whole number from 1 to 100000, got '-1'"),
        ("after=%%%", "after", "invalid parameter 'after': not a cursor returned by this API (use 'next_after')"),
        ("after=YWJj", "after", "invalid parameter 'after': not a cursor returned by this API (use 'next_after')"),
        (
            "page=2&after=dTphbXk",
            "page",
            "invalid parameter 'page': use either 'page' or 'after' (the cursor of the next page)",
        ),
        (
            "page=102&per_page=100",
            "page",
            "invalid parameter 'page': pages deeper than 10000 users are reached with the 'after' cursor: "
            "follow 'next_after' from page to page",
        ),
        ("prefix=" + "x" * 129, "prefix", "invalid parameter 'prefix': must be at most 128 characters"),
        ("prefix=a%01", "prefix", "invalid parameter 'prefix': must not contain control characters"),
    ],
)
def test_bad_page_parameters_are_400(client: object, query: str, parameter: str, message: str) -> None:
    body = get_json(client, f"/api/user_segments/japanese?{query}", 400)
    assert body == {"error": message, "parameter": parameter}


# -- CSV export -------------------------------------------------------------------------


def test_csv_is_the_whole_segment_with_header_and_filename(client: object) -> None:
    response = client.get("/api/user_segments/japanese.csv")  # type: ignore[attr-defined]
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"] == 'attachment; filename="user_segment_japanese_2025-05-31.csv"'
    assert response.is_streamed
    data = response.get_data()
    assert data.startswith(b"\xef\xbb\xbf")  # the BOM: spreadsheets read the file as UTF-8
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    assert rows[0] == ["user_id", "japanese", "western"]
    assert [r[0] for r in rows[1:]] == japanese_ids()
    counts = {u: (j, w) for u, j, w in NAMED_MEMBERS + BULK_MEMBERS}
    assert all(counts[u] == (int(j), int(w)) for u, j, w in rows[1:])
    assert rows[1] == [XSS_USER, "1", "0"]  # quotes doubled by the csv module, read back intact


def test_csv_with_prefix_and_of_a_small_segment(client: object) -> None:
    text = client.get("/api/user_segments/japanese.csv?prefix=a").get_data(as_text=True)  # type: ignore[attr-defined]
    assert text == "\ufeffuser_id,japanese,western\r\nalice,3,1\r\namy,2,0\r\n"
    text = client.get("/api/user_segments/even.csv").get_data(as_text=True)  # type: ignore[attr-defined]
    assert text == "\ufeffuser_id,japanese,western\r\ndave,1,1\r\n"
    data = client.get("/api/user_segments/japanese.csv?prefix=%E3%83%A6").get_data()  # type: ignore[attr-defined]
    assert data == "\ufeffuser_id,japanese,western\r\nユーザー1,4,1\r\n".encode()


# -- users --------------------------------------------------------------------------------


def test_user_counts_preference_and_history_across_years(client: object) -> None:
    body = get_json(client, "/api/users/alice")
    assert body == {
        "user_id": "alice",
        "japanese": 3,
        "western": 1,
        "total": 4,
        "preference": "japanese",
        "preference_label": "和食派 Japanese-leaning",
        "first_order_date": "2024-12-31",
        "last_order_date": "2025-05-31",
        "updated_at": "2025-06-01T02:00:00Z",
        "history": [
            {"date": d.isoformat(), "japanese": j, "western": w} for d, j, w in reversed(ALICE_HISTORY)
        ],
        "segment_timeline": [{"segment": "japanese", "label": "和食派 Japanese-leaning", "from": "2024-12-31",
                              "to": None}],
    }


def test_user_segment_timeline_follows_the_cumulative_counts(client: object, cassandra: object) -> None:
    # Western after 05-20 (0:1), Japanese after 05-26 (2:1), even after 05-28 (2:2).
    ViewerData(cassandra).user("switcher", [(date(2025, 5, 20), 0, 1), (date(2025, 5, 26), 2, 0),
                                            (date(2025, 5, 28), 0, 1)])
    body = get_json(client, "/api/users/switcher")
    assert body["preference"] == "even"
    assert body["segment_timeline"] == [
        {"segment": "even", "label": "どちらも Even", "from": "2025-05-28", "to": None},
        {"segment": "japanese", "label": "和食派 Japanese-leaning", "from": "2025-05-26", "to": "2025-05-27"},
        {"segment": "western", "label": "洋食派 Western-leaning", "from": "2025-05-20", "to": "2025-05-25"},
    ]


def found_users(client: object, query: str) -> tuple[list[tuple[str, str, int, int]], bool]:
    body = get_json(client, f"/api/users?{query}")
    return [(u["user_id"], u["segment"], u["japanese"], u["western"]) for u in body["users"]], body["has_more"]


def test_users_are_found_by_prefix_across_every_segment_in_id_order(client: object) -> None:
    assert found_users(client, "prefix=a") == (
        [("alice", "japanese", 3, 1), ("amy", "japanese", 2, 0), ("anna", "western", 1, 3)], False
    )
    assert found_users(client, "prefix=a&limit=3") == (found_users(client, "prefix=a")[0], False)
    assert found_users(client, "prefix=a&limit=2") == ([("alice", "japanese", 3, 1), ("amy", "japanese", 2, 0)], True)
    assert found_users(client, "prefix=d") == ([("dave", "even", 1, 1)], False)
    assert found_users(client, "prefix=%E3%83%A6") == ([("ユーザー1", "japanese", 4, 1)], False)
    assert found_users(client, "prefix=zz") == ([], False)
    bulk, more = found_users(client, "prefix=p-01&limit=5")
    assert [u for u, *_ in bulk] == [f"p-{n:04d}" for n in range(100, 105)] and more
    body = get_json(client, "/api/users?prefix=p-")
    assert (body["prefix"], body["limit"], len(body["users"]), body["has_more"]) == ("p-", 20, 20, True)
    assert body["users"][0] == {"user_id": "p-0000", "segment": "japanese", "segment_label": "和食派 Japanese-leaning",
                                "japanese": 2, "western": 1}


@pytest.mark.parametrize(
    ("query", "parameter", "message"),
    [
        ("", "prefix", "is required: the start of the user ids to find"),
        ("prefix=a&limit=0", "limit", "must be from 1 to 100, got 0"),
        ("prefix=a&limit=101", "limit", "must be from 1 to 100, got 101"),
        ("prefix=" + "x" * 129, "prefix", "must be at most 128 characters"),
        ("prefix=a&prefix=b", "prefix", "is given more than once"),
    ],
)
def test_bad_user_search_is_400_naming_the_parameter(client: object, query: str, parameter: str, message: str) -> None:
    assert get_json(client, f"/api/users?{query}", 400) == {
        "error": f"invalid parameter '{parameter}': {message}", "parameter": parameter
    }


def test_user_with_markup_and_slashes_in_the_id(client: object) -> None:
    from urllib.parse import quote

    body = get_json(client, f"/api/users/{quote(XSS_USER, safe='')}")
    assert body["user_id"] == XSS_USER and body["history"] == [
        {"date": LATEST.isoformat(), "japanese": 1, "western": 0}
    ]


def test_unknown_user_is_404(client: object) -> None:
    body = get_json(client, "/api/users/nobody", 404)
    assert body == {"error": "unknown user 'nobody': no aggregated orders", "user_id": "nobody"}
    too_long = get_json(client, "/api/users/" + "x" * 129, 400)
    assert too_long == {"error": "invalid parameter 'user_id': must be 1 to 128 characters", "parameter": "user_id"}


@pytest.mark.parametrize("user_id", ["/leading", "a//b", "trailing/", "/", "..", "a?b#c%d"])
def test_user_ids_with_slashes_and_url_characters_are_found(client: object, cassandra: object, user_id: str) -> None:
    from urllib.parse import quote

    ViewerData(cassandra).user(user_id, [(LATEST, 2, 1)])
    body = get_json(client, f"/api/users/{quote(user_id, safe='/')}")
    assert (body["user_id"], body["japanese"], body["western"]) == (user_id, 2, 1)


# -- the ends of the calendar, repeated parameters, odd cursors ----------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("/api/daily_order_summaries?to=0001-01-01", {"from": "0001-01-01", "to": "0001-01-01", "days": [],
                                                      "missing": ["0001-01-01"], "japanese_share_7d": []}),
        ("/api/daily_order_summaries?from=9999-12-31", {"from": "9999-12-31", "to": "9999-12-31", "days": [],
                                                        "missing": ["9999-12-31"], "japanese_share_7d": []}),
        ("/api/daily_order_summaries?from=0001-01-01&to=0001-01-02&compare_from=9999-12-31",
         {"from": "0001-01-01", "to": "0001-01-02", "days": [], "missing": ["0001-01-01", "0001-01-02"],
          "japanese_share_7d": [], "compare": {"from": "9999-12-31", "to": "9999-12-31", "days": []}}),
        ("/api/segment_sizes?to=0001-01-01", {"from": "0001-01-01", "to": "0001-01-01", "days": []}),
        ("/api/segment_sizes?from=9999-12-31", {"from": "9999-12-31", "to": "9999-12-31", "days": []}),
        ("/api/segment_sizes?from=0001-12-31&to=0002-01-01", {"from": "0001-12-31", "to": "0002-01-01", "days": []}),
        ("/api/segment_sizes?from=9998-12-31&to=9999-01-01", {"from": "9998-12-31", "to": "9999-01-01", "days": []}),
    ],
)
def test_ranges_at_the_ends_of_the_calendar_are_answered(client: object, url: str, expected: dict) -> None:
    assert get_json(client, url) == expected


def test_a_default_range_is_cut_short_at_the_ends_of_the_calendar(client: object) -> None:
    body = get_json(client, "/api/daily_order_summaries?to=0001-01-10")
    assert (body["from"], body["to"], len(body["missing"])) == ("0001-01-01", "0001-01-10", 10)
    body = get_json(client, "/api/daily_order_summaries?from=9999-12-25")
    assert (body["from"], body["to"], len(body["missing"])) == ("9999-12-25", "9999-12-31", 7)
    body = get_json(client, "/api/daily_order_summaries?from=9980-01-01&to=9999-12-31", 400)
    assert body["parameter"] == "to"


@pytest.mark.parametrize("day", ["0001-01-01", "9999-12-31"])
def test_a_date_at_the_ends_of_the_calendar_is_the_usual_404(client: object, day: str) -> None:
    for call in ("daily_order_summaries", "segment_sizes"):
        body = get_json(client, f"/api/{call}?date={day}", 404)
        assert body == {"error": f"{day} has not been aggregated yet (the latest aggregated date is 2025-05-31)",
                        "date": day}


@pytest.mark.parametrize(
    ("query", "parameter"),
    [("date=2025-05-31&date=2025-05-30", "date"), ("from=2025-05-01&from=", "from"), ("to=&to=", "to"),
     ("page=1&page=2", "page"), ("prefix=a&prefix=b", "prefix")],
)
def test_a_parameter_given_twice_is_a_400_naming_it(client: object, query: str, parameter: str) -> None:
    for call in ("daily_order_summaries", "user_segments/japanese"):
        body = get_json(client, f"/api/{call}?{query}", 400)
        assert body == {"error": f"invalid parameter '{parameter}': is given more than once", "parameter": parameter}


@pytest.mark.parametrize("user_id", ["x" * 129, "x" * 70_000])
def test_a_cursor_of_an_id_no_user_can_have_is_a_400(client: object, user_id: str) -> None:
    from viewer.params import encode_cursor

    body = get_json(client, f"/api/user_segments/japanese?after={encode_cursor(user_id)}", 400)
    assert body == {"error": "invalid parameter 'after': not a cursor returned by this API (use 'next_after')",
                    "parameter": "after"}


# -- status and generic errors ----------------------------------------------------------


def test_status_tells_the_last_aggregation(client: object) -> None:
    body = get_json(client, "/api/status")
    assert body["latest_summary_date"] == "2025-05-31"
    assert body["segments_as_of"] == "2025-05-31"
    assert body["aggregated_at"] == "2025-06-01T02:00:00Z"
    assert body["last_run"]["order_date"] == "2025-05-31" and body["last_run"]["status"] == "succeeded"
    assert body["last_run"]["trigger"] == "nightly"


def test_unknown_api_route_and_method_are_json(client: object) -> None:
    assert get_json(client, "/api/nope", 404) == {"error": "not found: /api/nope"}
    response = client.post("/api/daily_order_summaries")  # type: ignore[attr-defined]
    assert response.status_code == 405 and response.get_json()["error"]
    assert "GET" in response.headers["Allow"]


def test_responses_carry_security_headers(client: object) -> None:
    response = client.get("/api/status")  # type: ignore[attr-defined]
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]


# -- the CSV is safe to open in a spreadsheet -------------------------------------------------------

FORMULA_IDS = ['=HYPERLINK("http://evil.example","click")', "+81-3-1234", "-abc", "@SUM(A1)", "\tTAB", "\rCR"]


@pytest.fixture
def formula_members(cassandra: object) -> Iterator[list[str]]:
    """Members of the even segment whose ids a spreadsheet would run as formulas."""
    from orderlog.layout import SEGMENT_BUCKETS, bucket_of

    ViewerData(cassandra).members([(u, 1, 1) for u in FORMULA_IDS])
    yield FORMULA_IDS
    delete = cassandra.prepare("DELETE FROM user_segments WHERE segment = ? AND bucket = ? AND user_id = ?")  # type: ignore[attr-defined]
    for user_id in FORMULA_IDS:
        cassandra.execute(delete, ("even", bucket_of(user_id, SEGMENT_BUCKETS), user_id))  # type: ignore[attr-defined]


def test_csv_cells_a_spreadsheet_would_run_start_with_an_apostrophe(client: object, formula_members: list[str]) -> None:
    data = client.get("/api/user_segments/even.csv").get_data()  # type: ignore[attr-defined]
    assert data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    assert rows[0] == ["user_id", "japanese", "western"]
    by_id = {row[0]: row[1:] for row in rows[1:]}
    assert set(by_id) == {"'" + u for u in formula_members} | {"dave"}  # dave: a normal id, untouched
    assert all(counts == ["1", "1"] for counts in by_id.values())
    # The JSON API keeps the ids as they are.
    assert set(get_json(client, "/api/user_segments/even?per_page=100")["user_ids"]) == {*formula_members, "dave"}


# -- orders by weekday and hour ------------------------------------------------------------


def _cell(body: dict, weekday: int, hour: int) -> dict:
    cell = body["cells"][(weekday - 1) * 24 + hour]
    assert (cell["weekday"], cell["hour"]) == (weekday, hour)
    return cell


def test_hourly_orders_sum_each_weekday_and_hour_over_the_range(client: object) -> None:
    body = get_json(client, "/api/hourly_orders?from=2025-05-24&to=2025-05-31")
    assert (body["from"], body["to"], body["timezone"], body["dates"]) == ("2025-05-24", "2025-05-31", "Asia/Tokyo", 3)
    assert len(body["cells"]) == 7 * 24
    assert [(w["weekday"], w["name"], w["dates"]) for w in body["weekdays"]][4:6] == [(5, "Friday", 1),
                                                                                       (6, "Saturday", 2)]
    # Saturday lunch: 05-24 (24 + 2) and 05-31 (60 + 20).
    assert _cell(body, 6, 12) == {"weekday": 6, "hour": 12, "japanese": 84, "western": 22, "total": 106,
                                  "japanese_share": round(84 / 106, 4)}
    assert _cell(body, 5, 19) == {"weekday": 5, "hour": 19, "japanese": 50, "western": 70, "total": 120,
                                  "japanese_share": round(50 / 120, 4)}
    # No order in the cell: no share ("no data"), not 0.
    assert _cell(body, 7, 12) == {"weekday": 7, "hour": 12, "japanese": 0, "western": 0, "total": 0,
                                  "japanese_share": None}
    assert sum(c["total"] for c in body["cells"]) == sum(j + w for h in HOURLY.values() for j, w in h.values())


def test_hourly_orders_default_to_the_30_days_up_to_the_latest_date(client: object) -> None:
    body = get_json(client, "/api/hourly_orders")
    assert (body["from"], body["to"]) == ("2025-05-02", "2025-05-31")
    assert body["dates"] == 3


@pytest.mark.parametrize(
    ("query", "parameter", "reason"),
    [
        ("from=2025-01-01&to=2026-01-02", "to", "a range may span at most 366 days"),
        ("from=2025-06-01&to=2025-05-01", "from", "2025-06-01 is after 'to' 2025-05-01"),
        ("from=2025-02-30", "from", "'2025-02-30' is not a calendar date"),
        ("to=31-05-2025", "to", "must be a date YYYY-MM-DD, got '31-05-2025'"),
        ("from=2025-05-01&from=2025-05-02", "from", "is given more than once"),
    ],
)
def test_hourly_orders_refuse_a_bad_range(client: object, query: str, parameter: str, reason: str) -> None:
    body = get_json(client, f"/api/hourly_orders?{query}", 400)
    assert body["parameter"] == parameter
    assert reason in body["error"]


# -- the OpenAPI document, and schemathesis against it ----------------------------------------------


def test_every_api_route_is_in_the_openapi_document(app: object, client: object) -> None:
    import re

    document = get_json(client, "/api/openapi.json")
    assert document["openapi"].startswith("3.")
    routes = {
        re.sub(r"<(?:[a-z_]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        for rule in app.url_map.iter_rules()  # type: ignore[attr-defined]
        if rule.rule.startswith("/api/")
    }
    # The CSV export shares its route with the segment pages ("<segment>.csv"); the probes
    # are outside /api/.
    assert set(document["paths"]) == routes | {"/api/user_segments/{segment}.csv", "/healthz", "/readyz",
                                                                          "/metrics"}


def _schemathesis_run(app: object, mode: object, max_examples: int) -> Counter:
    import schemathesis
    from schemathesis.checks import not_a_server_error
    from schemathesis.generation import GenerationMode
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app)
    checks = [not_a_server_error, status_code_conformance, content_type_conformance,
              response_schema_conformance, response_headers_conformance]
    statuses: Counter[tuple[str, int]] = Counter()
    for result in schema.get_all_operations():
        operation = result.ok()
        # a call without parameters has no invalid form to generate
        if mode == GenerationMode.POSITIVE or len(operation.query) + len(operation.path_parameters):
            _fuzz(operation, mode, max_examples, checks, statuses)
    return statuses


def _fuzz(operation: object, mode: object, max_examples: int, checks: list, statuses: Counter) -> None:
    from hypothesis import HealthCheck, given, settings

    @settings(max_examples=max_examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(case=operation.as_strategy(generation_mode=mode))  # type: ignore[attr-defined]
    def run(case: object) -> None:
        response = case.call()  # type: ignore[attr-defined]
        statuses[(operation.label, response.status_code)] += 1  # type: ignore[attr-defined]
        case.validate_response(response, checks=checks)  # type: ignore[attr-defined]

    run()


def test_schemathesis_valid_requests_match_the_document_and_never_get_5xx(app: object) -> None:
    from schemathesis.generation import GenerationMode

    statuses = _schemathesis_run(app, GenerationMode.POSITIVE, 60)
    assert all(status < 500 for _, status in statuses)
    # Every call but the user's (random ids are unknown users) was answered with a 200 at
    # least once: the fuzzing reached the data. (Schemathesis leaves out the document itself.)
    answered = {label for label, status in statuses if status == 200}
    assert answered >= {"GET /api/daily_order_summaries", "GET /api/segment_sizes", "GET /api/user_segments",
                        "GET /api/daily_order_summaries.csv", "GET /api/segment_sizes.csv", "GET /api/users",
                        "GET /api/user_segments/{segment}", "GET /api/user_segments/{segment}.csv",
                        "GET /api/status", "GET /api/rejected_events", "GET /api/status_overview",
                        "GET /api/hourly_orders"}, statuses
    assert statuses[("GET /api/users/{user_id}", 404)] > 0


def test_schemathesis_invalid_requests_get_a_4xx_never_a_5xx(app: object) -> None:
    from schemathesis.generation import GenerationMode

    statuses = _schemathesis_run(app, GenerationMode.NEGATIVE, 60)
    assert statuses and all(status < 500 for _, status in statuses)
    assert any(status == 400 for _, status in statuses)
