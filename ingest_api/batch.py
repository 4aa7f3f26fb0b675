"""The events of a batch body, read one at a time, so a request costs memory and CPU
bounded by the batch limit, not by its body.

A 16 MiB body may hold millions of tiny lines or array elements. Decoding it whole (every
NDJSON line, or ``json.loads`` of the array) before counting took hundreds of MB and
seconds of CPU per request. Here:

- NDJSON: the non-blank lines are counted by a regular-expression scan (C speed) that
  stops at ``max_batch + 1``, before any line is decoded; then each line is decoded on its
  own, and a line larger than ``MAX_EVENT_BYTES`` is refused without being decoded.
- JSON array: the body is decoded to text one window of ``WINDOW_BYTES`` (an event's
  limit and a little more) at a time, and each element with ``raw_decode`` from the
  window it starts in (again from a window that starts at it, if the first one ended
  inside it), so no element makes the parser build more than a window's worth of
  objects; elements are counted as they are read and the scan stops at ``max_batch + 1``.

Each reader yields ``(value, problem)`` per event, in order: the decoded JSON value, or
``problem`` saying why the event could not be decoded (reported with its index). A body
that cannot be read on (malformed JSON between events, too many events) raises
``BatchRefused`` with the status and message to answer with.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from typing import Any

from orderlog.events import MAX_EVENT_BYTES

Item = tuple[Any, str | None]

# A non-blank NDJSON line: from its first non-whitespace byte to the end of the line.
# (bytes.strip() whitespace, so the blank lines ignored are the ones they always were.)
_NDJSON_LINE = re.compile(rb"[^ \t\n\r\x0b\x0c][^\n]*")
# JSON's own whitespace (RFC 8259), skipped in C rather than character by character;
# and what may follow an array's element: whitespace, ',' or ']', whitespace.
_JSON_SPACE = re.compile(r"[ \t\n\r]*")
_DELIMITER = re.compile(r"[ \t\n\r]*([,\]]?)[ \t\n\r]*")
# The window an element is decoded from: an event's limit plus a margin, so that an
# element within the limit always ends (or fails) well before the window does; what
# still reaches the window's end is larger than an event may be.
WINDOW_BYTES = MAX_EVENT_BYTES + 32


class BatchRefused(Exception):
    """The batch cannot be read on: answer ``status`` with ``message``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def too_many(max_batch: int) -> BatchRefused:
    message = f"the batch has more than {max_batch} events; at most {max_batch} are accepted per request"
    return BatchRefused(413, message)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def loads(data: bytes) -> Any:
    """JSON as RFC 8259 has it: UTF-8, no NaN/Infinity. Raises ValueError (a
    UnicodeDecodeError for bytes that are not UTF-8) or RecursionError."""
    return _DECODER.decode(data.decode("utf-8"))


# -- NDJSON ---------------------------------------------------------------------------------


def count_ndjson_events(data: bytes, limit: int) -> int:
    """The number of non-blank lines, counting no further than limit."""
    return sum(1 for _ in itertools.islice(_NDJSON_LINE.finditer(data), limit))


def ndjson_lines(data: bytes, max_batch: int) -> list[memoryview] | None:
    """The non-blank lines of an NDJSON body as views of it (nothing copied), or None when
    there are more than max_batch or one is larger than an event may be."""
    body, lines = memoryview(data), []
    for line in itertools.islice(_NDJSON_LINE.finditer(data), max_batch + 1):
        start, end = line.span()
        if end - start > MAX_EVENT_BYTES:
            return None
        lines.append(body[start:end])
    return None if len(lines) > max_batch else lines


def ndjson_items(data: bytes, max_batch: int) -> Iterator[Item]:
    """The events of an NDJSON body, one per non-blank line. Raises BatchRefused (413)
    before decoding anything when there are more than max_batch."""
    if count_ndjson_events(data, max_batch + 1) > max_batch:
        raise too_many(max_batch)
    for line in _NDJSON_LINE.finditer(data):
        if line.end() - line.start() > MAX_EVENT_BYTES:
            yield None, f"line is larger than {MAX_EVENT_BYTES} bytes (the limit of one event)"
            continue
        try:
            yield loads(line.group()), None
        except UnicodeDecodeError:
            yield None, "line is not UTF-8"
        except (ValueError, RecursionError) as exc:
            yield None, f"line is not JSON ({exc})"


# -- JSON array -----------------------------------------------------------------------------


def _position(data: bytes, offset: int) -> str:
    """Where offset is, the way json's own errors say it (in bytes, not characters)."""
    line = data.count(b"\n", 0, offset) + 1
    column = offset - (data.rfind(b"\n", 0, offset) + 1) + 1
    return f"line {line} column {column} (byte {offset})"


def _malformed(data: bytes, message: str, offset: int) -> BatchRefused:
    return BatchRefused(400, f"malformed JSON: {message}: {_position(data, offset)}")


