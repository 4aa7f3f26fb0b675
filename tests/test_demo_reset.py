"""`make demo-reset` (tools.demo reset) on the real Cassandra: every table of the keyspace
emptied, so that a `make demo` after orders were added to its dates checks out again."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from orderlog.tables import table_names
from tests.conftest import free_ports
from tests.test_aggregate_model import insert_orders
from tools import demo

pytestmark = pytest.mark.integration


def row_counts(session: object) -> dict[str, int]:
    return {t: session.execute(f"SELECT count(*) FROM {t}", timeout=60).one()[0] for t in table_names()}  # type: ignore[attr-defined]


def test_reset_empties_every_table_of_the_keyspace(settings, clean_cassandra, tmp_path) -> None:
    day = date(2025, 5, 31)
    insert_orders(clean_cassandra, [(day, f"o-{i}", f"u-{i % 3}", "japanese") for i in range(20)])
    clean_cassandra.execute(
        "INSERT INTO daily_order_summaries (year, order_date, japanese, western, total, users, aggregated_at) "
        "VALUES (2025, '2025-05-31', 20, 0, 20, 3, %s)",
        (datetime.now(UTC),),
    )
    before = row_counts(clean_cassandra)
    assert before["raw_orders"] == 20 and before["daily_order_summaries"] == 1

    lines: list[str] = []
    demo.reset(settings.replace(paths_var=str(tmp_path)), log=lines.append)

    assert row_counts(clean_cassandra) == dict.fromkeys(table_names(), 0)
    assert lines[-1] == (
        f"  keyspace {settings.cassandra.keyspace}: {len(table_names())} tables emptied; `make demo` starts over"
    )


def test_reset_without_cassandra_says_to_start_it(settings, tmp_path) -> None:
    (port,) = free_ports(1)
    nowhere = settings.replace(paths_var=str(tmp_path), cassandra_port=port)
    with pytest.raises(demo.DemoError) as error:
        demo.reset(nowhere, log=lambda _: None)
    assert str(error.value).startswith(f"Cassandra at 127.0.0.1:{port} does not answer (")
    assert str(error.value).endswith("start it with `make up`, then reset again")
