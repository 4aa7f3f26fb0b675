"""The business day: an order belongs to the calendar day of its timestamp in the
business time zone (default Asia/Tokyo). 2025-05-31T23:30:00+09:00 is 2025-05-31;
2025-05-31T15:30:00Z is 2025-06-01. Its business hour is the hour of the same local
time (0..23): 2025-05-31T12:34:56+09:00 is hour 12 in Tokyo.

In a zone with daylight saving time the local clock skips or repeats an hour on the change
days: the skipped hour (e.g. 02:00 in the spring) gets no order, and the repeated one (e.g.
01:00 in the autumn) holds the orders of both real hours. Counts per hour of a day are
therefore counts per *clock* hour, which is what "lunch at 12" means."""

from __future__ import annotations

import argparse
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from orderlog.events import printable

if TYPE_CHECKING:  # pyspark is only needed by the Spark jobs
    from pyspark.sql import Column


def business_date(instant: datetime, tz: ZoneInfo | str) -> date:
    """The business day of an aware datetime."""
    if instant.tzinfo is None:
        raise ValueError("business_date needs a timezone-aware datetime")
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    return instant.astimezone(zone).date()


def business_date_col(timestamp_col: Column, tz: str) -> Column:
    """The same rule as a Spark column: the date of a timestamp (an instant) in tz.

    ``from_utc_timestamp`` shifts the instant by tz's offset, and ``to_date`` then takes the
    date of the result in the session time zone: that is the date in tz only when the
    session time zone is UTC, which is why every session pins ``spark.sql.session.timeZone``
    to UTC (jobs/session.py).
    """
    from pyspark.sql import functions as F

    return F.to_date(F.from_utc_timestamp(timestamp_col, tz))


HOURS_OF_DAY = 24


def business_hour(instant: datetime, tz: ZoneInfo | str) -> int:
    """The hour (0..23) of an aware datetime on the clock of the business time zone."""
    if instant.tzinfo is None:
        raise ValueError("business_hour needs a timezone-aware datetime")
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    return instant.astimezone(zone).hour


def business_hour_col(timestamp_col: Column, tz: str) -> Column:
    """The same rule as a Spark column: the hour of a timestamp (an instant) in tz. Like
    ``business_date_col``, right only in a session whose time zone is UTC (jobs/session.py)."""
    from pyspark.sql import functions as F

    return F.hour(F.from_utc_timestamp(timestamp_col, tz))


def yesterday(tz: ZoneInfo | str, now: datetime | None = None) -> date:
    """The previous business day: the default date of the nightly aggregate."""
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    now = now or datetime.now(zone)
    return now.astimezone(zone).date() - timedelta(days=1)


def date_range(first: date, last: date) -> list[date]:
    """Every date from first to last, both included."""
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def shift_days(day: date, days: int) -> date:
    """day moved by days, stopped at the ends of the calendar (date.min, date.max) instead
    of raising OverflowError: a default range next to year 1 or 9999 is cut short."""
    ordinal = min(max(day.toordinal() + days, date.min.toordinal()), date.max.toordinal())
    return date.fromordinal(ordinal)


def date_argument(text: str) -> date:
    """A date given on a command line (argparse's ``type=``): YYYY-MM-DD, or an error that
    quotes what was given as one printable line (a flag may hold any bytes)."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{printable(text, 40)}' is not a date (YYYY-MM-DD)") from None
