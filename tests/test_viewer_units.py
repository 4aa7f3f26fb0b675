"""Pure unit tests of the viewer's helpers (no servers): prefix bounds, cursors,
parameter checks, the CSV writer, the chart figures."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from viewer import charts, params, queries
from viewer.csv_export import BOM, csv_rows, original_cell, sizes_csv, spreadsheet_safe, summaries_csv
from viewer.heatmap import HourCount, weekday_hours
from viewer.params import BadParameter, check_single, check_user_id, parse_date, parse_int, parse_prefix, parse_range


@pytest.mark.parametrize(
    ("prefix", "upper"),
    [
        ("a", "b"),
        ("user-0", "user-1"),
        ("az", "a{"),
        ("ユ", "\u30e7"),  # U+30E6 -> U+30E7
        ("a\U0010ffff", "b"),
        ("\U0010ffff", None),
        ("\ud7ff", "\ue000"),  # skips the surrogates, which UTF-8 text cannot hold
    ],
)
def test_prefix_upper_bounds_every_string_with_the_prefix(prefix: str, upper: str | None) -> None:
    assert queries.prefix_upper(prefix) == upper
    if upper is not None:
        for s in (prefix, prefix + "\U0010ffff" * 3, prefix + "zzz"):
            assert prefix <= s < upper
            # Python's str order is the UTF-8 byte order Cassandra uses for text.
            assert prefix.encode() <= s.encode() < upper.encode()


@pytest.mark.parametrize("user_id", ["alice", "<script>", "ユーザー1", "a/b c", "x" * 128])
def test_cursor_round_trips_and_is_url_safe(user_id: str) -> None:
    cursor = params.encode_cursor(user_id)
    assert params.decode_cursor(cursor) == user_id
    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


@pytest.mark.parametrize("cursor", ["%%%", "YWJj", "////", "gA"])
def test_foreign_cursor_is_refused(cursor: str) -> None:
    with pytest.raises(params.BadCursor, match="not a cursor returned by this API"):
        params.decode_cursor(cursor)


@pytest.mark.parametrize(
    ("prefix", "after", "expected"),
    [
        (None, None, ("members", ())),
        (None, "m", ("members_gt", ("m",))),
        ("p", None, ("members_ge_lt", ("p", "q"))),
        ("p", "a", ("members_ge_lt", ("p", "q"))),  # cursor before the prefix: start at it
        ("p", "p-1", ("members_gt_lt", ("p-1", "q"))),
        ("p", "q", None),  # cursor past the prefix: nothing left
        ("\U0010ffff", None, ("members_ge", ("\U0010ffff",))),
    ],
)
def test_bounds_of_a_page(prefix: str | None, after: str | None, expected: object) -> None:
    assert queries._bounds(prefix, after) == expected


def test_parse_date_and_range() -> None:
    assert parse_date({"date": "2025-05-31"}, "date") == date(2025, 5, 31)
    assert parse_date({}, "date") is None
    with pytest.raises(BadParameter, match="'2025-02-30' is not a calendar date"):
        parse_date({"date": "2025-02-30"}, "date")
    assert parse_range({}, date(2025, 5, 31)) == (date(2025, 5, 2), date(2025, 5, 31))
    assert parse_range({}, None) is None
    assert parse_range({"from": "2025-05-01"}, None) == (date(2025, 5, 1), date(2025, 5, 30))
    with pytest.raises(BadParameter, match="is after 'to'"):
        parse_range({"from": "2025-05-02", "to": "2025-05-01"}, None)



@pytest.mark.parametrize(
    ("args", "default_last", "expected"),
    [
        ({"to": "0001-01-01"}, None, (date.min, date.min)),
        ({"to": "0001-01-15"}, None, (date.min, date(1, 1, 15))),
        ({"from": "9999-12-31"}, None, (date.max, date.max)),
        ({"from": "9999-12-20"}, None, (date(9999, 12, 20), date.max)),
        ({}, date.min, (date.min, date.min)),
        ({"from": "0001-12-20", "to": "0002-01-10"}, None, (date(1, 12, 20), date(2, 1, 10))),
    ],
)
def test_default_ranges_stop_at_the_ends_of_the_calendar(args: dict, default_last: date | None,
                                                         expected: tuple[date, date]) -> None:
    assert parse_range(args, default_last) == expected


@pytest.mark.parametrize("raw", ["2025-05-31\n", "٢٠٢٥-٠٥-٣١", "2025-05-31T00:00", " 2025-05-31", "+2025-05-31"])
def test_only_a_plain_ascii_date_is_a_date(raw: str) -> None:
    with pytest.raises(BadParameter, match="must be a date YYYY-MM-DD"):
        parse_date({"date": raw}, "date")


def test_a_parameter_given_twice_is_refused() -> None:
    from werkzeug.datastructures import MultiDict

    check_single(MultiDict([("date", "2025-05-31"), ("other", "1"), ("other", "2")]))
    with pytest.raises(BadParameter, match="invalid parameter 'date': is given more than once"):
        check_single(MultiDict([("date", "2025-05-31"), ("date", "2025-05-30")]))


def test_cursors_no_user_id_can_have_are_refused() -> None:
    from orderlog.events import USER_ID_MAX_LENGTH

    longest = "\U0010ffff" * USER_ID_MAX_LENGTH
    assert params.decode_cursor(params.encode_cursor(longest)) == longest
    for user_id in ("x" * (USER_ID_MAX_LENGTH + 1), ""):
        with pytest.raises(params.BadCursor):
            params.decode_cursor(params.encode_cursor(user_id))
    with pytest.raises(params.BadCursor):
        params.decode_cursor("A" * 1_000_000)


def test_parse_int_and_prefix() -> None:
    assert parse_int({}, "page", 1, 1, 10) == 1
    assert parse_int({"page": "7"}, "page", 1, 1, 10) == 7
    for bad in ("0", "11", "1.5", "-1", " 3", "٣"):  # Arabic-Indic three is not an ASCII digit
        with pytest.raises(BadParameter):
            parse_int({"page": bad}, "page", 1, 1, 10)
    assert parse_prefix({"prefix": ""}) is None
    assert parse_prefix({"prefix": "ユ"}) == "ユ"
    with pytest.raises(BadParameter, match="control characters"):
        parse_prefix({"prefix": "a\tb"})


@pytest.mark.parametrize("text", ["a\x85b", "\x80", "a\x9f", "\x7f", "a\nb"])
def test_the_viewer_refuses_the_user_ids_the_ingest_api_refuses(text: str) -> None:
    """C1 controls (U+0080..U+009F) too: the viewer's copy of the rule had drifted and let them through."""
    from orderlog.events import InvalidEvent, validate_event

    with pytest.raises(InvalidEvent, match="control characters"):
        validate_event({"user_id": text, "timestamp": "2025-05-31T12:00:00+09:00", "menu_type": "japanese"})
    with pytest.raises(BadParameter, match="must not contain control characters"):
        check_user_id(text)
    with pytest.raises(BadParameter, match="must not contain control characters"):
        parse_prefix({"prefix": text})


