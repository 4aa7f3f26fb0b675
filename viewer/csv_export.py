"""The CSV exports (a segment's members, streamed; the daily summaries and the segment
sizes of a range), safe and readable when opened in a spreadsheet.

- It starts with a UTF-8 byte order mark: without one, Excel and other spreadsheet apps
  on a Japanese system read the file in the system's code page (Shift_JIS) and show
  ユーザー1 as mojibake.
- A cell that starts with =, +, -, @, a tab or a carriage return is written with a
  leading apostrophe (OWASP's advice against CSV injection): a spreadsheet would run
  ``=HYPERLINK(...)`` or ``-2+3`` as a formula; with the apostrophe it is text. A cell
  that starts with an apostrophe gets one more, so the rule can be undone exactly:
  ``original_cell`` removes one leading apostrophe, and nothing else.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from datetime import date

from viewer.queries import DaySummary, Member, SegmentSize

BOM = "\ufeff"
HEADER = ("user_id", "japanese", "western")
SUMMARY_HEADER = ("date", "japanese", "western", "total", "japanese_share", "users")
SIZES_HEADER = ("as_of", "segment", "users", "entered", "exited")
# What makes a spreadsheet read a cell as a formula (or hide the start of it); and the
# apostrophe itself, so that every exported cell that begins with one had one added.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
ESCAPE = "'"
_ROWS_PER_CHUNK = 500


def spreadsheet_safe(cell: str) -> str:
    """The cell as it is exported: with a leading apostrophe when it starts with one of
    FORMULA_STARTS or with an apostrophe."""
    return ESCAPE + cell if cell.startswith((*FORMULA_STARTS, ESCAPE)) else cell


def original_cell(cell: str) -> str:
    """The value of an exported cell (what a program reading the CSV should use)."""
    return cell[1:] if cell.startswith(ESCAPE) else cell


Cell = str | int | float | None


def csv_chunks(header: tuple[str, ...], rows: Iterable[tuple[Cell, ...]]) -> Iterator[str]:
    """The CSV text in chunks: the BOM and header, then the rows (CRLF lines); text cells
    made spreadsheet-safe, None an empty cell."""
    buffer = io.StringIO()
    buffer.write(BOM)
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    for n, row in enumerate(rows, start=1):
        writer.writerow(spreadsheet_safe(c) if isinstance(c, str) else c for c in row)
        if n % _ROWS_PER_CHUNK == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def csv_rows(members: Iterable[Member]) -> Iterator[str]:
    """A segment's members in user_id order, streamed."""
    return csv_chunks(HEADER, ((m.user_id, m.japanese, m.western) for m in members))


def summaries_csv(days: Iterable[DaySummary]) -> str:
    """The daily summaries of a range, oldest first; the share a fraction (4 places)."""
    rows = (
        (d.date.isoformat(), d.japanese, d.western, d.total,
         None if d.japanese_share is None else round(d.japanese_share, 4), d.users)
        for d in days
    )
    return "".join(csv_chunks(SUMMARY_HEADER, rows))


def sizes_csv(by_date: dict[date, dict[str, SegmentSize]]) -> str:
    """One row per date and segment, oldest date first, segments in their usual order."""
    rows = (
        (day.isoformat(), s.segment, s.users, s.entered, s.exited)
        for day, sizes in by_date.items()
        for s in sizes.values()
    )
    return "".join(csv_chunks(SIZES_HEADER, rows))
