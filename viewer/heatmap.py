"""The weekday x hour view of orders (pure functions of the hourly counts).

Each aggregated date has 24 hourly counts (hourly_order_counts, written by the aggregate in
the business time zone). Over a range, the cell (weekday, hour) sums that hour of every
date of that weekday; its Japanese share is japanese / (japanese + western) of the summed
cell, and None ("no data") when the cell has no order. Weekdays are ISO numbers: 1 is
Monday, 7 is Sunday.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

from orderlog.business_day import HOURS_OF_DAY

WEEKDAYS = (1, 2, 3, 4, 5, 6, 7)
WEEKDAY_NAMES = {1: "Monday", 2: "Tuesday", 3: "Wednesday", 4: "Thursday", 5: "Friday", 6: "Saturday",
                 7: "Sunday"}


@dataclass(frozen=True)
class HourCount:
    """One row of hourly_order_counts."""

    date: date
    hour: int
    japanese: int
    western: int


@dataclass(frozen=True)
class Cell:
    weekday: int
    hour: int
    japanese: int
    western: int

    @property
    def total(self) -> int:
        return self.japanese + self.western

    @property
    def japanese_share(self) -> float | None:
        return self.japanese / self.total if self.total else None

    def to_json(self) -> dict[str, Any]:
        share = self.japanese_share
        return {"weekday": self.weekday, "hour": self.hour, "japanese": self.japanese, "western": self.western,
                "total": self.total, "japanese_share": None if share is None else round(share, 4)}


@dataclass(frozen=True)
class WeekdayHours:
    """The 7 x 24 cells (weekday-major, hour-minor) and how many dates of each weekday
    had hourly counts (the cell of a weekday sums that many dates)."""

    cells: list[Cell]
    dates_by_weekday: dict[int, int]

    @property
    def dates(self) -> int:
        return sum(self.dates_by_weekday.values())

    def cell(self, weekday: int, hour: int) -> Cell:
        return self.cells[(weekday - 1) * HOURS_OF_DAY + hour]


def weekday_hours(hours: Iterable[HourCount]) -> WeekdayHours:
    """Sums each (weekday, hour) over the given dates' hourly counts (an hour outside
    0..23, which no writer of ours produces, is left out)."""
    sums = {(w, h): [0, 0] for w in WEEKDAYS for h in range(HOURS_OF_DAY)}
    dates: dict[int, set[date]] = {w: set() for w in WEEKDAYS}
    for row in hours:
        weekday = row.date.isoweekday()
        dates[weekday].add(row.date)
        cell = sums.get((weekday, row.hour))
        if cell is not None:
            cell[0] += row.japanese
            cell[1] += row.western
    cells = [Cell(w, h, *sums[(w, h)]) for w in WEEKDAYS for h in range(HOURS_OF_DAY)]
    return WeekdayHours(cells, {w: len(d) for w, d in dates.items()})