def test_csv_rows_quote_and_chunk() -> None:
    members = [queries.Member(f"u{n:04d}", n, 0) for n in range(1200)]
    members.insert(0, queries.Member('a,"b"', 1, 2))
    chunks = list(csv_rows(iter(members)))
    assert len(chunks) == 3  # 500 rows a chunk, then the rest
    text = "".join(chunks)
    assert text.startswith(BOM + 'user_id,japanese,western\r\n"a,""b""",1,2\r\nu0000,0,0\r\n')
    assert text.count("\r\n") == 1202
    assert list(csv_rows(iter([]))) == [BOM + "user_id,japanese,western\r\n"]


def test_range_csvs_leave_unknown_values_empty_and_keep_segment_order() -> None:
    at = datetime(2025, 6, 1, tzinfo=UTC)
    text = summaries_csv([queries.DaySummary(date(2025, 5, 30), 0, 0, 0, None, at),
                          queries.DaySummary(date(2025, 5, 31), 2, 1, 3, 2, at)])
    assert text == BOM + "date,japanese,western,total,japanese_share,users\r\n2025-05-30,0,0,0,,\r\n" \
        "2025-05-31,2,1,3,0.6667,2\r\n"
    sizes = {s: queries.SegmentSize(s, n, 1, 0) for n, s in enumerate(("japanese", "western", "even"))}
    assert sizes_csv({date(2025, 5, 31): sizes}) == BOM + "as_of,segment,users,entered,exited\r\n" \
        "2025-05-31,japanese,0,1,0\r\n2025-05-31,western,1,1,0\r\n2025-05-31,even,2,1,0\r\n"


