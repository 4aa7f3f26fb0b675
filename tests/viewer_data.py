"""Writes test data into the aggregate job's output tables, exactly in the shape
cassandra/tables.cql defines, with prepared INSERTs (the viewer's tests do not depend
on the aggregate job, which is built in parallel)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime

from cassandra.concurrent import execute_concurrent_with_args
from cassandra.util import uuid_from_time

from orderlog.business_day import business_date
from orderlog.layout import SEGMENT_BUCKETS, bucket_of, rejected_bucket_of
from orderlog.menu import preference
from orderlog.rejected import kept_bytes

AGGREGATED_AT = datetime(2025, 6, 1, 2, 0, tzinfo=UTC)


@dataclass(frozen=True)
class RejectedRecord:
    """A Kafka record the streaming job rejected."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    reason: str
    kafka_time: datetime
    topic: str = "order-logs"
    replayed_at: datetime | None = None


class ViewerData:
    def __init__(self, session: object):
        self.session = session
        p = session.prepare  # type: ignore[attr-defined]
        self.summary = p(
            "INSERT INTO daily_order_summaries (year, order_date, japanese, western, total, users, "
            "aggregated_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
        )
        self.size = p(
            "INSERT INTO segment_sizes (year, as_of, segment, users, entered, exited) VALUES (?, ?, ?, ?, ?, ?)"
        )
        self.member = p(
            "INSERT INTO user_segments (segment, bucket, user_id, japanese, western, orders, last_order_date) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)"
        )
        self.pref = p(
            "INSERT INTO user_preferences (user_id, japanese, western, preference, first_order_date, "
            "last_order_date, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
        )
        self.history = p(
            "INSERT INTO user_daily_history (user_id, year, order_date, japanese, western) VALUES (?, ?, ?, ?, ?)"
        )
        self.stream_count = p(
            "INSERT INTO stream_day_counts (year, day, kind, query_id, records, records_before, batch_id, "
            "last_arrival_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        )
        self.aggregated = p(
            "INSERT INTO aggregated_dates (year, order_date, run_id, started_at, finished_at, records_seen) "
            "VALUES (?, ?, ?, ?, ?, ?)"
        )
        # As the streaming job writes a rejected record (jobs.stream_transforms.to_rejected_events
        # and the TTL write option): bucket by offset, 64 KiB kept, lengths, digest.
        self.rejected_row = p(
            "INSERT INTO rejected_events (reject_date, bucket, kafka_topic, kafka_partition, kafka_offset, kafka_key, "
            "kafka_key_length, kafka_timestamp, raw_value, raw_length, raw_sha256, reason, rejected_at, replayed_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?"
        )
        self.hour = p(
            "INSERT INTO hourly_order_counts (year, order_date, hour, japanese, western) VALUES (?, ?, ?, ?, ?)"
        )
        self.run = p(
            "INSERT INTO aggregate_runs (year, order_date, run_id, status, trigger, orders_read, users_touched, "
            "started_at, finished_at, duration_ms, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )

    def _many(self, statement: object, rows: Iterable[tuple]) -> None:
        results = execute_concurrent_with_args(self.session, statement, list(rows), concurrency=64)
        failed = [r for ok, r in results if not ok]
        if failed:
            raise failed[0]

    def summaries(self, days: Iterable[tuple[date, int, int, int]]) -> None:
        """(date, japanese, western, users) per day."""
        self._many(
            self.summary,
            [(d.year, d, j, w, j + w, u, AGGREGATED_AT) for d, j, w, u in days],
        )

    def hourly(self, day: date, hours: dict[int, tuple[int, int]]) -> None:
        """hour -> (japanese, western) of a date; as the aggregate writes them, all 24 hours."""
        self._many(self.hour, [(day.year, day, h, *hours.get(h, (0, 0))) for h in range(24)])

    def sizes(self, as_of: date, sizes: dict[str, tuple[int, int, int]]) -> None:
        """segment -> (users, entered, exited) as of a date."""
        self._many(self.size, [(as_of.year, as_of, s, *v) for s, v in sizes.items()])

    def members(self, members: Iterable[tuple]) -> None:
        """(user_id, japanese, western[, last_order_date]): each user into the segment of its counts."""
        self._many(
            self.member,
            [(preference(m[1], m[2]), bucket_of(m[0], SEGMENT_BUCKETS), *m[:3], m[1] + m[2],
              m[3] if len(m) > 3 else None)
             for m in members],
        )

    def user(self, user_id: str, history: list[tuple[date, int, int]]) -> None:
        """A user's preference row and daily history, consistent with each other."""
        japanese = sum(j for _, j, _ in history)
        western = sum(w for _, _, w in history)
        dates = [d for d, _, _ in history]
        self._many(
            self.pref,
            [(user_id, japanese, western, preference(japanese, western), min(dates), max(dates),
              AGGREGATED_AT)],
        )
        self._many(self.history, [(user_id, d.year, d, j, w) for d, j, w in history])

    def stream_counts(self, day: date, kind: str, by_query: dict[str, int]) -> None:
        """What the streaming job wrote for day: records per streaming query."""
        self._many(
            self.stream_count,
            [(day.year, day, kind, q, n, 0, 0, AGGREGATED_AT) for q, n in by_query.items()],
        )

    def rejected(self, records: Iterable[RejectedRecord], ttl_seconds: int = 30 * 86_400) -> None:
        """rejected_events rows of records, dated by their Kafka time in Tokyo."""
        rows = []
        for r in records:
            kept = kept_bytes(r.key, r.value)
            rows.append((business_date(r.kafka_time, "Asia/Tokyo"), rejected_bucket_of(r.offset), r.topic,
                         r.partition, r.offset, kept.key, kept.key_length, r.kafka_time, kept.value,
                         kept.value_length, kept.value_sha256, r.reason, r.kafka_time, r.replayed_at, ttl_seconds))
        self._many(self.rejected_row, rows)

    def aggregated_date(self, order_date: date, records_seen: int) -> None:
        """The last successful run of order_date (started like aggregate_run's) and what it saw."""
        started = datetime(order_date.year, order_date.month, order_date.day, 17, 0, tzinfo=UTC)
        self._many(
            self.aggregated,
            [(order_date.year, order_date, uuid_from_time(started), started, started, records_seen)],
        )

    def aggregate_run(self, order_date: date, status: str = "succeeded", error: str | None = None) -> None:
        started = datetime(order_date.year, order_date.month, order_date.day, 17, 0, tzinfo=UTC)
        run_id: uuid.UUID = uuid_from_time(started)
        self._many(
            self.run,
            [(order_date.year, order_date, run_id, status, "nightly", 10, 5, started, started, 1234, error)],
        )


VIEWER_TABLES = (
    "daily_order_summaries",
    "hourly_order_counts",
    "segment_sizes",
    "user_segments",
    "user_preferences",
    "user_daily_history",
    "aggregate_runs",
    "stream_day_counts",
    "aggregated_dates",
    "rejected_events",
    "stream_progress",
)

XSS_USER = '<script>alert("x")</script>'
LATEST = date(2025, 5, 31)
MISSING_DAY = date(2025, 5, 15)  # a date in the range that was never aggregated
LATE_DAY = date(2025, 5, 30)  # 7 orders arrived after its last run


# The rejected records of LATEST (hostile payloads and reasons among them), counted by two
# streaming queries (4 + 3). 05-30 has a count of 99 but no rows: they expired. The first
# five are in buckets 0-4 (offset % 32), the ones a page of 5 samples reads first.
XSS_PAYLOAD = b'<script>alert("x")</script>'
IMG_REASON = "<img src=x onerror=alert(1)>: unknown field"
LATEST_NOON = datetime(2025, 5, 31, 3, 0, tzinfo=UTC)
REJECTED_RECORDS = [
    RejectedRecord(0, 0, b"u-1", XSS_PAYLOAD, "record is not JSON (Expecting value)", LATEST_NOON),
    RejectedRecord(0, 1, None, b"bell\x07ring", "record is not JSON (Expecting value)", LATEST_NOON),
    RejectedRecord(0, 2, b"u-2", b'{"<img src=x onerror=alert(1)>": 1}', IMG_REASON, LATEST_NOON),
    RejectedRecord(1, 3, b"\xff", b"\xff\xfe{", "record is not UTF-8", LATEST_NOON),
    RejectedRecord(1, 4, b"u-3", None, "record has no value", LATEST_NOON),
    RejectedRecord(2, 40, b"k", b"x" * 70_000, "record is larger than 4096 bytes", LATEST_NOON),
    RejectedRecord(2, 41, b"u-4", b'{"user_id": "u-4", "timestamp": "2025-05-31T12:00:00+09:00", "menu_type": "sushi"}',
                   "menu_type: must be 'japanese' or 'western'", LATEST_NOON,
                   replayed_at=datetime(2025, 6, 1, 1, 0, tzinfo=UTC)),
]


def day_counts(d: date) -> tuple[int, int, int]:
    """(japanese, western, users) of the standard dataset's date d."""
    if d == LATEST:
        return 120, 95, 150  # the seed's example
    return 100 + d.day, 90 + (d.day * 3) % 20, 50 + d.day


# Hourly counts (hour -> (japanese, western)) of three dates, adding up to their day_counts:
# two Saturdays (05-24 and LATEST, 05-31) and a Friday (05-30); lunch at 12, dinner at 19.
HOURLY = {
    date(2025, 5, 24): {12: (24, 2), 19: (100, 100)},
    date(2025, 5, 30): {12: (80, 30), 19: (50, 70)},
    date(2025, 5, 31): {8: (20, 15), 12: (60, 20), 19: (40, 60)},
}


def summary_dates() -> list[date]:
    may = [date(2025, 5, n) for n in range(1, 32) if date(2025, 5, n) != MISSING_DAY]
    return [date(2024, 12, 31), *may]


# The named members (user_id, japanese, western); 250 more "p-0000".."p-0249" (2, 1)
# make the Japanese segment span several pages.
NAMED_MEMBERS = [
    ("alice", 3, 1),
    ("amy", 2, 0),
    ("bob", 5, 2),
    (XSS_USER, 1, 0),
    ("ユーザー1", 4, 1),
    ("carol", 0, 2),
    ("anna", 1, 3),
    ("dave", 1, 1),
]
BULK_MEMBERS = [(f"p-{n:04d}", 2, 1) for n in range(250)]
SIZES = {
    date(2025, 5, 29): {"japanese": (241, 3, 1), "western": (1, 0, 0), "even": (2, 1, 0)},
    date(2025, 5, 30): {"japanese": (246, 5, 0), "western": (1, 0, 0), "even": (2, 0, 0)},
    LATEST: {"japanese": (255, 12, 3), "western": (2, 1, 0), "even": (1, 0, 1)},
}
ALICE_HISTORY = [(date(2024, 12, 31), 1, 0), (date(2025, 5, 30), 1, 0), (date(2025, 5, 31), 1, 1)]


def truncate(session: object) -> None:
    for table in VIEWER_TABLES:
        session.execute(f"TRUNCATE {table}", timeout=60)  # type: ignore[attr-defined]


def load_standard(session: object) -> None:
    """Empty the viewer's tables, then write the standard dataset the tests assert on."""
    truncate(session)
    data = ViewerData(session)
    data.summaries([(d, *day_counts(d)) for d in summary_dates()])
    for day, hours in HOURLY.items():
        data.hourly(day, hours)
    for as_of, sizes in SIZES.items():
        data.sizes(as_of, sizes)
    data.members(NAMED_MEMBERS + BULK_MEMBERS)
    data.user("alice", ALICE_HISTORY)
    data.user(XSS_USER, [(LATEST, 1, 0)])
    data.aggregate_run(date(2025, 5, 30))
    data.aggregate_run(LATEST)
    # 05-30: its run saw 200 records, 207 have arrived since (over two streaming queries).
    data.aggregated_date(LATE_DAY, 200)
    data.stream_counts(LATE_DAY, "orders", {"query-a": 150, "query-b": 57})
    data.stream_counts(LATE_DAY, "rejected", {"query-a": 99})  # not orders
    data.aggregated_date(LATEST, 215)
    data.stream_counts(LATEST, "orders", {"query-a": 215})
    data.stream_counts(LATEST, "rejected", {"query-a": 4, "query-b": 3})
    data.rejected(REJECTED_RECORDS)


def japanese_ids() -> list[str]:
    """Every user id of the Japanese segment of the standard dataset, in user_id order."""
    from orderlog.menu import JAPANESE

    ids = [u for u, j, w in NAMED_MEMBERS + BULK_MEMBERS if preference(j, w) == JAPANESE]
    return sorted(ids)


def viewer_app(settings: object, **config: object) -> object:
    """The viewer app on the test keyspace: no cache (tests change data), no auth
    unless asked (``viewer_user=``, ``viewer_password=``: the settings' names)."""
    from viewer import create_app

    return create_app(
        settings.replace(**{"viewer_cache_seconds": 0, "viewer_user": "", "viewer_password": "", **config})  # type: ignore[attr-defined]
    )
