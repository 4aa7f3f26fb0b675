"""The segment CSV: streamed, and safe and readable when opened in a spreadsheet.

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

from viewer.queries import Member

BOM = "\ufeff"
HEADER = ("user_id", "japanese", "western")
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


def csv_rows(members: Iterable[Member]) -> Iterator[str]:
    """The CSV text in chunks: the BOM and header, then the members in user_id order."""
    buffer = io.StringIO()
    buffer.write(BOM)
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(HEADER)
    for n, m in enumerate(members, start=1):
        writer.writerow((spreadsheet_safe(m.user_id), m.japanese, m.western))
        if n % _ROWS_PER_CHUNK == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
