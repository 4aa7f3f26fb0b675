"""Lists the records the streaming job rejected, and sends them back through the topic
after a rule was fixed.

    python -m tools.rejected list --date 2025-06-01 [--reason TEXT] [--limit N] [--topic T]
    python -m tools.rejected replay --date 2025-06-01 [--reason TEXT] [--dry-run] [--topic T]

``--date`` is the business date of the record's Kafka timestamp (rejected_events' date);
``--reason`` keeps the records whose reason contains TEXT (any case); ``--topic`` is the
topic the records were read from, and the one a replay sends them to (default: the
configured topic). Records come oldest offset first.

A replayed record keeps its key and value and carries the header
``orderlog-replay-of: <topic>:<partition>:<offset>:<timestamp_ms>`` of the original
(orderlog/rejected.py), so the streaming job gives it the original's ids: replaying twice
adds nothing twice. Records whose payload or key was stored truncated, or that have no
value, cannot be replayed and are skipped with a message. ``replayed_at`` is set once
Kafka acknowledged the record (acks=all).

Exit status: 0 done, 1 Kafka or Cassandra unreachable (or a record not acknowledged),
2 a bad flag, date or configuration value.
"""

from __future__ import annotations

import argparse
import heapq
import logging
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, NoReturn

from cassandra import DriverException, InvalidRequest, RequestExecutionException
from cassandra.cluster import NoHostAvailable
from kafka import KafkaProducer
from kafka.errors import KafkaError

from orderlog.business_day import date_argument
from orderlog.cassandra_session import CassandraUnavailable, connect_checked, shutdown
from orderlog.config import Settings, load_or_exit
from orderlog.events import printable
from orderlog.layout import REJECTED_BUCKETS
from orderlog.logs import report
from orderlog.rejected import (
    KEPT_PAYLOAD_BYTES,
    REPLAY_HEADER,
    TOPIC_NAME,
    KafkaCoordinates,
    payload_preview,
    replay_header_value,
)

PROG = "python -m tools.rejected"
# Rows are read page by page from every bucket at once; a row holds up to 64 KiB twice.
FETCH_SIZE = 100
ACK_TIMEOUT_S = 30.0
# Records sent before waiting for their acknowledgements (bounds the memory of a big replay).
REPLAY_CHUNK = 500
SELECT_ROWS = (
    "SELECT kafka_topic, kafka_partition, kafka_offset, bucket, kafka_key, kafka_key_length, kafka_timestamp, "
    "raw_value, raw_length, raw_sha256, reason, rejected_at, replayed_at, TTL(reason) AS ttl "
    "FROM rejected_events WHERE reject_date = ? AND bucket = ? AND kafka_topic = ?"
)
MARK_REPLAYED = (
    "UPDATE rejected_events USING TTL ? SET replayed_at = ? "
    "WHERE reject_date = ? AND bucket = ? AND kafka_topic = ? AND kafka_partition = ? AND kafka_offset = ?"
)


class Failure(Exception):
    """Kafka or Cassandra could not do its part: one line, exit 1."""


class _Parser(argparse.ArgumentParser):
    """A bad flag is one line (not usage + error), exit status 2."""

    def error(self, message: str) -> NoReturn:
        # printable(): an argument may hold a newline or a lone surrogate; the line stays one line.
        self.exit(2, f"{PROG}: error: {printable(message, 300)} (see --help)\n")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = _Parser(prog=PROG, description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="{list,replay}")
    for name, text in (("list", "show the rejected records of a date"),
                       ("replay", "send the rejected records of a date back through the topic")):
        command = commands.add_parser(name, help=text, description=text)
        command.add_argument("--date", required=True, type=date_argument,
                             help="business date of the records (YYYY-MM-DD)")
        command.add_argument("--reason", help="only records whose reason contains this text (any case)")
        command.add_argument("--topic", type=_topic,
                             help="the records' topic, where a replay sends them (default: configured)")
        if name == "list":
            command.add_argument("--limit", type=_positive, help="show at most N records")
        else:
            command.add_argument("--dry-run", action="store_true", help="print what would be sent; send nothing")
    return parser.parse_args(argv)


def _topic(text: str) -> str:
    if not TOPIC_NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(f"'{printable(text, 60)}' is not a Kafka topic name")
    return text


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"'{printable(text, 40)}' is not a positive integer")
    return value


