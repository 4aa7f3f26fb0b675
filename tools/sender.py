"""Sends events through the ingest API's batch route, at a rate, with retries.

``POST /api/logs`` with a JSON array. The API answers 202 with one order_id per event,
400 naming the index of every invalid event (the whole batch is refused then: the valid
ones are sent again without the invalid ones), 413 when the body is too large (the batch
is halved), and 503 with ``Retry-After`` while Kafka is unavailable (sent again after
that wait; connection errors and timeouts likewise, with exponential backoff). Sending
again is safe: every generated event carries its own order_id.
"""

from __future__ import annotations

import functools
import http.client
import json
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

BATCH_ROUTE = "/api/logs"
SINGLE_ROUTE = "/api/log"
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 10.0


class SendError(RuntimeError):
    """Sending stopped: the API kept failing for longer than allowed, or answered
    something a client cannot fix by sending again."""


@dataclass
class SendResult:
    sent: int = 0
    acknowledged: dict[int, str] = field(default_factory=dict)  # event index -> order_id
    refused: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # index -> errors
    requests: int = 0
    retries: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: Any  # parsed JSON, or the text when it is not JSON


def post_json(url: str, payload: Any, timeout: float, token: str | None = None) -> Response:
    """POST ``payload`` as JSON; connection problems raise OSError."""
    data = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return Response(reply.status, dict(reply.headers), _decode(reply.read()))
    except urllib.error.HTTPError as exc:
        try:
            return Response(exc.code, dict(exc.headers or {}), _decode(exc.read()))
        finally:
            exc.close()


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


def retry_after(headers: dict[str, str], attempt: int) -> float:
    """The server's Retry-After (seconds), else exponential backoff."""
    for key, value in headers.items():
        if key.lower() == "retry-after":
            try:
                return min(max(float(value), 0.0), BACKOFF_MAX * 6)
            except ValueError:
                break
    return min(BACKOFF_FIRST * 2**attempt, BACKOFF_MAX)


class Sender:
    def __init__(
        self,
        base_url: str,
        *,
        rate: float = 2000,
        batch_size: int = 200,
        max_wait: float = 300.0,
        timeout: float = 30.0,
        token: str | None = None,
        post: Callable[[str, Any, float], Response] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        progress: Callable[[int], None] | None = None,
    ):
        if batch_size < 1:
            raise ValueError(f"batch size must be at least 1 (got {batch_size})")
        if rate < 0:
            raise ValueError(f"rate must not be negative (got {rate})")
        self.base_url = base_url.rstrip("/")
        self.rate = rate
        self.batch_size = batch_size
        self.max_wait = max_wait
        self.timeout = timeout
        self._post = post or functools.partial(post_json, token=token)
        self._sleep = sleep
        self._clock = clock
        self._progress = progress or (lambda n: None)

    def send(self, payloads: Sequence[Any]) -> SendResult:
        """Send every payload; the result says which were acknowledged and which refused."""
        result = SendResult(sent=len(payloads))
        start = self._clock()
        first_posted = 0
        work: deque[list[int]] = deque(
            list(range(i, min(i + self.batch_size, len(payloads))))
            for i in range(0, len(payloads), self.batch_size)
        )
        fresh = set(range(len(payloads)))
        while work:
            batch = work.popleft()
            new = [i for i in batch if i in fresh]
            if new and self.rate > 0:  # pace first sends only: a resend is not new load
                due = start + (first_posted + len(new)) / self.rate
                delay = due - self._clock()
                if delay > 0:
                    self._sleep(delay)
            fresh.difference_update(new)
            first_posted += len(new)
            self._send_batch(payloads, batch, work, result)
        result.seconds = self._clock() - start
        return result

    def _send_batch(
        self, payloads: Sequence[Any], batch: list[int], work: deque[list[int]], result: SendResult
    ) -> None:
        pending = batch
        waited = 0.0
        attempt = 0
        while pending:
            reply = self._call(BATCH_ROUTE, [payloads[i] for i in pending], result)
            if reply is not None and reply.status == 202:
                order_ids = reply.body.get("order_ids") if isinstance(reply.body, dict) else None
                if not isinstance(order_ids, list) or len(order_ids) != len(pending):
                    raise SendError(f"202 without one order_id per event: {str(reply.body)[:200]}")
                for i, order_id in zip(pending, order_ids, strict=True):
                    result.acknowledged[i] = order_id
                self._progress(len(pending))
                return
            if reply is not None and reply.status == 400:
                bad = _indexed_errors(reply.body, len(pending))
                if bad is None:  # no per-event detail: find the bad ones one by one
                    for i in pending:
                        self._send_single(payloads, i, result)
                    return
                for position, errors in bad.items():
                    result.refused[pending[position]] = errors
                self._progress(len(bad))
                pending = [i for n, i in enumerate(pending) if n not in bad]
                continue
            if reply is not None and reply.status == 413 and len(pending) > 1:
                half = len(pending) // 2
                work.appendleft(pending[half:])
                work.appendleft(pending[:half])
                return
            if reply is not None and reply.status == 413:
                result.refused[pending[0]] = [{"field": "", "reason": "event too large (413)"}]
                self._progress(1)
                return
            waited += self._back_off(reply, attempt, waited, result)
            attempt += 1

    def _send_single(self, payloads: Sequence[Any], i: int, result: SendResult) -> None:
        waited = 0.0
        attempt = 0
        while True:
            reply = self._call(SINGLE_ROUTE, payloads[i], result)
            if reply is not None and reply.status == 202:
                result.acknowledged[i] = str(reply.body.get("order_id", "")) if isinstance(reply.body, dict) else ""
                self._progress(1)
                return
            if reply is not None and reply.status in (400, 413):
                errors = reply.body.get("errors") if isinstance(reply.body, dict) else None
                result.refused[i] = errors or [{"field": "", "reason": str(reply.body)[:300]}]
                self._progress(1)
                return
            waited += self._back_off(reply, attempt, waited, result)
            attempt += 1

    def _back_off(self, reply: Response | None, attempt: int, waited: float, result: SendResult) -> float:
        """Sleeps before retrying a refused-for-now request; returns the seconds slept.
        Raises SendError for an answer that no retry can change, or when waiting is over."""
        if reply is not None and reply.status not in RETRYABLE_STATUS:
            raise SendError(f"ingest API answered {reply.status}: {str(reply.body)[:300]}")
        delay = retry_after(reply.headers if reply else {}, attempt)
        if waited + delay > self.max_wait:
            what = f"HTTP {reply.status}" if reply else "no connection"
            raise SendError(f"gave up after waiting {waited:.0f}s for the ingest API at {self.base_url} ({what})")
        result.retries += 1
        self._sleep(delay)
        return delay

    def _call(self, route: str, body: Any, result: SendResult) -> Response | None:
        result.requests += 1
        try:
            return self._post(self.base_url + route, body, self.timeout)
        except (OSError, http.client.HTTPException):  # refused, reset, timed out: sent again (ids make it safe)
            return None


def _indexed_errors(body: Any, size: int) -> dict[int, list[dict[str, Any]]] | None:
    """Errors of a 400 grouped by the event's index in the batch; None without indexes."""
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list) or not errors:
        return None
    grouped: dict[int, list[dict[str, Any]]] = {}
    for error in errors:
        index = error.get("index") if isinstance(error, dict) else None
        if not isinstance(index, int) or not 0 <= index < size:
            return None
        grouped.setdefault(index, []).append({k: v for k, v in error.items() if k != "index"})
    return grouped
