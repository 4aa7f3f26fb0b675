"""Audience filters of a segment list (a coupon campaign's list): at least N orders, a
last order within N days, sorted by orders. Cassandra cannot filter or sort user_segments
by these (its key is (segment, bucket), user_id), so the list is streamed in user_id
order (the 16-bucket merge of viewer/queries.py) and filtered here, with bounds:

- a page reads at most MAX_SCAN members; when it stops there before the page is full it
  says so, and its ``next_after`` cursor continues from the last member it read;
- the filtered count reads at most MAX_SCAN members: exact when the list ends within
  them, else "at least N of the first MAX_SCAN";
- sort=orders ranks the whole list with a heap of the wanted rows: a list longer than
  MAX_SCAN is refused with a message saying to narrow it (prefix=) or to use the
  id-ordered CSV export, which streams any size.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

from orderlog.business_day import shift_days
from viewer import queries
from viewer.db import Store
from viewer.params import BadParameter, decode_cursor, encode_cursor
from viewer.queries import Member

MAX_SCAN = 100_000


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
    if min_orders is not None and member.orders < min_orders:
        return False
    # A row written before the job stored last order dates has none: not known to be active.
    return active_since is None or (member.last_order_date is not None and member.last_order_date >= active_since)


def by_orders(members: Iterable[Member], wanted: int) -> list[Member]:
    """The ``wanted`` members with the most orders (ties in user_id order), in that order."""
    return heapq.nsmallest(wanted, members, key=lambda m: (-m.orders, m.user_id))


@dataclass(frozen=True)
class AudiencePage:
    members: list[Member]
    has_more: bool
    next_after: str | None
    scanned: int  # members of the list read for this page
    scan_limit_reached: bool


@dataclass(frozen=True)
class AudienceCount:
    count: int  # members that match among the ones read
    complete: bool  # False: the list is longer than MAX_SCAN and count is a lower bound


class Scan:
    """At most MAX_SCAN members of a list, in user_id order, counting them; ``cut`` tells
    that the list goes on after them."""

    def __init__(self, members: Iterator[Member]):
        self._members = members
        self.read = 0
        self.last: Member | None = None
        self.cut = False

    def __iter__(self) -> Iterator[Member]:
        for m in self._members:
            if self.read == MAX_SCAN:
                self.cut = True
                return
            self.read += 1
            self.last = m
            yield m


def too_long_to_sort() -> BadParameter:
    return BadParameter(
        "sort",
        f"sorting by orders ranks the whole list and reads at most {MAX_SCAN:,} members; this list has more: "
        "narrow it with 'prefix', or download the CSV in user_id order",
    )


def page(
    store: Store, segment: str, audience: Audience, as_of: date | None, *,
    per_page: int, page: int, prefix: str | None, after: str | None,
) -> AudiencePage:
    since = audience.active_since(as_of)
    skip = (page - 1) * per_page
    scan = Scan(queries.iter_members(store, segment, prefix, decode_cursor(after) if after else None))
    wanted = (m for m in scan if matches(m, audience.min_orders, since))
    if audience.sort == "orders":
        ranked = by_orders(wanted, skip + per_page + 1)
        if scan.cut:
            raise too_long_to_sort()
        rows = ranked[skip:]
        return AudiencePage(rows[:per_page], len(rows) > per_page, None, scan.read, False)
    rows = list(itertools.islice(wanted, skip, skip + per_page + 1))
    if len(rows) > per_page:
        return AudiencePage(rows[:per_page], True, encode_cursor(rows[per_page - 1].user_id), scan.read, False)
    if scan.cut and scan.last is not None:
        # Stopped at the bound: the next page continues after the last member read.
        return AudiencePage(rows, True, encode_cursor(scan.last.user_id), scan.read, True)
    return AudiencePage(rows, False, None, scan.read, False)


def count(store: Store, segment: str, audience: Audience, as_of: date | None, prefix: str | None) -> AudienceCount:
    """How many members of the list match (kept until the next aggregate run)."""
    since = audience.active_since(as_of)

    def compute() -> AudienceCount:
        scan = Scan(queries.iter_members(store, segment, prefix))
        found = sum(1 for m in scan if matches(m, audience.min_orders, since))
        return AudienceCount(found, not scan.cut)

    key = f"audience_count:{segment}:{prefix!r}:{audience.min_orders}:{since}"
    return store.cached(key, compute)


def export(store: Store, segment: str, audience: Audience, as_of: date | None, prefix: str | None) -> Iterator[Member]:
    """The CSV's members: the whole filtered list in user_id order, streamed (any size);
    sorted by orders, the bounded ranking of ``page``."""
    since = audience.active_since(as_of)
    if audience.sort == "orders":
        scan = Scan(queries.iter_members(store, segment, prefix))
        ranked = by_orders((m for m in scan if matches(m, audience.min_orders, since)), MAX_SCAN)
        if scan.cut:
            raise too_long_to_sort()
        return iter(ranked)
    return (m for m in queries.iter_members(store, segment, prefix) if matches(m, audience.min_orders, since))
