"""The aggregate job's run lock: one row of aggregate_lock, taken with a lightweight
transaction (IF NOT EXISTS, with a TTL), renewed by a heartbeat thread, and renewed again
before every write of the run.

Two runs writing at once would break the segment-size chain, so a run that cannot prove it
still holds the lock stops before its next write: a renewal that does not apply (the row
expired, or another run took it) or a lock left unrenewed for longer than its TTL (the
driver kept failing) makes the next ``ensure_held`` raise LockLost. Driver errors (timeouts,
a node down) are retried and logged; they never kill the heartbeat.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from cassandra.cluster import Session

from orderlog.logs import report

LOCK_NAME = "aggregate"
# The lock's TTL, in seconds, that the command line accepts: long enough for a few
# renewals to fail and be retried, short enough that a dead run's lock frees the same day.
MIN_TTL_SECONDS = 30
MAX_TTL_SECONDS = 86_400


class LockHeld(RuntimeError):
    """Another aggregate run holds the lock."""


class LockLost(RuntimeError):
    """This run no longer holds the lock: it must not write anything more."""

    def __init__(self, reason: str, before: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.before = before  # the write it stopped before, when known


def _warn(line: str) -> None:
    report("aggregate", line.removeprefix("aggregate: "), level="warning")


class RunLock:
    """The lock of one run. ``clock`` and ``sleep`` are injectable for the unit tests;
    ``sleep(seconds)`` returns True when the lock is being released."""

    def __init__(
        self,
        session: Session,
        owner: str,
        ttl_seconds: int,
        *,
        name: str = LOCK_NAME,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], bool] | None = None,
        warn: Callable[[str], None] = _warn,
    ):
        self.session = session
        self.owner = owner
        self.ttl = ttl_seconds
        self.name = name
        self._clock = clock
        self._stop = threading.Event()
        self._sleep = sleep or self._stop.wait
        self._warn = warn
        self._mutex = threading.Lock()  # one renewal at a time: the heartbeat's or a check's
        self._thread: threading.Thread | None = None
        self.acquired_at: datetime | None = None
        self._renewed_at = 0.0  # clock() when the last renewal that applied was sent
        self._lost: LockLost | None = None
        self._last_error = "none"

    # -- taking and giving back --------------------------------------------------------
    def acquire(self) -> None:
        now = datetime.now(UTC)
        statement = self.session.prepare(
            "INSERT INTO aggregate_lock (name, owner, acquired_at) VALUES (?, ?, ?) IF NOT EXISTS USING TTL ?"
        )
        sent = self._clock()
        result = self.session.execute(statement, (self.name, self.owner, now, self.ttl)).one()
        if not result[0]:
            holder = self.session.execute(
                self.session.prepare("SELECT owner, acquired_at FROM aggregate_lock WHERE name = ?"), (self.name,)
            ).one()
            who = f"{holder.owner} since {holder.acquired_at:%Y-%m-%d %H:%M:%S} UTC" if holder else "?"
            raise LockHeld(
                f"another aggregate run holds the lock ({who}); it expires {self.ttl}s after its holder stops"
            )
        self.acquired_at, self._renewed_at = now, sent
        self._renew_statement = self.session.prepare(
            "UPDATE aggregate_lock USING TTL ? SET owner = ?, acquired_at = ? WHERE name = ? IF owner = ?"
        )
        self._stop.clear()
        self._thread = threading.Thread(target=self._heartbeat, name="aggregate-lock-heartbeat", daemon=True)
        self._thread.start()

    def release(self) -> None:
        """Stops the heartbeat and deletes the row if it is still ours (a conditional
        delete: a lock another run holds now is left alone). Never raises."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        try:
            statement = self.session.prepare("DELETE FROM aggregate_lock WHERE name = ? IF owner = ?")
            self.session.execute(statement, (self.name, self.owner))
        except Exception as exc:  # noqa: BLE001  the TTL frees it anyway
            cause = type(exc).__name__
            self._warn(f"aggregate: warning: could not release the lock ({cause}); it expires in {self.ttl} s")

    # -- keeping it --------------------------------------------------------------------
    def ensure_held(self) -> None:
        """Renews the lock now, so the write that follows starts a whole TTL before it could
        expire; LockLost when this run no longer holds it."""
        with self._mutex:
            self._renew_until_applied()

    @property
    def lost(self) -> LockLost | None:
        return self._lost

    def _heartbeat(self) -> None:
        while not self._sleep(self.ttl / 3):
            with self._mutex:
                try:
                    self._renew_until_applied()
                except LockLost:
                    return  # recorded: the run raises it before its next write

    def _renew_until_applied(self) -> None:
        """One renewal, retried on driver errors until it applies, is refused, or the lock
        has gone unrenewed for longer than its TTL."""
        pause = 1.0
        while True:
            if self._lost is not None:
                raise self._lost
            sent = self._clock()
            unrenewed = sent - self._renewed_at
            if unrenewed > self.ttl:
                self._lose(
                    f"it was not renewed for {unrenewed:.0f} s, longer than its TTL of {self.ttl} s "
                    f"(last error: {self._last_error}), so another run may hold it"
                )
            try:
                applied, holder = self._try_renew()
            except Exception as exc:  # noqa: BLE001  timeouts, a node down: retry, never die
                self._last_error = type(exc).__name__
                self._warn(
                    f"aggregate: warning: renewing the lock failed ({self._last_error}); retrying in {pause:.0f} s"
                )
                if self._sleep(pause):
                    return  # released meanwhile
                pause = min(pause * 2, max(self.ttl / 6, 1.0))
                continue
            if not applied:
                self._lose(f"another run holds it now ({holder})" if holder else "its row expired or was deleted")
            self._renewed_at = sent
            return

    def _try_renew(self) -> tuple[bool, str | None]:
        """(applied, the current owner when not applied). A renewal must answer well within
        the TTL, so it gets a timeout of its own."""
        result = self.session.execute(
            self._renew_statement,
            (self.ttl, self.owner, self.acquired_at, self.name, self.owner),
            timeout=min(10.0, self.ttl / 3),
        ).one()
        applied = bool(result[0])
        holder = None if applied or len(result) < 2 else result[1]
        return applied, holder

    def _lose(self, reason: str) -> None:
        self._lost = LockLost(reason)
        self._warn(f"aggregate: warning: the lock is no longer ours ({reason}); the run stops before its next write")
        raise self._lost
