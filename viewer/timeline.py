"""A user's segment over time, from the daily history the user page already reads: the
segment after each order date is the preference of the cumulative counts up to it
(orderlog.menu.preference, the aggregate job's rule for user_segment_transitions), so
no extra query is needed and the timeline always agrees with the stored segments."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from orderlog.menu import SEGMENT_LABELS, preference
from viewer.queries import UserDay


@dataclass(frozen=True)
class SegmentPeriod:
    segment: str
    since: date  # the order date that put the user in the segment
    until: date | None  # the last day in it (the day before the next change); None: still in it

    def to_json(self) -> dict[str, Any]:
        return {
            "segment": self.segment,
            "label": SEGMENT_LABELS[self.segment],
            "from": self.since.isoformat(),
            "to": None if self.until is None else self.until.isoformat(),
        }


def segment_timeline(history: list[UserDay]) -> list[SegmentPeriod]:
    """The periods of a user's segments, latest first (history in any order)."""
    japanese = western = 0
    starts: list[tuple[str, date]] = []
    for day in sorted(history, key=lambda d: d.date):
        japanese, western = japanese + day.japanese, western + day.western
        segment = preference(japanese, western)
        if not starts or starts[-1][0] != segment:
            starts.append((segment, day.date))
    periods = [
        SegmentPeriod(segment, since, starts[i + 1][1] - timedelta(days=1) if i + 1 < len(starts) else None)
        for i, (segment, since) in enumerate(starts)
    ]
    return periods[::-1]