@dataclass(frozen=True)
class RejectedRecord:
    """One row of rejected_events."""

    day: date
    bucket: int
    topic: str
    partition: int
    offset: int
    key: bytes | None
    key_length: int | None
    timestamp: datetime | None
    value: bytes | None
    length: int | None
    sha256: str | None
    reason: str
    rejected_at: datetime | None
    replayed_at: datetime | None
    ttl: int | None  # seconds left before the row expires; None: it does not

    @property
    def coordinates(self) -> KafkaCoordinates:
        return KafkaCoordinates(self.topic, self.partition, self.offset, _millis(self.timestamp))

    def replay_problem(self) -> str | None:
        """Why this record cannot be sent back as it was, or None."""
        if self.value is None:
            return "it has no value (a tombstone)"
        if (self.length or 0) > len(self.value):
            return f"its payload of {self.length} bytes was stored truncated to {KEPT_PAYLOAD_BYTES}"
        if self.key is not None and (self.key_length or 0) > len(self.key):
            return f"its key of {self.key_length} bytes was stored truncated to {KEPT_PAYLOAD_BYTES}"
        try:
            replay_header_value(self.coordinates)
        except ValueError:
            return f"its coordinates ({printable(str(self.coordinates), 80)}) do not fit a replay header"
        return None


