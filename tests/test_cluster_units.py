"""The local cluster's start-up rules that need no cluster (unit tests, run by make test)."""

from __future__ import annotations

from pathlib import Path

import pytest

from local_stack.cluster import Cluster
from local_stack.stack import StackError

SEEDS_LOST = "java.lang.IllegalStateException: Unable to contact any seeds: [/127.0.0.1:7000]\n"


class JoiningNode:
    """A stand-in for a Cassandra node: its first starts fail as a node's does, logging
    ``failure`` after the launch marker, then it starts."""

    def __init__(self, log_file: Path, failure: str, failures: int = 1):
        self.label, self.log_file, self.failure = "cassandra3", log_file, failure
        self.failures, self.starts = failures, 0

    def start(self, java: str) -> bool:
        self.starts += 1
        with open(self.log_file, "a") as log:
            log.write(f"\n==== starting {self.label}: now ====\nINFO booting\n")
            if self.starts <= self.failures:
                log.write(self.failure + "INFO Cassandra shutdown complete\n")
        if self.starts <= self.failures:
            raise StackError(f"{self.label} exited with code 3 while starting")
        return True


def test_a_node_that_had_not_heard_from_the_seed_is_started_again(tmp_path, monkeypatch):
    monkeypatch.setattr("local_stack.cluster.time.sleep", lambda seconds: None)
    node, lines = JoiningNode(tmp_path / "cassandra.log", SEEDS_LOST), []
    assert Cluster._start_joining(node, "java", lines.append) is True  # type: ignore[arg-type]
    assert node.starts == 2
    assert lines == ["cassandra3 had not heard from the seed when joining; starting it again"]


def test_any_other_failure_and_a_second_one_stop_the_start(tmp_path, monkeypatch):
    monkeypatch.setattr("local_stack.cluster.time.sleep", lambda seconds: None)
    other = JoiningNode(tmp_path / "other.log", "ERROR Invalid yaml\n")
    with pytest.raises(StackError):
        Cluster._start_joining(other, "java", lambda line: None)  # type: ignore[arg-type]
    assert other.starts == 1
    # An old failure earlier in the log does not count: only what this start logged.
    (tmp_path / "old.log").write_text("==== starting cassandra3: before ====\n" + SEEDS_LOST)
    stale = JoiningNode(tmp_path / "old.log", "ERROR Invalid yaml\n")
    with pytest.raises(StackError):
        Cluster._start_joining(stale, "java", lambda line: None)  # type: ignore[arg-type]
    twice = JoiningNode(tmp_path / "twice.log", SEEDS_LOST, failures=2)
    with pytest.raises(StackError):
        Cluster._start_joining(twice, "java", lambda line: None)  # type: ignore[arg-type]
    assert twice.starts == 2
