"""What the viewer reads from Cassandra, as plain values.

Each function is one query of tables.cql's contract. Year-partitioned tables are read
one partition per year, concurrently; segment members are read from their
SEGMENT_BUCKETS bucket partitions concurrently and merged in user_id order, lazily, so
a page reads about one page of rows and a CSV export streams with bounded memory. Rejected
records are counted from the streaming job's per-date totals, and a few of them are read
from a few of their date's bucket partitions, with LIMIT.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from orderlog.business_day import date_range
from orderlog.events import printable
from orderlog.late_orders import ORDERS, REJECTED, late_orders
from orderlog.layout import REJECTED_BUCKETS, SEGMENT_BUCKETS
from orderlog.menu import SEGMENTS
from orderlog.rejected import payload_preview
from viewer.db import Store
from viewer.heatmap import HourCount
from viewer.params import decode_cursor, encode_cursor

T = TypeVar("T")

# Years searched for the latest aggregated date: from next year back to this one.
MIN_YEAR = 2000
# Rows per bucket partition per round trip when streaming a whole segment.
EXPORT_FETCH_SIZE = 1000
_YEAR_BATCH = 4
# Rejected records a `/api/rejected_events?date=` answer carries (`python -m tools.rejected
# list` shows them all).
REJECTED_SAMPLES = 10
# Bucket partitions of a date read first for rejected samples: offsets spread records
# evenly over the 32 buckets, so these usually hold enough.
REJECTED_BUCKET_WAVE = 8
# The streaming job cuts a reason to 2,000 characters; rows of other origins are cut here.
MAX_REASON_CHARS = 2000
@dataclass(frozen=True)
class DaySummary:
    date: date
    japanese: int
    western: int
    total: int
    users: int | None
    aggregated_at: datetime | None

    @property
    def japanese_share(self) -> float | None:
        counted = self.japanese + self.western
        return self.japanese / counted if counted else None

    def to_json(self) -> dict[str, Any]:
        return {
            "date": self.date.isoformat(),
            "japanese": self.japanese,
            "western": self.western,
            "total": self.total,
            "users": self.users,
            "japanese_share": None if self.japanese_share is None else round(self.japanese_share, 4),
            "aggregated_at": iso(self.aggregated_at),
        }


@dataclass(frozen=True)
class LateOrders:
    """Orders of a date that reached Cassandra after its last successful aggregate run
    (an upper bound: a retried or replayed record counts again; see orderlog.late_orders)."""

    count: int
    last_run_at: datetime | None  # when that run started; None when none is recorded


@dataclass(frozen=True)
class RejectedSample:
    """One rejected record as the viewer shows it: hostile bytes already made printable."""

    topic: str
    partition: int
    offset: int
    kafka_timestamp: datetime | None
    reason: str  # printable
    length: int | None  # the payload's full length in bytes; None: no value (a tombstone)
    preview: str  # the stored payload, escaped (orderlog.rejected.payload_preview)
    replayed_at: datetime | None

    @property
    def coordinates(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"

    def to_json(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "kafka_timestamp": iso(self.kafka_timestamp),
            "reason": self.reason,
            "length": self.length,
            "preview": self.preview,
            "replayed": self.replayed_at is not None,
            "replayed_at": iso(self.replayed_at),
        }


@dataclass(frozen=True)
class RejectedOfDate:
    date: date
    count: int  # the streaming job's total for the date (stream_day_counts, summed over query ids)
    samples: list[RejectedSample]


@dataclass(frozen=True)
class SegmentSize:
    segment: str
    users: int
    entered: int
    exited: int

    def to_json(self) -> dict[str, Any]:
        return {"users": self.users, "entered": self.entered, "exited": self.exited}


@dataclass(frozen=True)
class Member:
    user_id: str
    japanese: int
    western: int
    last_order_date: date | None = None  # None in rows written before the job stored it

    @property
    def orders(self) -> int:
        return self.japanese + self.western

    def to_json(self) -> dict[str, Any]:
        return {"user_id": self.user_id, "japanese": self.japanese, "western": self.western,
                "last_order_date": iso(self.last_order_date)}


@dataclass(frozen=True)
class MemberPage:
    members: list[Member]
    has_more: bool
    next_after: str | None


@dataclass(frozen=True)
class UserDay:
    date: date
    japanese: int
    western: int


@dataclass(frozen=True)
class UserSummary:
    user_id: str
    japanese: int
    western: int
    preference: str
    first_order_date: date | None
    last_order_date: date | None
    updated_at: datetime | None
    history: list[UserDay] = field(default_factory=list)  # latest first


@dataclass(frozen=True)
class LastAggregated:
    date: date | None  # the latest date with a daily summary
    aggregated_at: datetime | None
    segments_as_of: date | None  # the latest date with segment sizes
    run: dict[str, Any] | None  # the newest run of the run ledger


def iso(value: datetime | date | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return value.isoformat()


def _date(value: Any) -> date | None:
    # The driver returns cassandra.util.Date for CQL `date`.
    if value is None:
        return None
    return value if isinstance(value, date) else value.date()


def _utc(value: datetime | None) -> datetime | None:
    # The driver returns CQL timestamps as naive UTC datetimes.
    return None if value is None else value.replace(tzinfo=UTC)


def _int(value: int | None) -> int:
    return int(value or 0)


def _years(first: date, last: date) -> list[int]:
    return list(range(first.year, last.year + 1))


# -- daily order summaries ---------------------------------------------------------


def _summary(row: Any) -> DaySummary:
    return DaySummary(
        date=_date(row.order_date),  # type: ignore[arg-type]
        japanese=_int(row.japanese),
        western=_int(row.western),
        total=_int(row.total),
        users=row.users,
        aggregated_at=_utc(row.aggregated_at),
    )


def summary_of(store: Store, day: date) -> DaySummary | None:
    if store.caching:
        return _summaries_by_date(store, day.year).get(day)
    row = store.execute("summary_of_date", (day.year, day)).one()
    return None if row is None else _summary(row)


def summaries_of(store: Store, days: list[date]) -> dict[date, DaySummary]:
    """The summaries of a few dates (those aggregated), their queries in flight at once."""
    if store.caching:
        found = (_summaries_by_date(store, d.year).get(d) for d in days)
        return {s.date: s for s in found if s is not None}
    futures = [store.execute_async("summary_of_date", (d.year, d)) for d in days]
    found_rows = [f.result().one() for f in futures]
    return {s.date: s for s in (_summary(row) for row in found_rows if row is not None)}


def _summaries_by_date(store: Store, year: int) -> dict[date, DaySummary]:
    # From the year partition the range calls read (once per aggregate run).
    return store.cached(f"summaries_by_date:{year}",
                        lambda: {s.date: s for s in _year_rows(store, "summaries_between", year, _summary)})


def late_orders_of(store: Store, day: date) -> LateOrders:
    if store.caching:
        # The year's stream totals (at most cache_seconds old) and last runs (until the next
        # run): the summary of any date then costs no read, and its late orders stay as fresh
        # as the response cache lets them be.
        total = _stream_totals_of_year(store, day.year).get(day, 0)
        run = _last_runs_of_year(store, day.year).get(day)
    else:
        totals = store.execute_async("stream_totals_of_date", (day.year, day, ORDERS))
        last_run = store.execute_async("last_run_of_date", (day.year, day))
        total = sum(_int(r.records) for r in totals.result())
        run = last_run.result().one()
    seen = None if run is None else _int(run.records_seen)
    return LateOrders(late_orders(total, seen), None if run is None else _utc(run.started_at))


def _stream_totals_of_year(store: Store, year: int) -> dict[date, int]:
    def read() -> dict[date, int]:
        totals: dict[date, int] = {}
        whole_year = (year, date(year, 1, 1), date(year, 12, 31))
        for row in store.execute_async("stream_totals_between", whole_year).result():
            if row.kind == ORDERS:
                day = _date(row.day)
                totals[day] = totals.get(day, 0) + _int(row.records)  # type: ignore[index]
        return totals
    return store.cached_live(f"stream_totals_of_year:{year}", read)


def _last_runs_of_year(store: Store, year: int) -> dict[date, Any]:
    return store.cached(f"last_runs_of_year:{year}", lambda: {
        _date(row.order_date): row for row in store.execute_async("last_runs_of_year", (year,)).result()
    })


# -- rejected records ----------------------------------------------------------------


def rejected_of(store: Store, day: date, samples: int) -> RejectedOfDate:
    """The date's rejected count and up to ``samples`` of its records, by coordinates.

    Never a scan of the date: the records come from REJECTED_BUCKET_WAVE bucket partitions
    read concurrently, each with a LIMIT of its share; only when those hold too few (a date
    with few rejected records) are the other buckets asked, in one query with a LIMIT of
    what is missing. At most two round trips, and about as many rows as are shown (a row
    holds up to 64 KiB)."""
    totals = store.execute_async("stream_totals_of_date", (day.year, day, REJECTED))
    wave = REJECTED_BUCKET_WAVE
    share = -(-samples // wave)
    futures = [store.execute_async("rejected_of_bucket", (day, b, share)) for b in range(wave)]
    found = [_sample(row) for f in futures for row in f.result()]
    if len(found) < samples:
        rest = list(range(wave, REJECTED_BUCKETS))
        found += [_sample(row) for row in store.execute("rejected_of_buckets", (day, rest, samples - len(found)))]
    found.sort(key=lambda r: (r.topic, r.partition, r.offset))
    count = sum(_int(r.records) for r in totals.result())
    return RejectedOfDate(day, count, found[:samples])


def _sample(row: Any) -> RejectedSample:
    return RejectedSample(
        topic=printable(row.kafka_topic or ""),
        partition=row.kafka_partition,
        offset=row.kafka_offset,
        kafka_timestamp=_utc(row.kafka_timestamp),
        reason=printable(row.reason or "", MAX_REASON_CHARS),
        length=row.raw_length,
        preview=payload_preview(row.raw_value, row.raw_length),
        replayed_at=_utc(row.replayed_at),
    )


def rejected_between(store: Store, first: date, last: date) -> dict[date, int]:
    """The rejected count of every date of [first, last] (0 where the job counted none)."""
    futures = [store.execute_async("stream_totals_between", (y, first, last)) for y in _years(first, last)]
    counts = dict.fromkeys(date_range(first, last), 0)
    for f in futures:
        for row in f.result():
            if row.kind == REJECTED:
                day = _date(row.day)
                counts[day] = counts.get(day, 0) + _int(row.records)  # type: ignore[index]
    return counts


def _rows_between(store: Store, statement: str, first: date, last: date, convert: Callable[[Any], T],
                  date_of: Callable[[T], date]) -> list[T]:
    """The rows of a ``(year, first, last)`` statement over [first, last], converted. With
    the cache on, each year partition is read whole once per aggregate run and every range
    is sliced from memory: the range calls then cost no read after the first, whatever
    their dates (a year is at most 366 summaries, 1,098 sizes, 8,784 hourly counts)."""
    if not store.caching:
        futures = [store.execute_async(statement, (y, first, last)) for y in _years(first, last)]
        return [convert(row) for f in futures for row in f.result()]

    return [item for y in _years(first, last) for item in _year_rows(store, statement, y, convert)
            if first <= date_of(item) <= last]


def _year_rows(store: Store, statement: str, year: int, convert: Callable[[Any], T]) -> list[T]:
    """A ``(year, first, last)`` statement's rows of a whole year, converted, read once per
    aggregate run."""
    return store.cached(f"{statement}:{year}", lambda: [
        convert(row) for row in store.execute_async(statement, (year, date(year, 1, 1), date(year, 12, 31))).result()
    ])


def summaries_between(store: Store, first: date, last: date) -> list[DaySummary]:
    """The aggregated dates of [first, last], oldest first."""
    days = _rows_between(store, "summaries_between", first, last, _summary, lambda s: s.date)
    return sorted(days, key=lambda s: s.date)


def hourly_between(store: Store, first: date, last: date) -> list[HourCount]:
    """The hourly counts of the aggregated dates of [first, last] (24 rows a date)."""
    return _rows_between(
        store, "hourly_between", first, last,
        lambda row: HourCount(_date(row.order_date), row.hour, _int(row.japanese), _int(row.western)),  # type: ignore[arg-type]
        lambda h: h.date,
    )


def _latest_by_year(store: Store, statement: str, tz: ZoneInfo) -> Any | None:
    """The first row of the newest year partition that has one."""
    this_year = datetime.now(tz).year
    years = list(range(this_year + 1, MIN_YEAR - 1, -1))
    for start in range(0, len(years), _YEAR_BATCH):
        batch = years[start : start + _YEAR_BATCH]
        futures = [store.execute_async(statement, (y,)) for y in batch]
        for f in futures:
            row = f.result().one()
            if row is not None:
                return row
    return None


def last_aggregated(store: Store, tz: ZoneInfo) -> LastAggregated:
    def compute() -> LastAggregated:
        summary = _latest_by_year(store, "latest_summary_of_year", tz)
        sizes = _latest_by_year(store, "latest_sizes_of_year", tz)
        run = _latest_by_year(store, "latest_run_of_year", tz)
        return LastAggregated(
            date=None if summary is None else _date(summary.order_date),
            aggregated_at=None if summary is None else _utc(summary.aggregated_at),
            segments_as_of=None if sizes is None else _date(sizes.as_of),
            run=None if run is None else _run(run),
        )

    return store.cached("last_aggregated", compute)


def _run(row: Any) -> dict[str, Any]:
    return {
        "order_date": _date(row.order_date),
        "run_id": str(row.run_id),
        "status": row.status,
        "trigger": row.trigger,  # why it ran: requested, nightly, late-orders, recovery
        "orders_read": row.orders_read,
        "users_touched": row.users_touched,
        "started_at": _utc(row.started_at),
        "finished_at": _utc(row.finished_at),
        "duration_ms": row.duration_ms,
        "error": row.error,
    }


# -- segment sizes -----------------------------------------------------------------


def _size(row: Any) -> SegmentSize:
    return SegmentSize(row.segment, _int(row.users), _int(row.entered), _int(row.exited))


def sizes_of(store: Store, day: date) -> dict[str, SegmentSize]:
    """segment -> size as of day, every segment present (zeros for a missing row); {}
    when day has no sizes at all."""
    rows = list(store.execute("sizes_of_date", (day.year, day)))
    if not rows:
        return {}
    found = {row.segment: _size(row) for row in rows}
    return {s: found.get(s, SegmentSize(s, 0, 0, 0)) for s in SEGMENTS}


def sizes_between(store: Store, first: date, last: date) -> dict[date, dict[str, SegmentSize]]:
    """date -> segment -> size for the dates of [first, last] that have sizes, oldest first."""
    by_date: dict[date, dict[str, SegmentSize]] = {}
    rows = _rows_between(store, "sizes_between", first, last, lambda row: (_date(row.as_of), _size(row)),
                         lambda dated: dated[0])  # type: ignore[arg-type,return-value]
    for day, size in rows:
        by_date.setdefault(day, {})[size.segment] = size
    return {
        d: {s: sizes.get(s, SegmentSize(s, 0, 0, 0)) for s in SEGMENTS}
        for d, sizes in sorted(by_date.items())
    }


# -- segment members ---------------------------------------------------------------


def prefix_upper(prefix: str) -> str | None:
    """The smallest string greater than every string that starts with prefix (None when
    there is none). Cassandra orders text by UTF-8 bytes, which is code point order,
    the same order as Python's str."""
    chars = list(prefix)
    while chars:
        last = ord(chars.pop())
        nxt = last + 1
        if 0xD800 <= nxt <= 0xDFFF:  # surrogates are not valid in UTF-8 text
            nxt = 0xE000
        if nxt <= 0x10FFFF:
            return "".join(chars) + chr(nxt)
    return None


