"""The audience filters of a segment list (viewer/audience.py) against a plain Python
reference: filter every member, then sort. On the real Cassandra and its indexes, with
generated members (ties in orders, unknown last order dates, shared prefixes) and bands
small enough that the ranking by orders splits and skips many of them."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import date, timedelta

import pytest
from cassandra.concurrent import execute_concurrent_with_args
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orderlog.layout import SEGMENT_BUCKETS, bucket_of
from viewer import audience
from viewer.audience import Audience
from viewer.db import Store
from viewer.queries import Member

pytestmark = pytest.mark.integration

AS_OF = date(2025, 5, 31)
SEGMENT = "audience-test"  # a segment of its own: the tests' rows meet no other test's


@pytest.fixture(scope="module")
def store(cassandra: object) -> Iterator[Store]:
    yield Store(cassandra, cache_seconds=0)  # type: ignore[arg-type]
    clear(cassandra)


def write(session: object, members: list[Member]) -> None:
    insert = session.prepare(  # type: ignore[attr-defined]
        "INSERT INTO user_segments (segment, bucket, user_id, japanese, western, orders, last_order_date) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)"
    )
    rows = [(SEGMENT, bucket_of(m.user_id, SEGMENT_BUCKETS), m.user_id, m.japanese, m.western, m.orders,
             m.last_order_date) for m in members]
    execute_concurrent_with_args(session, insert, rows, concurrency=64, raise_on_first_error=True)  # type: ignore[arg-type]


def clear(session: object) -> None:
    delete = session.prepare("DELETE FROM user_segments WHERE segment = ? AND bucket = ?")  # type: ignore[attr-defined]
    execute_concurrent_with_args(session, delete, [(SEGMENT, b) for b in range(SEGMENT_BUCKETS)],  # type: ignore[arg-type]
                                 raise_on_first_error=True)


def reference(members: list[Member], wanted: Audience, prefix: str | None) -> list[Member]:
    since = wanted.active_since(AS_OF)
    found = [m for m in members if audience.matches(m, wanted.min_orders, since)
             and (prefix is None or m.user_id.startswith(prefix))]
    return sorted(found, key=audience.rank_key if wanted.sort == "orders" else lambda m: m.user_id)


def pages(store: Store, wanted: Audience, prefix: str | None, per_page: int) -> list[list[Member]]:
    """Every page of the list: by number sorted by orders, by cursor in user_id order."""
    found, after = [], None
    for number in itertools.count(1):
        by_number = wanted.sort == "orders"
        page = audience.page(store, SEGMENT, wanted, AS_OF, per_page=per_page, page=number if by_number else 1,
                             prefix=prefix, after=after)
        found.append(page.members)
        if not page.has_more:
            return found
        after = page.next_after


member_ids = st.text(alphabet="abc", min_size=1, max_size=4)
members_strategy = st.lists(
    st.tuples(member_ids, st.integers(0, 6), st.integers(0, 6),
              st.one_of(st.none(), st.integers(0, 30).map(lambda n: AS_OF - timedelta(days=n)))),
    max_size=60, unique_by=lambda m: m[0],
).map(lambda rows: [Member(u, j, w, d) for u, j, w, d in rows])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    members=members_strategy,
    wanted=st.builds(Audience, min_orders=st.one_of(st.none(), st.integers(1, 12)),
                     active_within_days=st.one_of(st.none(), st.integers(1, 25)),
                     sort=st.sampled_from(["user_id", "orders"])),
    prefix=st.one_of(st.none(), member_ids.filter(lambda p: len(p) <= 2)),
    per_page=st.integers(1, 7),
    band_rows=st.integers(1, 8),
)
def test_counts_pages_and_csv_equal_filtering_then_sorting_every_member(
    store: Store, cassandra: object, members: list[Member], wanted: Audience, prefix: str | None,
    per_page: int, band_rows: int,
) -> None:
    clear(cassandra)
    write(cassandra, members)
    expected = reference(members, wanted, prefix)
    before, audience.BAND_ROWS = audience.BAND_ROWS, band_rows
    try:
        assert audience.count(store, SEGMENT, wanted, AS_OF, prefix) == len(expected)
        assert list(audience.export(store, SEGMENT, wanted, AS_OF, prefix)) == expected
        got = pages(store, wanted, prefix, per_page)
        assert [m for p in got for m in p] == expected
        assert all(len(p) == per_page for p in got[:-1])
    finally:
        audience.BAND_ROWS = before


def test_a_list_of_many_bands_ranks_exactly_deep_pages_and_the_whole_csv(store: Store, cassandra: object) -> None:
    """3,000 members in bands of at most 50 (the old MAX_SCAN bound refused sort=orders on
    any list longer than its limit): exact counts, page 30 by orders, the whole ranked CSV."""
    members = [Member(f"u{n:05d}", (n * 7919) % 23, (n * 104729) % 17, AS_OF - timedelta(days=n % 40))
               for n in range(3000)]
    clear(cassandra)
    write(cassandra, members)
    before, audience.BAND_ROWS = audience.BAND_ROWS, 50
    try:
        for wanted in (Audience(sort="orders"), Audience(min_orders=20, sort="orders"),
                       Audience(active_within_days=10, sort="orders"), Audience(min_orders=30)):
            expected = reference(members, wanted, None)
            assert audience.count(store, SEGMENT, wanted, AS_OF, None) == len(expected)
            assert list(audience.export(store, SEGMENT, wanted, AS_OF, None)) == expected
            page = audience.page(store, SEGMENT, wanted, AS_OF, per_page=50, page=30, prefix=None, after=None)
            assert page.members == expected[29 * 50 : 30 * 50]
            assert page.has_more == (len(expected) > 30 * 50)
    finally:
        audience.BAND_ROWS = before
        clear(cassandra)


def test_the_largest_orders_is_found_in_few_probes_whatever_the_id_order(store: Store, cassandra: object) -> None:
    """Orders growing with the user id: the first member of each bucket above a bound is the
    next value up, so stepping from answer to answer would take a probe per value; galloping
    then halving takes O(log largest)."""
    members = [Member(f"u{n:05d}", n, 0, AS_OF) for n in range(1, 1001)]
    clear(cassandra)
    write(cassandra, members)
    calls = []
    real = store.execute_cql_async

    def counted(cql: str, params: list, fetch_size: int | None = None) -> object:
        calls.append(cql)
        return real(cql, params, fetch_size)

    store.execute_cql_async = counted  # type: ignore[method-assign]
    try:
        top = audience.page(store, SEGMENT, Audience(sort="orders"), AS_OF, per_page=3, page=1, prefix=None,
                            after=None)
        assert [m.orders for m in top.members] == [1000, 999, 998]
        probes = sum(1 for cql in calls if cql.endswith("LIMIT ?")) // SEGMENT_BUCKETS
        assert probes <= 3 * 1000 .bit_length(), probes  # 30, where stepping took about 1,000
    finally:
        del store.execute_cql_async
        clear(cassandra)
