"""The aggregate's run lock, as a unit: renewals that time out are retried and logged, a
renewal that does not apply or a lock unrenewed for longer than its TTL is lost for good,
and the heartbeat survives driver errors. The lock against the real Cassandra (a run whose
lock is taken away) is in test_aggregate_job.py."""

from __future__ import annotations

import contextlib
import io
import itertools

import hypothesis
import pytest
from cassandra import ConsistencyLevel, OperationTimedOut, WriteTimeout, WriteType
from hypothesis import given
from hypothesis import strategies as st

from jobs.aggregate import parse_dates
from jobs.aggregate_lock import LockLost, RunLock
from orderlog.config import load_settings


class ScriptedLock(RunLock):
    """A RunLock whose renewals answer from a script: (applied, holder) or an exception.
    Its clock is fake: each renewal takes 10 ms, each pause advances it."""

    def __init__(self, outcomes, ttl: int = 30):
        self.now = 0.0
        self.warnings: list[str] = []
        self.outcomes = iter(outcomes)
        self.renewals = 0
        super().__init__(
            None, "me", ttl, clock=lambda: self.now, sleep=self._pause, warn=self.warnings.append  # type: ignore[arg-type]
        )

    def _pause(self, seconds: float) -> bool:
        self.now += seconds
        return False

    def _try_renew(self) -> tuple[bool, str | None]:
        self.now += 0.01
        self.renewals += 1
        outcome = next(self.outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def test_a_renewal_that_times_out_is_retried_and_logged() -> None:
    contention = WriteTimeout(
        "cas", consistency=ConsistencyLevel.LOCAL_SERIAL, required_responses=1, received_responses=0,
        write_type=WriteType.CAS,
    )  # fmt: skip
    lock = ScriptedLock([OperationTimedOut("timed out"), contention, (True, None)])
    lock.ensure_held()
    assert lock.lost is None and lock.renewals == 3
    assert lock.warnings == [
        "aggregate: warning: renewing the lock failed (OperationTimedOut); retrying in 1 s",
        "aggregate: warning: renewing the lock failed (WriteTimeout); retrying in 2 s",
    ]


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ((False, "other-host:42"), "another run holds it now (other-host:42)"),
        ((False, None), "its row expired or was deleted"),
    ],
)
def test_a_renewal_that_does_not_apply_loses_the_lock_for_good(answer, reason) -> None:
    lock = ScriptedLock([answer])  # one answer only: a second renewal would fail the test
    for _ in range(2):  # still lost the second time, without asking Cassandra again
        with pytest.raises(LockLost) as lost:
            lock.ensure_held()
        assert lost.value.reason == reason
    assert lock.renewals == 1
    assert lock.warnings == [
        f"aggregate: warning: the lock is no longer ours ({reason}); the run stops before its next write"
    ]


def test_a_lock_not_renewed_for_longer_than_its_ttl_is_lost() -> None:
    lock = ScriptedLock(itertools.repeat(OperationTimedOut("timed out")), ttl=30)
    with pytest.raises(LockLost) as lost:
        lock.ensure_held()
    # Pauses of 1, 2, 4, 5, 5, ... s (at most TTL/6) until 30 s have passed without a renewal.
    assert lost.value.reason == (
        "it was not renewed for 32 s, longer than its TTL of 30 s (last error: OperationTimedOut), "
        "so another run may hold it"
    )
    assert lock.renewals == 8
    assert lock.warnings[-1].startswith("aggregate: warning: the lock is no longer ours (it was not renewed for 32 s")


def test_the_heartbeat_survives_driver_errors() -> None:
    answers = itertools.chain([OperationTimedOut("t"), OperationTimedOut("t")], itertools.repeat((True, None)))
    lock = ScriptedLock(answers, ttl=30)
    beats = []

    def pause_until_the_fifth_renewal(seconds: float) -> bool:
        beats.append(seconds)
        lock.now += seconds
        return lock.renewals >= 5  # then the run releases the lock

    lock._sleep = pause_until_the_fifth_renewal
    lock._heartbeat()  # returns only when released: the errors did not end it
    assert lock.lost is None and lock.renewals == 5
    assert beats == [10, 1, 2, 10, 10, 10]  # every TTL/3; retries after 1 s, then 2 s
    assert lock.warnings == [
        "aggregate: warning: renewing the lock failed (OperationTimedOut); retrying in 1 s",
        "aggregate: warning: renewing the lock failed (OperationTimedOut); retrying in 2 s",
    ]


@hypothesis.settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(["--date", "--from", "--to", "--lock-ttl"]),
            st.text(max_size=12),
            st.integers(-5, 100_000).map(str),
            st.dates().map(str),
        ),
        max_size=6,
    )
)
def test_any_arguments_are_dates_or_one_clear_error(argv) -> None:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            dates, args = parse_dates(argv, load_settings(environ={}))
        except SystemExit as exit_:
            assert exit_.code in (0, 2)  # 0: --help among them
            if exit_.code == 2:
                assert err.getvalue().strip().splitlines()[-1].startswith("aggregate: error: ")
            return
    assert 30 <= args.lock_ttl <= 86_400
    assert dates is None or dates == sorted(dates)