def _bounds(prefix: str | None, after: str | None) -> tuple[str, tuple[Any, ...]] | None:
    """The statement and its bounds for members after the cursor and/or with the prefix;
    None when no user id can match."""
    upper = prefix_upper(prefix) if prefix else None
    if prefix and (after is None or after < prefix):
        return ("members_ge_lt", (prefix, upper)) if upper is not None else ("members_ge", (prefix,))
    if after is not None:
        if upper is not None and after >= upper:
            return None
        return ("members_gt_lt", (after, upper)) if upper is not None else ("members_gt", (after,))
    return ("members", ())


def _start_members(
    store: Store, segment: str, prefix: str | None, after: str | None, fetch_size: int
) -> list[Any]:
    """Every bucket's first page requested at once (futures)."""
    bounds = _bounds(prefix, after)
    if bounds is None:
        return []
    statement, extra = bounds
    return [
        store.execute_async(statement, (segment, bucket, *extra), fetch_size=fetch_size)
        for bucket in range(SEGMENT_BUCKETS)
    ]


def merged(futures: list[Any]) -> Iterator[Member]:
    # Later pages of a bucket are fetched only if the merge needs them (the driver
    # pages a ResultSet as it is iterated).
    streams = [
        (Member(r.user_id, _int(r.japanese), _int(r.western), _date(r.last_order_date)) for r in f.result())
        for f in futures
    ]
    return heapq.merge(*streams, key=lambda m: m.user_id)


