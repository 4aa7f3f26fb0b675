"""Request parameters, checked: a bad one raises BadParameter naming it and saying why
(BadCursor for an ``after`` cursor no page of this API produced). The pages and the JSON
API read their parameters through these functions only."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from datetime import date
from typing import Any

from werkzeug.routing import PathConverter

from orderlog.business_day import shift_days
from orderlog.events import USER_ID_MAX_LENGTH, user_id_character_problem

# ASCII digits only (\d alone also matches other scripts' digits), and no trailing newline.
DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
DEFAULT_RANGE_DAYS = 30
MAX_RANGE_DAYS = 3660  # ten years: eleven year partitions at most
# The weekday x hour heatmap reads 24 rows a date: a year of them (8,784 rows) at most.
MAX_HOURLY_RANGE_DAYS = 366
DEFAULT_PER_PAGE = 100
MAX_PER_PAGE = 1000
MAX_PAGE = 100_000
# How deep `page=` may go (rows skipped); deeper pages follow the `after` cursor.
MAX_PAGE_OFFSET = 10_000
_CURSOR_TAG = "u:"
# The base64 length of the tag and the longest id (4 UTF-8 bytes a character).
_MAX_CURSOR_CHARS = 4 * -(-(len(_CURSOR_TAG) + 4 * USER_ID_MAX_LENGTH) // 3)
# Every query parameter the viewer reads. Each may be given once: with two values, which
# one was meant is a guess (the first, silently), so it is a 400.
PARAMETERS = ("date", "from", "to", "segment", "page", "per_page", "page_no", "prefix", "after", "user_id", "limit",
              "compare_from", "min_orders", "active_within_days", "sort")
# Audience filters of a segment list (viewer/audience.py).
MAX_MIN_ORDERS = 1_000_000_000
MAX_ACTIVE_DAYS = 3660
SORTS = ("user_id", "orders")
# Users a prefix search lists (the Users page and /api/users): type more to narrow it.
DEFAULT_USER_MATCHES = 20
MAX_USER_MATCHES = 100


class BadParameter(ValueError):
    def __init__(self, name: str, reason: str):
        super().__init__(f"invalid parameter '{name}': {reason}")
        self.name = name
        self.reason = reason


class BadCursor(ValueError):
    """An `after` value that no page of this API produced."""


def check_single(args: Mapping[str, str]) -> None:
    """BadParameter for a parameter of PARAMETERS given more than once."""
    getlist = getattr(args, "getlist", None)  # a MultiDict (request.args); plain dicts in tests
    for name in PARAMETERS if getlist else ():
        if len(getlist(name)) > 1:  # type: ignore[misc]
            raise BadParameter(name, "is given more than once")


def check_exclusive(args: Mapping[str, str], single: str, ranged: tuple[str, ...]) -> None:
    """BadParameter when ``single`` is given together with any of ``ranged``."""
    if args.get(single) and any(args.get(r) for r in ranged):
        raise BadParameter(single, f"use either '{single}' or {' and '.join(repr(r) for r in ranged)}")


def parse_date(args: Mapping[str, str], name: str) -> date | None:
    raw = args.get(name)
    if raw is None or raw == "":
        return None
    if not DATE_RE.fullmatch(raw):
        raise BadParameter(name, f"must be a date YYYY-MM-DD, got {raw!r}")
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise BadParameter(name, f"{raw!r} is not a calendar date") from None


def parse_range(
    args: Mapping[str, str], default_last: date | None, max_days: int = MAX_RANGE_DAYS
) -> tuple[date, date] | None:
    """`from` and `to` (both included), at most max_days apart. Missing ones default to a
    DEFAULT_RANGE_DAYS window ending at default_last (cut short at the ends of the
    calendar, year 1 and 9999); None when there is nothing to default to."""
    first, last = parse_date(args, "from"), parse_date(args, "to")
    if first is None and last is None:
        if default_last is None:
            return None
        last = default_last
    if last is None:
        last = shift_days(first, DEFAULT_RANGE_DAYS - 1)  # type: ignore[arg-type]
    if first is None:
        first = shift_days(last, -(DEFAULT_RANGE_DAYS - 1))
    if first > last:
        raise BadParameter("from", f"{first.isoformat()} is after 'to' {last.isoformat()}")
    if (last - first).days + 1 > max_days:
        raise BadParameter("to", f"a range may span at most {max_days} days")
    return first, last


def parse_int(args: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = args.get(name)
    if raw is None or raw == "":
        return default
    if not re.fullmatch(r"[0-9]{1,9}", raw):
        raise BadParameter(name, f"must be a whole number from {low} to {high}, got {raw!r}")
    value = int(raw)
    if not low <= value <= high:
        raise BadParameter(name, f"must be from {low} to {high}, got {value}")
    return value


def parse_prefix(args: Mapping[str, str]) -> str | None:
    raw = args.get("prefix")
    if raw is None or raw == "":
        return None
    if len(raw) > USER_ID_MAX_LENGTH:
        raise BadParameter("prefix", f"must be at most {USER_ID_MAX_LENGTH} characters")
    problem = user_id_character_problem(raw)
    if problem:
        raise BadParameter("prefix", problem)
    return raw


def check_user_id(user_id: str) -> str:
    if not user_id.strip() or len(user_id) > USER_ID_MAX_LENGTH:
        raise BadParameter("user_id", f"must be 1 to {USER_ID_MAX_LENGTH} characters")
    problem = user_id_character_problem(user_id)
    if problem:
        raise BadParameter("user_id", problem)
    return user_id


def page_args(args: Mapping[str, str]) -> dict[str, Any]:
    """page, per_page, prefix and after of a segment page, checked (a bad cursor is a 400
    before any query)."""
    per_page = parse_int(args, "per_page", DEFAULT_PER_PAGE, 1, MAX_PER_PAGE)
    page = parse_int(args, "page", 1, 1, MAX_PAGE)
    after = args.get("after") or None
    if after is not None and args.get("page"):
        raise BadParameter("page", "use either 'page' or 'after' (the cursor of the next page)")
    if (page - 1) * per_page > MAX_PAGE_OFFSET:
        raise BadParameter(
            "page",
            f"pages deeper than {MAX_PAGE_OFFSET} users are reached with the 'after' "
            "cursor: follow 'next_after' from page to page",
        )
    if after is not None:
        decode_cursor(after)
    return {"per_page": per_page, "page": page, "prefix": parse_prefix(args), "after": after}


def encode_cursor(user_id: str) -> str:
    raw = (_CURSOR_TAG + user_id).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The user id a cursor of encode_cursor holds; BadCursor for anything else, including
    ids no user can have (Cassandra refuses a key over 64 KiB: that would be a 5xx)."""
    foreign = BadCursor("not a cursor returned by this API (use 'next_after')")
    if len(cursor) > _MAX_CURSOR_CHARS:
        raise foreign
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise foreign from None
    user_id = raw[len(_CURSOR_TAG) :]
    if not raw.startswith(_CURSOR_TAG) or not 0 < len(user_id) <= USER_ID_MAX_LENGTH:
        raise foreign
    return user_id


class UserIdConverter(PathConverter):
    """A user id in a path: anything up to the end, slashes included, even a leading one
    (werkzeug's `path` refuses those, and an id like '/x' is a valid id)."""

    regex = ".+?"
    part_isolating = False  # werkzeug infers True from a regex without '/'


def audience_args(args: Mapping[str, str]) -> dict[str, Any]:
    """min_orders, active_within_days and sort of a segment list, checked (None: not given)."""
    min_orders = parse_int(args, "min_orders", 0, 1, MAX_MIN_ORDERS) or None
    active = parse_int(args, "active_within_days", 0, 1, MAX_ACTIVE_DAYS) or None
    sort = args.get("sort") or "user_id"
    if sort not in SORTS:
        raise BadParameter("sort", f"must be one of {', '.join(SORTS)}, got {sort!r}")
    if sort == "orders" and args.get("after"):
        raise BadParameter("sort", "a list sorted by orders is paged with 'page', not 'after'")
    return {"min_orders": min_orders, "active_within_days": active, "sort": sort}