def test_the_csv_starts_with_a_bom_so_spreadsheets_read_japanese_ids() -> None:
    data = "".join(csv_rows([queries.Member("ユーザー1", 4, 1)])).encode("utf-8")
    assert data.startswith(b"\xef\xbb\xbf")
    assert data.decode("utf-8-sig") == "user_id,japanese,western\r\nユーザー1,4,1\r\n"


@pytest.mark.parametrize(
    ("user_id", "exported"),
    [
        ("=HYPERLINK(\"http://x\",\"y\")", "'=HYPERLINK(\"http://x\",\"y\")"),
        ("+1+2", "'+1+2"),
        ("-abc", "'-abc"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tcmd", "'\tcmd"),
        ("\rcmd", "'\rcmd"),
        ("'quoted", "''quoted"),  # one more, so that removing one always gives the id back
        ("alice", "alice"),
        ("a=b-c", "a=b-c"),  # only the first character matters
        ("ユーザー1", "ユーザー1"),
    ],
)
def test_cells_a_spreadsheet_would_run_as_formulas_are_neutralised(user_id: str, exported: str) -> None:
    assert spreadsheet_safe(user_id) == exported
    assert original_cell(exported) == user_id
    text = "".join(csv_rows([queries.Member(user_id, 1, 0)]))
    rows = list(csv.reader(io.StringIO(text.removeprefix(BOM), newline="")))
    assert rows == [["user_id", "japanese", "western"], [exported, "1", "0"]]


def test_daily_figure_stacks_counts_and_puts_the_share_on_a_second_axis() -> None:
    at = datetime(2025, 6, 1, tzinfo=UTC)
    days = [
        queries.DaySummary(date(2025, 5, 30), 3, 1, 4, 2, at),
        queries.DaySummary(date(2025, 5, 31), 0, 0, 0, 0, at),  # no orders: no share
    ]
    fig = charts.daily_figure(days)
    assert [t["type"] for t in fig["data"]] == ["bar", "bar", "scatter"]
    assert fig["data"][0]["y"] == [3, 0] and fig["data"][1]["y"] == [1, 0]
    assert fig["data"][2]["y"] == [75.0, None] and fig["data"][2]["yaxis"] == "y2"
    assert fig["layout"]["barmode"] == "stack" and fig["layout"]["yaxis2"]["overlaying"] == "y"


def test_segments_and_user_figures() -> None:
    def of(*users: int) -> dict[str, queries.SegmentSize]:
        return {s: queries.SegmentSize(s, n, 0, 0) for s, n in zip(charts.SEGMENTS, users, strict=True)}

    sizes = {date(2025, 5, 30): of(5, 3, 1), date(2025, 5, 31): of(6, 3, 0)}
    fig = charts.segments_figure(sizes)
    assert [t["y"] for t in fig["data"]] == [[5, 6], [3, 3], [1, 0]]
    user = charts.user_figure([queries.UserDay(date(2025, 5, 31), 1, 0), queries.UserDay(date(2025, 5, 1), 0, 2)])
    assert user["data"][0]["x"] == ["2025-05-01", "2025-05-31"] and user["data"][1]["y"] == [2, 0]


def test_the_date_axis_of_a_chart_at_the_ends_of_the_calendar() -> None:
    at = datetime(2025, 6, 1, tzinfo=UTC)
    for day in (date.min, date.max):
        fig = charts.daily_figure([queries.DaySummary(day, 1, 1, 2, 1, at)])
        assert fig["layout"]["xaxis"]["range"][0] <= day.isoformat() <= fig["layout"]["xaxis"]["range"][1]


def test_changes_against_a_reference_day_are_counts_and_fractions_or_no_data() -> None:
    from viewer.changes import changes_of, reference_date

    at = datetime(2025, 6, 1, tzinfo=UTC)
    today = queries.DaySummary(date(2025, 5, 31), 3, 1, 4, 2, at)
    empty_day = queries.DaySummary(date(2025, 5, 30), 0, 0, 0, 0, at)  # nothing to divide by
    found = changes_of(today, {empty_day.date: empty_day})
    assert found["previous_day"].to_json() == {
        "date": "2025-05-30", "aggregated": True,
        "japanese": {"change": 3, "relative": None}, "western": {"change": 1, "relative": None},
        "total": {"change": 4, "relative": None}, "japanese_share": None,
    }
    assert found["week_before"].to_json() == {"date": "2025-05-24", "aggregated": False}
    # The first day of the calendar has no day before it: no data, not an error.
    first = queries.DaySummary(date.min, 1, 0, 1, 1, at)
    assert changes_of(first, {})["previous_day"].to_json() == {"date": None, "aggregated": False}
    assert reference_date(date(1, 1, 7), 7) is None and reference_date(date(1, 1, 8), 7) == date(1, 1, 1)


def test_segment_timeline_starts_a_period_at_each_change_of_the_cumulative_preference() -> None:
    from viewer.timeline import segment_timeline

    day = queries.UserDay
    # any order in, latest first out; a day that keeps the segment starts nothing
    history = [day(date(2025, 5, 3), 0, 3), day(date(2025, 5, 1), 1, 0), day(date(2025, 5, 2), 1, 0)]
    assert [p.to_json() for p in segment_timeline(history)] == [
        {"segment": "western", "label": "洋食派 Western-leaning", "from": "2025-05-03", "to": None},
        {"segment": "japanese", "label": "和食派 Japanese-leaning", "from": "2025-05-01", "to": "2025-05-02"},
    ]
    assert segment_timeline([]) == []
    # a tie on the first day is the even segment
    assert [p.segment for p in segment_timeline([day(date(2025, 5, 1), 1, 1)])] == ["even"]


def test_moving_share_months_and_compared_periods_at_the_edges() -> None:
    from viewer import trends

    at = datetime(2025, 6, 1, tzinfo=UTC)
    quiet = [queries.DaySummary(date(2025, 5, 1), 0, 0, 0, 0, at), queries.DaySummary(date(2025, 5, 9), 3, 1, 4, 1, at)]
    # 05-08's window (05-02..05-08) has no orders; 05-09's has 3 of 4; a day at the calendar's start works
    assert trends.moving_share(quiet, [date(2025, 5, 8), date(2025, 5, 9), date.min]) == {
        date(2025, 5, 8): None, date(2025, 5, 9): 0.75, date.min: None}
    assert trends.previous_month(date(2025, 5, 31)) == ((date(2025, 5, 1), date(2025, 5, 31)), date(2025, 4, 1))
    assert trends.previous_month(date(2025, 1, 15)) == ((date(2025, 1, 1), date(2025, 1, 31)), date(2024, 12, 1))
    assert trends.previous_month(date(2024, 12, 2)) == ((date(2024, 12, 1), date(2024, 12, 31)), date(2024, 11, 1))
    assert trends.previous_month(date(1, 1, 20)) is None
    assert trends.previous_month(date.max) == ((date(9999, 12, 1), date.max), date(9999, 11, 1))
    assert trends.comparison_span((date(2025, 5, 1), date(2025, 5, 31)), date(9999, 12, 20)) == (
        date(9999, 12, 20), date.max)
    late = trends.Comparison(date.max, date.max, [queries.DaySummary(date.max, 1, 0, 1, 1, at)], date(2025, 5, 1))
    assert late.aligned() == [(date(2025, 5, 1), late.days[0])]


def test_audience_matches_and_ranks_members() -> None:
    from viewer.audience import Audience, by_orders, matches

    a = queries.Member("a", 2, 1, date(2025, 5, 31))
    b = queries.Member("b", 0, 3, None)  # no last order date stored: never "active"
    c = queries.Member("c", 5, 0, date(2025, 5, 1))
    assert [m.user_id for m in (a, b, c) if matches(m, 3, None)] == ["a", "b", "c"]
    assert [m.user_id for m in (a, b, c) if matches(m, 4, None)] == ["c"]
    since = Audience(active_within_days=7).active_since(date(2025, 5, 31))
    assert since == date(2025, 5, 25) and [m.user_id for m in (a, b, c) if matches(m, None, since)] == ["a"]
    assert Audience(active_within_days=3660).active_since(date(1, 1, 5)) == date.min  # cut at the calendar's start
    assert [m.user_id for m in by_orders([c, b, a], 3)] == ["c", "a", "b"]  # a and b: 3 orders each, by id
    assert Audience().filtered is False and Audience(sort="orders").query() == {"sort": "orders"}


# -- the weekday x hour cells (viewer/heatmap.py) ------------------------------------------------

_HOUR_ROWS = st.lists(
    st.builds(
        HourCount,
        st.dates(min_value=date(2024, 1, 1), max_value=date(2026, 12, 31)),
        st.integers(0, 23), st.integers(0, 10_000), st.integers(0, 10_000),
    ),
    max_size=60,
)


@given(rows=_HOUR_ROWS)
def test_weekday_hours_sum_every_row_into_its_cell(rows) -> None:
    grid = weekday_hours(rows)
    assert len(grid.cells) == 7 * 24
    assert sum(c.japanese for c in grid.cells) == sum(r.japanese for r in rows)
    assert sum(c.western for c in grid.cells) == sum(r.western for r in rows)
    assert grid.dates == len({r.date for r in rows})
    for r in rows:
        cell = grid.cell(r.date.isoweekday(), r.hour)
        assert cell.japanese >= r.japanese and cell.western >= r.western
    for c in grid.cells:
        assert (c.japanese_share is None) == (c.total == 0)
        assert c.japanese_share is None or 0 <= c.japanese_share <= 1


def test_weekday_hours_of_two_saturdays_and_a_monday() -> None:
    rows = [HourCount(date(2025, 5, 24), 12, 3, 1), HourCount(date(2025, 5, 31), 12, 1, 3),
            HourCount(date(2025, 5, 26), 19, 0, 2)]
    grid = weekday_hours(rows)
    assert grid.cell(6, 12).to_json() == {"weekday": 6, "hour": 12, "japanese": 4, "western": 4, "total": 8,
                                          "japanese_share": 0.5}
    assert grid.cell(1, 19).japanese_share == 0.0
    assert grid.cell(7, 12).to_json()["japanese_share"] is None
    assert grid.dates_by_weekday == {1: 1, 2: 0, 3: 0, 4: 0, 5: 0, 6: 2, 7: 0}


def test_audience_statements_name_only_the_restrictions_and_bind_every_value() -> None:
    from viewer.audience import Audience, Where, base_where

    cql, params = Where(user_from="ab", user_below="ac", orders_from=3, active_since=date(2025, 5, 25)).cql("COUNT(*)")
    assert cql == ("SELECT COUNT(*) FROM user_segments WHERE segment = ? AND bucket = ? AND user_id >= ? AND "
                   "user_id < ? AND orders >= ? AND last_order_date >= ?")
    assert params == ["ab", "ac", 3, date(2025, 5, 25)]
    cql, params = Where(user_after="x'; DROP", orders_equal=7).cql("user_id", limit=True)
    assert cql.endswith("user_id > ? AND orders = ? LIMIT ?") and params == ["x'; DROP", 7]
    # a cursor past the prefix's range: nothing can match, no query
    assert base_where(Audience(min_orders=1), None, "ab", "ac") is None
    assert base_where(Audience(), None, "ab", "aa") == Where(user_from="ab", user_below="ac")