def bucket_fetch_size(wanted: int) -> int:
    """Rows to ask of each bucket for `wanted` merged rows. crc32 spreads user ids evenly,
    so a bucket holds about wanted/SEGMENT_BUCKETS of them; the expected share plus four
    standard deviations almost never needs a second round trip, and a bucket that holds
    more is simply paged further by the driver. Reading wanted rows from every bucket
    would decode SEGMENT_BUCKETS times too many."""
    share = wanted / SEGMENT_BUCKETS
    return min(5000, int(share + 4 * math.sqrt(share)) + 8)


def _page(merged: Iterator[Member], skip: int, per_page: int) -> MemberPage:
    rows = list(itertools.islice(merged, skip, skip + per_page + 1))
    has_more = len(rows) > per_page  # the one extra row tells whether a next page exists
    rows = rows[:per_page]
    return MemberPage(rows, has_more, encode_cursor(rows[-1].user_id) if has_more else None)


def iter_members(
    store: Store, segment: str, prefix: str | None = None, after_id: str | None = None
) -> Iterator[Member]:
    """Every member of a segment (with the prefix, after the id), in user_id order, streamed."""
    yield from merged(_start_members(store, segment, prefix, after_id, EXPORT_FETCH_SIZE))


def members_page(
    store: Store,
    segment: str,
    *,
    per_page: int,
    page: int = 1,
    prefix: str | None = None,
    after: str | None = None,
) -> MemberPage:
    """One page of a segment's members in user_id order: page `page` counted from the
    start (or from the cursor `after`, an opaque value of a previous page's next_after)."""
    after_id = decode_cursor(after) if after else None
    skip = (page - 1) * per_page
    fetch_size = bucket_fetch_size(skip + per_page + 1)

    def compute() -> MemberPage:
        return _page(merged(_start_members(store, segment, prefix, after_id, fetch_size)), skip, per_page)

    if page == 1 and not prefix and not after:
        # The first page is what most visits ask for, and it only changes when the nightly
        # aggregate runs: remember it briefly instead of 16 bucket reads per request.
        return store.cached(f"first_page:{segment}:{per_page}", compute)
    return compute()