def _byte_length(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8"))


# Stand for elements not decoded (JSON null is None): one larger than an event may be,
# and one whose end is not even within a whole window.
OVERSIZE = object()
ENDLESS = object()
# Characters are at most 4 bytes: an element of no more characters than this fits.
_SURELY_SMALL = MAX_EVENT_BYTES // 4
_TOO_LARGE = f"event is larger than {MAX_EVENT_BYTES} bytes (the limit of one event)"


class _ArrayReader:
    """Reads a JSON array from a window of the body's bytes at a time, decoded to text.

    Elements are decoded from the window with ``raw_decode``; an element that the
    window's end may have cut is decoded again from a window that starts at it. So the
    decoder never sees more than WINDOW_BYTES of the body at once, and only the bytes of
    one window are ever decoded to text.
    """

    def __init__(self, data: bytes):
        self.data = data
        self.start = 0  # the window's first byte in data
        self.text = ""  # the window, decoded
        self.cut = True  # whether the body goes on after the window
        self.index = 0  # the reading position, in characters of text
        self._load(0)

    def _load(self, offset: int) -> None:
        """Moves the window to start at byte offset. A character cut in two by the
        window's end is left for the next window; any other byte that is not UTF-8 ends
        the request."""
        chunk = self.data[offset : offset + WINDOW_BYTES]
        self.start, self.index = offset, 0
        self.cut = offset + WINDOW_BYTES < len(self.data)
        try:
            self.text = chunk.decode("utf-8")
        except UnicodeDecodeError as exc:
            if not (self.cut and exc.end == len(chunk) and exc.reason == "unexpected end of data"):
                raise BatchRefused(400, f"malformed JSON: the body is not UTF-8 (byte {offset + exc.start})") from None
            self.text = chunk[: exc.start].decode("utf-8")

    def offset(self, index: int | None = None) -> int:
        """The byte offset in data of a position in the window (default: the current one)."""
        index = self.index if index is None else index
        return self.start + _byte_length(self.text[:index])

    def skip_space(self) -> None:
        while True:
            self.index = _JSON_SPACE.match(self.text, self.index).end()  # type: ignore[union-attr]
            if self.index < len(self.text) or not self.cut:
                return
            self._load(self.offset())

    def next_char(self) -> str:
        """The character at the reading position after whitespace ('' at the end)."""
        self.skip_space()
        return self.text[self.index : self.index + 1]

    def element(self, number: int) -> tuple[Any, str]:
        """The element at the reading position (OVERSIZE for one larger than
        MAX_EVENT_BYTES) and the delimiter after it (',', ']', or '' for none), reading
        on after both; (ENDLESS, '') without moving on when the element's end is beyond
        a whole window."""
        while True:
            try:
                value, end = _DECODER.raw_decode(self.text, self.index)
            except json.JSONDecodeError as exc:
                if not self._maybe_cut(exc.pos, exc.msg):
                    raise _malformed(self.data, exc.msg, self.offset(exc.pos)) from None
            except RecursionError:
                raise BatchRefused(400, f"malformed JSON: event {number} is nested too deeply") from None
            except ValueError as exc:  # NaN, Infinity
                raise BatchRefused(400, f"malformed JSON: {exc} (event {number})") from None
            else:
                # A number that fills the window may go on after it.
                if not (self.cut and end == len(self.text)):
                    return self._taken(value, end), self._delimiter()
            if self.index == 0:  # the whole window was not enough
                return ENDLESS, ""
            self._load(self.offset())
            self.skip_space()

    def _maybe_cut(self, position: int, message: str) -> bool:
        """Whether a decoding error may be only the window's end: something missing in
        its last 6 characters (an escape cut in two), or a string it left open."""
        return self.cut and (position >= len(self.text) - 6 or message.startswith("Unterminated string"))

    def _taken(self, value: Any, end: int) -> Any:
        long = end - self.index > _SURELY_SMALL
        too_large = long and _byte_length(self.text[self.index : end]) > MAX_EVENT_BYTES
        self.index = end
        return OVERSIZE if too_large else value

    def _delimiter(self) -> str:
        """The ',' or ']' after an element, and the whitespace around it, read."""
        while True:
            match = _DELIMITER.match(self.text, self.index)
            delimiter = match.group(1)  # type: ignore[union-attr]
            if delimiter or match.end() < len(self.text) or not self.cut:  # type: ignore[union-attr]
                self.index = match.end()  # type: ignore[union-attr]
                return delimiter
            self._load(self.offset(match.end()))  # type: ignore[union-attr]


def json_array_items(data: bytes, max_batch: int) -> Iterator[Item]:
    """The elements of a JSON array body, decoded and yielded one by one. Raises
    BatchRefused for a body that is not an array, malformed JSON, or more than
    max_batch elements (413, as soon as element max_batch + 1 begins)."""
    reader = _ArrayReader(data)
    if reader.next_char() != "[":
        raise BatchRefused(400, "a batch must be a JSON array of events (or NDJSON)")
    reader.index += 1
    if reader.next_char() == "]":
        reader.index += 1
    else:
        scan, match_delimiter = _DECODER.scan_once, _DELIMITER.match
        text, index = reader.text, reader.index
        for number in itertools.count():
            if number == max_batch:
                raise too_many(max_batch)
            # The usual case in as few steps as possible: a small element, and its
            # delimiter, well inside the window. Anything else goes the careful way.
            try:
                value, end = scan(text, index)
            except Exception:  # noqa: BLE001  the careful way says what is wrong
                end = len(text)
            if end - index <= _SURELY_SMALL:
                match = match_delimiter(text, end)
                delimiter, after = match.group(1), match.end()  # type: ignore[union-attr]
                if delimiter and after < len(text):
                    index = after
                    yield value, None
                    if delimiter == "]":
                        break
                    continue
            reader.index = index
            value, delimiter = reader.element(number)
            text, index = reader.text, reader.index
            if value is ENDLESS:
                # Where it ends is unknown without decoding all of it: the scan stops here.
                yield None, f"{_TOO_LARGE}; the events after it were not read"
                return
            yield (None, _TOO_LARGE) if value is OVERSIZE else (value, None)
            if not delimiter:
                raise _malformed(data, "Expecting ',' delimiter", reader.offset())
            if delimiter == "]":
                break
        reader.index = index
    if reader.next_char() != "":
        raise _malformed(data, "Extra data", reader.offset())
