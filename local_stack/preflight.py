"""The benchmarks' check before they load anything (bench/): the servers they measure answer.
Without it a benchmark started before `make up` dies deep in a driver with a traceback;
with it, it says in one line which server does not answer and how to start it."""

from __future__ import annotations

from orderlog.cassandra_session import CassandraUnavailable, connect_checked, shutdown
from orderlog.config import Settings
from orderlog.kafka_admin import brokers_answer
from orderlog.kafka_admin import refusal as kafka_refusal
from orderlog.kafka_security import kafka_python_security
from orderlog.logs import report

HOW_TO_START = "start the local stack with `make up`, or point the ORDERLOG_* settings at a running one"


def stack_problem(settings: Settings, *, kafka: bool, cassandra: bool) -> str | None:
    """Why the benchmark cannot run (the first server that does not answer), or None."""
    if cassandra:
        try:
            shutdown(connect_checked(settings))
        except CassandraUnavailable as exc:
            return str(exc)
    if kafka:
        answers, why = brokers_answer(settings.kafka.bootstrap_list, 3.0, client_id="orderlog-bench",
                                      security=kafka_python_security(settings.kafka))
        if not answers:
            where = settings.kafka.bootstrap_servers
            return kafka_refusal(settings.kafka) or f"Kafka at {where} does not answer ({why})"
    return None


def require_stack(prog: str, settings: Settings, *, kafka: bool = False, cassandra: bool = False) -> None:
    """Exits 2 with one line when a server the benchmark needs does not answer."""
    problem = stack_problem(settings, kafka=kafka, cassandra=cassandra)
    if problem is not None:
        report(prog, f"error: {problem}; {HOW_TO_START}")
        raise SystemExit(2)
