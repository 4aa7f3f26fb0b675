"""What the trend chart adds to a range of daily summaries (pure functions): the Japanese
share over the 7 days up to each date, and a second period aligned day by day with the
range (this month against last month)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from orderlog.business_day import shift_days
from viewer import queries
from viewer.db import Store
from viewer.queries import DaySummary

MOVING_DAYS = 7


def moving_window_start(first: date) -> date:
    """The first date whose summary the moving share of ``first`` needs."""
    return shift_days(first, -(MOVING_DAYS - 1))


def moving_share(summaries: list[DaySummary], dates: list[date]) -> dict[date, float | None]:
    """For each of ``dates``: the Japanese share of the orders of the MOVING_DAYS days up to
    it (the days' orders summed, so a quiet day weighs less than a busy one; days not
    aggregated count as none). None when those days have no orders. ``summaries`` must
    reach MOVING_DAYS - 1 days before the first date."""
    by_date = {s.date: s for s in summaries}
    shares: dict[date, float | None] = {}
    for day in dates:
        window = [by_date.get(shift_days(day, -back)) for back in range(MOVING_DAYS) if day.toordinal() - back > 0]
        japanese = sum(s.japanese for s in window if s)
        counted = japanese + sum(s.western for s in window if s)
        shares[day] = japanese / counted if counted else None
    return shares


@dataclass(frozen=True)
class Comparison:
    """A second period of the same length as the range, day i of it drawn at day i of the range."""

    first: date
    last: date
    days: list[DaySummary]
    range_first: date  # the first date of the range it is compared with

    def aligned(self) -> list[tuple[date, DaySummary]]:
        """(the range's date it is drawn at, the summary) for each aggregated day."""
        offset = self.range_first.toordinal() - self.first.toordinal()
        return [
            (date.fromordinal(d.date.toordinal() + offset), d)
            for d in self.days
            if 0 < d.date.toordinal() + offset <= date.max.toordinal()
        ]

    def to_json(self) -> dict[str, Any]:
        return {"from": self.first.isoformat(), "to": self.last.isoformat(), "days": [d.to_json() for d in self.days]}


def comparison_span(span: tuple[date, date], compare_from: date) -> tuple[date, date]:
    """The period that starts at compare_from and is as long as span (cut at the calendar's end)."""
    first, last = span
    return compare_from, shift_days(compare_from, (last - first).days)


def previous_month(day: date) -> tuple[tuple[date, date], date] | None:
    """(the month of day, as a range; the first day of the month before): the page's
    "this month against last month" link. None in the calendar's first month."""
    start = day.replace(day=1)
    if start.toordinal() == 1:
        return None
    before = shift_days(start, -1).replace(day=1)
    if start.month < 12:
        next_start: date | None = start.replace(month=start.month + 1)
    else:
        next_start = None if start.year == date.max.year else date(start.year + 1, 1, 1)
    end = date.max if next_start is None else shift_days(next_start, -1)
    return (start, end), before


@dataclass(frozen=True)
class RangeTrend:
    days: list[DaySummary]  # the aggregated dates of the range, oldest first
    moving: dict[date, float | None]  # the 7-day share of each of them
    comparison: Comparison | None


def range_trend(store: Store, span: tuple[date, date], compare_from: date | None) -> RangeTrend:
    """The range's summaries with the 7-day share of each, and the compared period's when
    asked: one read of the range widened by 6 days (one partition per year), and one of
    the compared period."""
    first, last = span
    widened = queries.summaries_between(store, moving_window_start(first), last)
    days = [d for d in widened if d.date >= first]
    comparison = None
    if compare_from is not None:
        c_first, c_last = comparison_span(span, compare_from)
        comparison = Comparison(c_first, c_last, queries.summaries_between(store, c_first, c_last), first)
    return RangeTrend(days, moving_share(widened, [d.date for d in days]), comparison)