def _millis(instant: datetime | None) -> int:
    if instant is None:
        return 0
    aware = instant if instant.tzinfo else instant.replace(tzinfo=UTC)
    return (aware - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def read_rejected(session: Any, day: date, topic: str, reason: str | None = None) -> Iterator[RejectedRecord]:
    """The rejected records of ``day`` in ``topic``, oldest offset first (partition, then
    offset), merged page by page from every bucket: memory stays bounded on a flooded day."""
    statement = session.prepare(SELECT_ROWS)
    statement.fetch_size = FETCH_SIZE
    streams = [
        (_record(day, row) for row in session.execute(statement, (day, bucket, topic)))
        for bucket in range(REJECTED_BUCKETS)
    ]
    needle = reason.casefold() if reason else None
    for record in heapq.merge(*streams, key=lambda r: (r.partition, r.offset)):
        if needle is None or needle in record.reason.casefold():
            yield record


def _record(day: date, row: Any) -> RejectedRecord:
    return RejectedRecord(
        day, row.bucket, row.kafka_topic, row.kafka_partition, row.kafka_offset, row.kafka_key, row.kafka_key_length,
        row.kafka_timestamp, row.raw_value, row.raw_length, row.raw_sha256, row.reason or "", row.rejected_at,
        row.replayed_at, row.ttl,
    )


def _when(instant: datetime | None) -> str:
    if instant is None:
        return "?"
    aware = instant if instant.tzinfo else instant.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def describe(record: RejectedRecord) -> list[str]:
    """The lines `list` prints for one record."""
    replayed = f"replayed {_when(record.replayed_at)}" if record.replayed_at else "not replayed"
    size = "no value" if record.length is None else f"{record.length} bytes"
    lines = [
        f"{record.coordinates}  {_when(record.timestamp)}  {size}  {replayed}",
        f"    reason: {printable(record.reason)}",
    ]
    if record.key is not None:
        lines.append(f"    key:    {payload_preview(record.key, record.key_length)}")
    lines.append(f"    value:  {payload_preview(record.value, record.length)}")
    return lines


def list_records(
    records: Iterable[RejectedRecord], limit: int | None, out: Callable[[str], None]
) -> tuple[int, bool]:
    """Prints the records; returns how many, and whether --limit left some out."""
    shown = 0
    for record in records:
        if limit is not None and shown >= limit:
            return shown, True
        for line in describe(record):
            out(line)
        shown += 1
    return shown, False


def replay(
    session: Any, settings: Settings, topic: str, records: Iterable[RejectedRecord], dry_run: bool,
    out: Callable[[str], None],
) -> tuple[int, int, int]:
    """Sends the replayable records, a chunk at a time; returns (sent, skipped, not acknowledged)."""
    sent = skipped = failed = 0
    sender = None if dry_run else Replayer(session, settings, topic)
    try:
        for chunk in _chunks(records, REPLAY_CHUNK):
            todo = []
            for record in chunk:
                problem = record.replay_problem()
                if problem:
                    out(f"skipped {record.coordinates}: cannot be replayed: {problem}")
                    skipped += 1
                elif sender is None:
                    out(f"would send {record.coordinates} ({record.length} bytes) to {topic}: "
                        f"{printable(record.reason, 120)}")
                    sent += 1
                else:
                    todo.append(record)
            if sender is not None and todo:
                acknowledged, not_acknowledged = sender.send(todo)
                for record, cause in not_acknowledged:
                    out(f"not acknowledged {record.coordinates}: {cause}")
                sent, failed = sent + acknowledged, failed + len(not_acknowledged)
    finally:
        if sender is not None:
            sender.close()
    return sent, skipped, failed


def _chunks(records: Iterable[RejectedRecord], size: int) -> Iterator[list[RejectedRecord]]:
    chunk: list[RejectedRecord] = []
    for record in records:
        chunk.append(record)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class Replayer:
    """Sends records back to the topic with their replay header, waits for Kafka's
    acknowledgement of each (acks=all), then sets their replayed_at."""

    def __init__(self, session: Any, settings: Settings, topic: str):
        self.session, self.settings, self.topic = session, settings, topic
        self.producer: Any = None
        self.mark = None

    def _connect(self) -> None:
        try:
            self.producer = KafkaProducer(
                bootstrap_servers=self.settings.kafka.bootstrap_list, acks="all", enable_idempotence=True,
                bootstrap_timeout_ms=10_000, max_block_ms=10_000, request_timeout_ms=10_000,
                delivery_timeout_ms=int(ACK_TIMEOUT_S * 1000), client_id="orderlog-rejected-replay",
            )
        except KafkaError as exc:
            raise Failure(
                f"Kafka is unreachable at {self.settings.kafka.bootstrap_servers} ({type(exc).__name__})"
            ) from None
        self.mark = self.session.prepare(MARK_REPLAYED)

    def send(self, records: list[RejectedRecord]) -> tuple[int, list[tuple[RejectedRecord, str]]]:
        """Returns how many were acknowledged (and marked), and the others with why."""
        if self.producer is None:
            self._connect()
        futures, acknowledged, failed = [], [], []
        for record in records:
            header = [(REPLAY_HEADER, replay_header_value(record.coordinates))]
            try:
                futures.append((record, self.producer.send(self.topic, key=record.key, value=record.value,
                                                           headers=header)))
            except KafkaError as exc:  # e.g. no metadata within max_block_ms: Kafka went away
                failed.append((record, printable(f"{type(exc).__name__}: {exc}", 200)))
        for record, future in futures:
            try:
                future.get(timeout=ACK_TIMEOUT_S)
                acknowledged.append(record)
            except KafkaError as exc:
                failed.append((record, printable(f"{type(exc).__name__}: {exc}", 200)))
        now = datetime.now(UTC)
        for record in acknowledged:
            # The row's own remaining TTL: replayed_at must not outlive the row it belongs to.
            self.session.execute(self.mark, (record.ttl or 0, now, record.day, record.bucket, record.topic,
                                             record.partition, record.offset))
        return len(acknowledged), failed

    def close(self) -> None:
        if self.producer is not None:
            self.producer.close(timeout=5)


def run(args: argparse.Namespace, settings: Settings, out: Callable[[str], None]) -> int:
    topic = args.topic or settings.kafka.topic
    try:
        session = connect_checked(settings)
    except CassandraUnavailable as exc:
        raise Failure(str(exc)) from None
    table = f"{settings.cassandra.keyspace}.rejected_events"
    try:
        session.set_keyspace(settings.cassandra.keyspace)
        records = read_rejected(session, args.date, topic, args.reason)
        scope = f"of {args.date} in topic {topic}" + (f" with reason containing {args.reason!r}" if args.reason else "")
        if args.command == "list":
            shown, more = list_records(records, args.limit, out)
            more_text = f" shown (--limit {args.limit}; there are more)" if more else ""
            out(f"{shown} rejected records {scope}{more_text}")
            return 0
        sent, skipped, failed = replay(session, settings, topic, records, args.dry_run, out)
        if args.dry_run:
            out(f"dry run: {sent} records {scope} would be replayed, {skipped} skipped; nothing was sent")
            return 0
        out(f"replayed {sent} records {scope} (acknowledged by Kafka), {skipped} skipped"
            + (f", {failed} not acknowledged: run the replay again" if failed else ""))
        return 1 if failed else 0
    except InvalidRequest as exc:
        raise Failure(f"cannot read {table}: {exc.args[0] if exc.args else exc}") from None
    except (NoHostAvailable, RequestExecutionException, DriverException) as exc:
        raise Failure(f"Cassandra at {settings.cassandra.address} failed ({type(exc).__name__})") from None
    finally:
        shutdown(session)


def main(argv: list[str] | None = None, out: Callable[[str], None] = print) -> int:
    args = parse_args(argv)
    # The drivers' own reconnection chatter is not for this tool's user: it says one line.
    for name in ("cassandra", "kafka"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    settings = load_or_exit(PROG)
    try:
        return run(args, settings, out)
    except Failure as exc:
        report(PROG, f"error: {exc}", log_format=settings.log.format)
        return 1
    except Exception as exc:  # noqa: BLE001  never a traceback: one line naming what failed
        report(PROG, f"error: {type(exc).__name__}: {printable(str(exc), 200)}", log_format=settings.log.format)
        return 1


if __name__ == "__main__":
    sys.exit(main())
