"""Audience filters of a segment list (a coupon campaign's list): at least N orders, a
last order within N days, sorted by orders. Exact and bounded for a segment of any size.

user_segments has a Storage-Attached Index on ``orders`` and one on ``last_order_date``
(cassandra/tables.cql): within one bucket partition, Cassandra answers ``orders >= ?``,
``orders < ?``, ``orders = ?`` and ``last_order_date >= ?`` together with the user_id
range of a prefix or cursor, in user_id order, without ALLOW FILTERING. So:

- the filtered **count** is one ``COUNT(*)`` with the filters per bucket partition, all
  SEGMENT_BUCKETS in flight at once, kept until the next aggregate run (``store.cached``);
  a selective filter is cheap, one matching most of the list costs about a plain count;
- a filtered **page in user_id order** reads only matching rows, merged over the buckets as
  an unfiltered page is (about skip + per_page + 1 rows; ``page=`` skips at most
  MAX_PAGE_OFFSET, the ``after`` cursor goes anywhere);
- **sort=orders** (most orders first, ties by user_id) walks descending bands of orders
  values ``[lo, hi)``: it finds the largest value (a few LIMIT 1 rounds), then splits off
  the top quarter of the range not counted yet and counts it (the top of a list is sparse:
  a small count), splitting a counted band of more than BAND_ROWS members in halves (the
  lower half's count is the band's minus the upper's), until a band holds one orders value
  or at most BAND_ROWS members. A band wholly
  before the wanted rank is skipped by its count; a band of several values is read whole
  (at most BAND_ROWS rows) and sorted here; a band of one value is streamed in user_id
  order. Every count is cached per run, so page 1 costs a few small counts once and one
  band read. A page reads at most MAX_PAGE_OFFSET + per_page + 1 + BAND_ROWS rows; the CSV
  streams band after band (any size, at most BAND_ROWS members in memory).

``orders`` is japanese + western, written by the aggregate job with every row (older rows
are filled in by ``make schema``: orderlog/orders_backfill.py). A member without a last
order date (a row written before the job stored it) is not known to be active: it does
not match ``active_within_days`` (SAI does not index a null either).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

from orderlog.business_day import shift_days
from orderlog.layout import SEGMENT_BUCKETS
from viewer import queries
from viewer.db import Store
from viewer.params import decode_cursor, encode_cursor
from viewer.queries import Member

# A band of several orders values is read whole and sorted in memory: at most this many members.
BAND_ROWS = 5000
# Rows per bucket partition per round trip when streaming (the CSV, a band of one value).
STREAM_FETCH_SIZE = queries.EXPORT_FETCH_SIZE
_MEMBER_COLUMNS = "user_id, japanese, western, last_order_date"
MAX_ORDERS = 2**63 - 1  # orders is a bigint


@dataclass(frozen=True)
class Audience:
    min_orders: int | None = None
    active_within_days: int | None = None
    sort: str = "user_id"

    @property
    def filtered(self) -> bool:
        return self.min_orders is not None or self.active_within_days is not None or self.sort != "user_id"

    def active_since(self, as_of: date | None) -> date | None:
        """The earliest last order date that counts as active: N days up to as_of, both ends included."""
        if self.active_within_days is None or as_of is None:
            return None
        return shift_days(as_of, -(self.active_within_days - 1))

    def query(self) -> dict[str, Any]:
        """The parameters that select this audience (for links and the CSV)."""
        args: dict[str, Any] = {}
        if self.min_orders is not None:
            args["min_orders"] = self.min_orders
        if self.active_within_days is not None:
            args["active_within_days"] = self.active_within_days
        if self.sort != "user_id":
            args["sort"] = self.sort
        return args


def matches(member: Member, min_orders: int | None, active_since: date | None) -> bool:
    """The filters in Python (the reference the tests hold the queries to)."""
    if min_orders is not None and member.orders < min_orders:
        return False
    return active_since is None or (member.last_order_date is not None and member.last_order_date >= active_since)


def rank_key(member: Member) -> tuple[int, str]:
    return (-member.orders, member.user_id)


def by_orders(members: Iterable[Member], wanted: int) -> list[Member]:
    """The ``wanted`` members with the most orders (ties in user_id order), in that order."""
    return heapq.nsmallest(wanted, members, key=rank_key)


@dataclass(frozen=True)
class Where:
    """The restrictions of one query of a bucket partition beyond (segment, bucket): each is
    bound as a parameter; the CQL text only names which are present."""

    user_after: str | None = None  # user_id > ?
    user_from: str | None = None  # user_id >= ?
    user_below: str | None = None  # user_id < ?
    orders_from: int | None = None  # orders >= ?
    orders_below: int | None = None  # orders < ?
    orders_equal: int | None = None  # orders = ?
    active_since: date | None = None  # last_order_date >= ?

    def cql(self, select: str, *, limit: bool = False) -> tuple[str, list[Any]]:
        parts, params = ["segment = ?", "bucket = ?"], []
        for column, op, value in (
            ("user_id", ">", self.user_after), ("user_id", ">=", self.user_from), ("user_id", "<", self.user_below),
            ("orders", ">=", self.orders_from), ("orders", "<", self.orders_below), ("orders", "=", self.orders_equal),
            ("last_order_date", ">=", self.active_since),
        ):
            if value is not None:
                parts.append(f"{column} {op} ?")
                params.append(value)
        text = f"SELECT {select} FROM user_segments WHERE {' AND '.join(parts)}" + (" LIMIT ?" if limit else "")
        return text, params


def base_where(audience: Audience, as_of: date | None, prefix: str | None, after: str | None) -> Where | None:
    """The filters and the user_id range of a prefix and/or cursor; None when no id can match."""
    upper = queries.prefix_upper(prefix) if prefix else None
    where = Where(orders_from=audience.min_orders, active_since=audience.active_since(as_of), user_below=upper)
    if prefix and (after is None or after < prefix):
        return replace(where, user_from=prefix)
    if after is not None:
        if upper is not None and after >= upper:
            return None
        return replace(where, user_after=after)
    return where


def _stream(store: Store, segment: str, where: Where, fetch_size: int) -> Iterator[Member]:
    """The matching members of every bucket, merged in user_id order (pages fetched as needed)."""
    cql, params = where.cql(_MEMBER_COLUMNS)
    futures = [store.execute_cql_async(cql, [segment, b, *params], fetch_size) for b in range(SEGMENT_BUCKETS)]
    return queries.merged(futures)


def _count(store: Store, segment: str, where: Where) -> int:
    """COUNT(*) of the matching members over every bucket, all in flight at once; cached per run."""

    def compute() -> int:
        cql, params = where.cql("COUNT(*)")
        futures = [store.execute_cql_async(cql, [segment, b, *params]) for b in range(SEGMENT_BUCKETS)]
        return sum(f.result().one()[0] for f in futures)

    return store.cached(f"audience_count:{segment}:{where!r}", compute)


def _largest_orders(store: Store, segment: str, where: Where) -> int | None:
    """The largest orders value among the matching members (None: none match). A probe asks
    every bucket for its first member (user_id order) with orders >= a bound: it says
    whether any member reaches the bound, and its answers are values that exist. Galloping
    then halving the bound takes O(log largest) probes, whatever the order of the user ids
    against their orders. Cached per run."""

    def probe(bound: int | None) -> int | None:
        cql, params = replace(where, orders_from=bound).cql("japanese, western", limit=True)
        futures = [store.execute_cql_async(cql, [segment, b, *params, 1]) for b in range(SEGMENT_BUCKETS)]
        found = [(r.japanese or 0) + (r.western or 0) for f in futures for r in f.result()]
        return max(found) if found else None

    def compute() -> int | None:
        largest = probe(where.orders_from)
        if largest is None:
            return None
        step = 1
        while largest + step <= MAX_ORDERS:  # gallop: an empty probe bounds the largest value
            above = probe(largest + step)
            if above is None:
                break
            largest, step = above, step * 2
        lo, hi = largest, min(largest + step, MAX_ORDERS + 1)  # a value exists at lo, none at hi or above
        while hi - lo > 1:
            mid = (lo + hi) // 2
            above = probe(mid)
            if above is None:
                hi = mid
            else:
                lo = above
        return lo

    return store.cached(f"audience_largest:{segment}:{where!r}", compute)


def ranked(store: Store, segment: str, where: Where, *, skip: int = 0, fetch_size: int = STREAM_FETCH_SIZE
           ) -> Iterator[Member]:
    """The matching members by orders (most first, ties in user_id order), from rank
    ``skip`` on, streamed band by band (see the module's docstring)."""
    where = replace(where, orders_from=max(where.orders_from or 0, 0))  # orders are counts: never below 0
    largest = _largest_orders(store, segment, where)
    if largest is None:
        return
    # (lo, hi, members): orders in [lo, hi); members None while not counted. Only the upper
    # part of a split is counted, so the whole list is never counted to rank its top.
    bands: list[tuple[int, int, int | None]] = [(where.orders_from, largest + 1, None)]
    while bands:
        lo, hi, members = bands.pop()
        if members is None and hi - lo == 1 and skip > 0:
            members = _count(store, segment, replace(where, orders_from=None, orders_equal=lo))
        if members == 0:
            continue
        if members is not None and skip >= members:  # wholly before the wanted rank: skipped by its count
            skip -= members
            continue
        if hi - lo == 1:
            one_value = replace(where, orders_from=None, orders_equal=lo)
            yield from itertools.islice(_stream(store, segment, one_value, fetch_size), skip, None)
        elif members is not None and members <= BAND_ROWS:
            band = replace(where, orders_from=lo, orders_below=_below(hi))
            yield from sorted(_stream(store, segment, band, queries.bucket_fetch_size(members)), key=rank_key)[skip:]
        else:
            # Not counted yet: split off its top quarter (the top of a list is the sparse
            # part, so that count is small); counted and too big: split in halves.
            mid = hi - max(1, (hi - lo) // 4) if members is None else lo + (hi - lo) // 2
            upper = _count(store, segment, replace(where, orders_from=mid, orders_below=_below(hi)))
            bands += [(lo, mid, None if members is None else members - upper), (mid, hi, upper)]  # upper first
            continue
        skip = 0


def _below(hi: int) -> int | None:
    """The bound ``orders < hi``; none above the largest bigint (a band's hi may be 2**63)."""
    return hi if hi < 2**63 else None


@dataclass(frozen=True)
class AudiencePage:
    members: list[Member]
    has_more: bool
    next_after: str | None


def page(
    store: Store, segment: str, audience: Audience, as_of: date | None, *,
    per_page: int, page: int, prefix: str | None, after: str | None,
) -> AudiencePage:
    skip = (page - 1) * per_page
    where = base_where(audience, as_of, prefix, decode_cursor(after) if after else None)
    if where is None:
        return AudiencePage([], False, None)
    if audience.sort == "orders":
        rows = list(itertools.islice(
            ranked(store, segment, where, skip=skip, fetch_size=queries.bucket_fetch_size(skip + per_page + 1)),
            per_page + 1))
        return AudiencePage(rows[:per_page], len(rows) > per_page, None)
    stream = _stream(store, segment, where, queries.bucket_fetch_size(skip + per_page + 1))
    rows = list(itertools.islice(stream, skip, skip + per_page + 1))
    has_more = len(rows) > per_page
    return AudiencePage(rows[:per_page], has_more, encode_cursor(rows[per_page - 1].user_id) if has_more
                        else None)


def count(store: Store, segment: str, audience: Audience, as_of: date | None, prefix: str | None) -> int:
    """How many members of the list match, exactly (kept until the next aggregate run)."""
    where = base_where(audience, as_of, prefix, None)
    return 0 if where is None else _count(store, segment, where)


def export(store: Store, segment: str, audience: Audience, as_of: date | None, prefix: str | None) -> Iterator[Member]:
    """The CSV's members: the whole filtered list, in user_id order or by orders, streamed (any size)."""
    where = base_where(audience, as_of, prefix, None)
    if where is None:
        return iter(())
    if audience.sort == "orders":
        return ranked(store, segment, where)
    return _stream(store, segment, where, STREAM_FETCH_SIZE)
