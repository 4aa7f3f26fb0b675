"""How a day's numbers changed against a reference day (the previous day, and the same
weekday a week earlier): pure values, shown on the daily cards and in the JSON API."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from viewer import queries
from viewer.db import Store
from viewer.queries import DaySummary

# The reference days of a date, by name: how many days before it each one is.
REFERENCES = {"previous_day": 1, "week_before": 7}
COUNTS = ("japanese", "western", "total")


def reference_date(day: date, days_before: int) -> date | None:
    """day - days_before, or None before the first day of the calendar."""
    if day.toordinal() - days_before < date.min.toordinal():
        return None
    return day - timedelta(days=days_before)


@dataclass(frozen=True)
class CountChange:
    change: int
    relative: float | None  # change / reference count; None when the reference is 0

    def to_json(self) -> dict[str, Any]:
        return {"change": self.change, "relative": None if self.relative is None else round(self.relative, 4)}


@dataclass(frozen=True)
class DayChange:
    """The change of each card against one reference day; ``counts`` empty (and the share
    None) when the reference day is not aggregated: "no data", never a made-up zero."""

    reference: date | None
    counts: dict[str, CountChange]
    japanese_share: float | None  # the difference of the shares (a fraction), when both exist

    @property
    def available(self) -> bool:
        return bool(self.counts)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"date": None if self.reference is None else self.reference.isoformat(),
                                "aggregated": self.available}
        if self.available:
            body.update({name: c.to_json() for name, c in self.counts.items()})
            body["japanese_share"] = None if self.japanese_share is None else round(self.japanese_share, 4)
        return body


def day_change(current: DaySummary, reference_day: date | None, reference: DaySummary | None) -> DayChange:
    """current's numbers against reference's (None: not aggregated)."""
    if reference is None:
        return DayChange(reference_day, {}, None)
    counts = {}
    for name in COUNTS:
        now, then = getattr(current, name), getattr(reference, name)
        counts[name] = CountChange(now - then, (now - then) / then if then else None)
    share = None
    if current.japanese_share is not None and reference.japanese_share is not None:
        share = current.japanese_share - reference.japanese_share
    return DayChange(reference_day, counts, share)


def reference_dates(day: date) -> dict[str, date | None]:
    return {name: reference_date(day, before) for name, before in REFERENCES.items()}


def changes_of(current: DaySummary, found: dict[date, DaySummary]) -> dict[str, DayChange]:
    """current against each reference day, given the summaries found of those days."""
    changes = {}
    for name, day in reference_dates(current.date).items():
        changes[name] = day_change(current, day, None if day is None else found.get(day))
    return changes


def changes_of_date(store: Store, summary: DaySummary) -> dict[str, DayChange]:
    """The date's cards against its reference days, read at once (two summary rows)."""
    wanted = [d for d in reference_dates(summary.date).values() if d is not None]
    return changes_of(summary, queries.summaries_of(store, wanted))