def first_pages(store: Store, segments: tuple[str, ...], per_page: int) -> dict[str, MemberPage]:
    """The first page of several segments, all their bucket queries in flight at once."""
    fetch_size = bucket_fetch_size(per_page + 1)

    def compute() -> dict[str, MemberPage]:
        started = {s: _start_members(store, s, None, None, fetch_size) for s in segments}
        return {s: _page(merged(futures), 0, per_page) for s, futures in started.items()}

    return store.cached(f"first_pages:{','.join(segments)}:{per_page}", compute)


# -- users ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FoundUser:
    user_id: str
    segment: str
    japanese: int
    western: int

    def to_json(self) -> dict[str, Any]:
        return {"user_id": self.user_id, "segment": self.segment, "japanese": self.japanese, "western": self.western}


def _tagged(segment: str, members: Iterator[Member]) -> Iterator[tuple[str, str, Member]]:
    return ((m.user_id, segment, m) for m in members)


def users_by_prefix(store: Store, prefix: str, limit: int) -> tuple[list[FoundUser], bool]:
    """The first ``limit`` users (user_id order) whose id starts with prefix, and whether
    more do. Every user with aggregated orders is a member of exactly one segment, and
    user_segments is clustered by user_id: so this is the segment lists' prefix search
    over all three segments (3 x SEGMENT_BUCKETS range slices in flight at once, merged
    lazily), reading about ``limit`` rows whatever the number of users. No extra table."""
    fetch_size = bucket_fetch_size(limit + 1)
    streams = [_tagged(s, merged(_start_members(store, s, prefix, None, fetch_size))) for s in SEGMENTS]
    found: list[FoundUser] = []
    last_id = None
    for user_id, segment, m in heapq.merge(*streams):
        if user_id == last_id:  # a run interrupted mid-way may leave a user in two segments for a while
            continue
        last_id = user_id
        if len(found) == limit:
            return found, True
        found.append(FoundUser(user_id, segment, m.japanese, m.western))
    return found, False



def user_summary(store: Store, user_id: str) -> UserSummary | None:
    row = store.execute("preference_of_user", (user_id,)).one()
    if row is None:
        return None
    first, last = _date(row.first_order_date), _date(row.last_order_date)
    history: list[UserDay] = []
    if first is not None and last is not None and first <= last:
        futures = [store.execute_async("history_of_user_year", (user_id, y)) for y in _years(first, last)]
        history = [
            UserDay(_date(r.order_date), _int(r.japanese), _int(r.western))  # type: ignore[arg-type]
            for f in futures
            for r in f.result()
        ]
        history.sort(key=lambda d: d.date, reverse=True)
    return UserSummary(
        user_id=row.user_id,
        japanese=_int(row.japanese),
        western=_int(row.western),
        preference=row.preference,
        first_order_date=first,
        last_order_date=last,
        updated_at=_utc(row.updated_at),
        history=history,
    )
