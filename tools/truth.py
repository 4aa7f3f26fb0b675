"""The generator's own truth: what the pipeline must show after a replay.

Computed from the acknowledged valid events only, with the pipeline's own rules: the
event schema of ``orderlog.events`` (canonical menu type, timestamp parsing), the
business day of ``orderlog.business_day`` and the preference of ``orderlog.menu``.
An order_id counts once, as it does downstream.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from typing import Any

from orderlog.business_day import business_date
from orderlog.events import validate_event
from orderlog.menu import JAPANESE, SEGMENTS, WESTERN, preference

TRUTH_FORMAT = 1
FAR_FUTURE = datetime(9000, 1, 1, tzinfo=UTC)


def compute_truth(
    payloads: Iterable[Mapping[str, Any]],
    business_timezone: str,
    dates: list[date],
    meta: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Expected daily counts, per-user cumulative counts and segments.

    ``dates`` are the days of the replay (each gets a row, zero if no order fell on it).
    ``daily[d]``: japanese, western, total and distinct users of business date d.
    ``users[u]``: cumulative counts after the last date, preference, first/last date.
    ``segments``: segment sizes after the last date; ``segments_by_day[d]``: sizes as of
    d (users who ordered on or before d), with how many entered and left each segment on d.
    """
    seen: set[str] = set()
    per_day_user: dict[date, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for payload in payloads:
        # The API already judged the time range; the truth must not depend on the clock.
        event = validate_event(dict(payload), now=FAR_FUTURE)
        key = event.order_id or repr(sorted(payload.items()))
        if key in seen:
            continue
        seen.add(key)
        day = business_date(event.timestamp, business_timezone)
        per_day_user[day][event.user_id][0 if event.menu_type == JAPANESE else 1] += 1

    all_days = sorted(set(dates) | set(per_day_user))
    daily: dict[str, dict[str, int]] = {}
    cumulative: dict[str, list[int]] = {}
    first: dict[str, date] = {}
    last: dict[str, date] = {}
    segment_of: dict[str, str] = {}
    segments_by_day: dict[str, dict[str, dict[str, int]]] = {}
    for day in all_days:
        users = per_day_user.get(day, {})
        j = sum(c[0] for c in users.values())
        w = sum(c[1] for c in users.values())
        daily[day.isoformat()] = {JAPANESE: j, WESTERN: w, "total": j + w, "users": len(users)}
        entered = dict.fromkeys(SEGMENTS, 0)
        exited = dict.fromkeys(SEGMENTS, 0)
        for user_id, (uj, uw) in users.items():
            totals = cumulative.setdefault(user_id, [0, 0])
            totals[0] += uj
            totals[1] += uw
            first.setdefault(user_id, day)
            last[user_id] = day
            before = segment_of.get(user_id)
            after = preference(totals[0], totals[1])
            if before != after:
                entered[after] += 1
                if before is not None:
                    exited[before] += 1
            segment_of[user_id] = after
        sizes = dict.fromkeys(SEGMENTS, 0)
        for segment in segment_of.values():
            sizes[segment] += 1
        segments_by_day[day.isoformat()] = {
            s: {"users": sizes[s], "entered": entered[s], "exited": exited[s]} for s in SEGMENTS
        }

    users_out = {
        user_id: {
            JAPANESE: jw[0],
            WESTERN: jw[1],
            "preference": preference(jw[0], jw[1]),
            "first_order_date": first[user_id].isoformat(),
            "last_order_date": last[user_id].isoformat(),
        }
        for user_id, jw in sorted(cumulative.items())
    }
    segments = dict.fromkeys(SEGMENTS, 0)
    for info in users_out.values():
        segments[info["preference"]] += 1
    return {
        "format": TRUTH_FORMAT,
        **({"replay": dict(meta)} if meta else {}),
        "business_timezone": business_timezone,
        "dates": [d.isoformat() for d in all_days],
        "orders": len(seen),
        "daily": daily,
        "users": users_out,
        "segments": segments,
        "segments_by_day": segments_by_day,
    }
