"""Replays days of orders through the ingest API (the seed's ``log-stream-test.sh``).

    python -m tools.replay 2025-05-31                     # a week ending 2025-05-31
    python -m tools.replay 2025-05-31 --days 1 --orders 3000 --dirty --truth var/truth.json

Generates a realistic, reproducible replay (``tools.generator``), sends it in batches at
``--rate`` events per second with a progress bar, and prints how many events were sent,
acknowledged and refused. ``--truth FILE`` writes what the pipeline must then show,
computed from the acknowledged valid events (``tools.truth``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tqdm import tqdm

from orderlog.business_day import date_argument
from orderlog.config import Settings, load_or_exit
from orderlog.events import InvalidEvent, validate_event
from orderlog.logs import TEXT, configure, progress, report
from tools.generator import Replay, ReplayParams, generate
from tools.sender import Sender, SendError, SendResult
from tools.truth import compute_truth


def parse_args(argv: list[str] | None, settings: Settings) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.replay", description=__doc__.splitlines()[0])
    parser.add_argument("date", type=date_argument, help="the last business date of the replay (YYYY-MM-DD)")
    parser.add_argument("--days", type=int, default=7, help="number of days ending on DATE (default 7)")
    parser.add_argument("--users", type=int, default=2000, help="number of users (default 2000)")
    parser.add_argument("--orders", type=int, default=20000, help="orders over all days (default 20000)")
    parser.add_argument("--rate", type=float, default=2000, help="events per second, 0 = unlimited (default 2000)")
    parser.add_argument("--seed", type=int, default=42, help="random seed: same seed, same events (default 42)")
    parser.add_argument("--dirty", action="store_true", help="also send late and malformed events")
    parser.add_argument("--truth", type=Path, help="write the expected counts and preferences here (JSON)")
    parser.add_argument("--events", type=Path, help="write the events, in sending order, here (NDJSON)")
    parser.add_argument("--url", help="ingest API base URL (default http://ORDERLOG_INGEST_HOST:PORT)")
    parser.add_argument("--token", default=settings.ingest.api_token or None,
                        help="bearer token of the ingest API (default $ORDERLOG_INGEST_API_TOKEN)")
    parser.add_argument("--batch", type=int, default=200, help="events per request (default 200)")
    parser.add_argument("--max-wait", type=float, default=300, help="seconds to keep retrying a batch (default 300)")
    parser.add_argument("--dry-run", action="store_true", help="generate (and write files) without sending")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


class ReplayError(ValueError):
    """The replay cannot be made as asked; the message says why."""


def check_valid(replay: Replay, now: datetime | None = None) -> None:
    """Every event meant to be valid passes the pipeline's own validation (today's clock
    included: the API refuses timestamps more than a day ahead)."""
    now = now or datetime.now(UTC)
    for event in replay.events:
        if not event.valid:
            continue
        try:
            validate_event(event.payload, now=now)
        except InvalidEvent as exc:
            raise ReplayError(f"cannot replay {replay.params.end_date}: {event.payload} -> {exc}") from None


def truth_of(replay: Replay, acknowledged: set[int], result: SendResult | None) -> dict[str, Any]:
    params = replay.params
    meta = {
        "end_date": params.end_date.isoformat(),
        "days": params.days,
        "users": params.users,
        "orders": params.orders,
        "seed": params.seed,
        "dirty": params.dirty,
        "run_tag": params.run_tag,
        "sent": result.sent if result else len(replay.events),
        "acknowledged": len(result.acknowledged) if result else len(acknowledged),
        "refused": len(result.refused) if result else 0,
    }
    payloads = [e.payload for i, e in enumerate(replay.events) if e.valid and i in acknowledged]
    return compute_truth(payloads, params.business_timezone, params.dates, meta)


@dataclass(frozen=True)
class Sending:
    """Where and how the events are sent (the flags of the same names)."""

    url: str
    token: str | None = None
    rate: float = 2000
    batch: int = 200
    max_wait: float = 300
    progress: bool = True


@dataclass(frozen=True)
class ReplayReport:
    replay: Replay
    result: SendResult | None  # None: a dry run
    truth: dict[str, Any]  # what the pipeline must then show

    @property
    def surprises(self) -> int:
        """3 when the API judged an event otherwise than the generator meant, else 0."""
        return report_surprises(self.replay, self.result)


def replay(params: ReplayParams, sending: Sending | None, *, events: Path | None = None,
           out: Callable[[str], None] = print) -> ReplayReport:
    """Generates the replay, sends it (unless ``sending`` is None: a dry run) and computes
    the truth from the acknowledged valid events. ``events`` gets the events as NDJSON.
    Raises ReplayError when a valid event fails the pipeline's own validation, SendError
    when sending stops."""
    generated = generate(params)
    check_valid(generated)
    valid = sum(1 for e in generated.events if e.valid)
    late = sum(1 for e in generated.events if e.late)
    out(
        f"replay {params.first_date}..{params.end_date} ({params.business_timezone}): "
        f"{params.users} users, {valid} orders, seed {params.seed}"
        + (f", dirty: {late} late, {len(generated.events) - valid} malformed" if params.dirty else "")
    )
    if events:
        _write(events, generated.to_ndjson())
    if sending is None:
        acknowledged = {i for i, e in enumerate(generated.events) if e.valid}
        result = None
    else:
        result = send(generated, sending)
        acknowledged = set(result.acknowledged)
        out(
            f"sent {result.sent}, acknowledged {len(result.acknowledged)}, refused {len(result.refused)} "
            f"in {result.seconds:.1f}s ({result.sent / max(result.seconds, 1e-9):.0f} events/s, "
            f"{result.requests} requests, {result.retries} retries)"
        )
    return ReplayReport(generated, result, truth_of(generated, acknowledged, result))


def main(argv: list[str] | None = None) -> int:
    settings = load_or_exit("replay")
    args = parse_args(argv, settings)
    log_format = settings.log.format
    configure("replay", log_format, logging.WARNING)
    try:
        params = ReplayParams(
            end_date=args.date, days=args.days, users=args.users, orders=args.orders,
            seed=args.seed, dirty=args.dirty, business_timezone=settings.business.timezone,
        )
    except ValueError as exc:
        report("replay", str(exc), log_format=log_format)
        return 2
    url = args.url or f"http://{settings.ingest.host}:{settings.ingest.port}"
    sending = None if args.dry_run else Sending(
        url, args.token, args.rate, args.batch, args.max_wait,
        not args.quiet and log_format == TEXT,  # a progress bar is no JSON line
    )
    try:
        outcome = replay(params, sending, events=args.events, out=progress("replay", log_format))
    except ReplayError as exc:
        report("replay", str(exc), log_format=log_format)
        return 1
    except SendError as exc:
        report("replay", str(exc), log_format=log_format)
        return 1
    if args.truth:
        _write(args.truth, (json.dumps(outcome.truth, indent=1, sort_keys=True) + "\n").encode())
        progress("replay", log_format)(
            f"truth: {outcome.truth['orders']} orders on {len(outcome.truth['dates'])} days -> {args.truth}")
    return outcome.surprises


def send(generated: Replay, sending: Sending) -> SendResult:
    with tqdm(total=len(generated.events), unit="ev", disable=not sending.progress, desc="replay",
              file=sys.stderr) as bar:
        sender = Sender(
            sending.url, rate=sending.rate, batch_size=sending.batch, max_wait=sending.max_wait, token=sending.token,
            progress=bar.update,
        )
        return sender.send([e.payload for e in generated.events])


def report_surprises(replay: Replay, result: SendResult | None) -> int:
    """Exit status 3 when the API judged an event otherwise than the generator meant."""
    if result is None:
        return 0
    wrongly_refused = [i for i in result.refused if replay.events[i].valid]
    wrongly_accepted = [i for i in result.acknowledged if not replay.events[i].valid]
    for i in wrongly_refused[:5]:
        report("replay", f"valid event refused: {replay.events[i].to_json()} -> {result.refused[i]}")
    for i in wrongly_accepted[:5]:
        report("replay", f"malformed event acknowledged: {replay.events[i].to_json()}")
    return 3 if wrongly_refused or wrongly_accepted else 0


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


if __name__ == "__main__":
    sys.exit(main())
