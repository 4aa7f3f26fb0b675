"""Late orders end to end, on the real Kafka, Spark and Cassandra: a date is aggregated,
orders for it arrive later through the streaming job, the viewer says so, and the nightly
run (`./spark-submit.sh aggregate`, no date) folds them in: the viewer's numbers and every
table then equal the from-scratch model, and the ledger says the run was for late orders."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import date
from pathlib import Path

import pytest

from jobs.aggregate import aggregate
from orderlog.menu import JAPANESE, WESTERN
from tests.test_aggregate_model import Order, actual_state, day_counts, expected_state, order
from tests.test_streaming_integration import produce, run_available
from tests.viewer_data import viewer_app
from viewer.db import close_app

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
EARLY, LATE_DAY = date(2025, 5, 19), date(2025, 5, 20)  # long before yesterday
J, W = JAPANESE, WESTERN

FIRST = [
    order(EARLY, "ann", J), order(EARLY, "ben", W), order(EARLY, "ben", W),
    order(LATE_DAY, "ann", W), order(LATE_DAY, "cho", J), order(LATE_DAY, "cho", J), order(LATE_DAY, "dan", W),
]  # fmt: skip
# A POS that was offline: 7 orders of LATE_DAY arrive after the date was aggregated. They
# turn ann from even (1:1) to Western, dan from Western to Japanese, and add eve.
LATE = [order(LATE_DAY, "ann", W, 19), order(LATE_DAY, "ann", W, 19), order(LATE_DAY, "eve", J, 21)] + [
    order(LATE_DAY, "dan", J) for _ in range(4)
]


def stream(spark, settings, topic: str, checkpoint: Path, orders: list[Order]) -> None:
    """The orders as clients send them, through Kafka and the streaming job's own writer."""
    values = [
        json.dumps({"order_id": oid, "user_id": user, "menu_type": menu,
                    "timestamp": f"{day}T{hour:02d}:30:00+09:00"})  # in Tokyo, the tests' business zone
        for day, oid, user, menu, hour in orders
    ]
    produce(settings, topic, [(None, v.encode()) for v in values])
    run_available(spark, settings, topic, str(checkpoint))


def daily(client, day: date) -> tuple[dict, str]:
    api = client.get(f"/api/daily_order_summaries?date={day}")
    page = client.get(f"/daily?date={day}")
    assert api.status_code == 200 and page.status_code == 200
    return api.get_json(), page.get_data(as_text=True)


def numbers(body: dict) -> tuple[int, int, int, int, int]:
    return body["japanese"], body["western"], body["total"], body["users"], body["late_orders"]


def test_the_nightly_run_folds_in_orders_that_arrived_after_their_date_was_aggregated(
    spark, settings, kafka_topic, clean_cassandra, tmp_path
) -> None:
    checkpoint = tmp_path / "checkpoint"
    stream(spark, settings, kafka_topic, checkpoint, FIRST)
    aggregate(spark, settings, [EARLY, LATE_DAY], log=lambda line: None)
    stream(spark, settings, kafka_topic, checkpoint, LATE)

    app = viewer_app(settings)
    try:
        client = app.test_client()
        client.set_cookie("lang", "en")  # the page's English sentences below
        body, html = daily(client, LATE_DAY)
        assert numbers(body) == (2, 2, 4, 3, 7)  # the numbers of the run, and 7 orders since
        assert '<strong id="day-late-count">7</strong> orders arrived after the last run (at ' in html
        assert "the next nightly run folds them in" in html
        assert numbers(daily(client, EARLY)[0]) == (1, 2, 3, 2, 0)

        nightly = subprocess.run(
            ["./spark-submit.sh", "aggregate"], cwd=ROOT, env=os.environ.copy(), capture_output=True, text=True,
            timeout=900,
        )  # fmt: skip
        assert nightly.returncode == 0, nightly.stdout[-3000:] + nightly.stderr[-3000:]
        runs = list(clean_cassandra.execute("SELECT order_date, trigger, status, started_at FROM aggregate_runs"))
        (yesterday,) = {r.order_date.date() for r in runs if r.trigger == "nightly"}
        plan = [line for line in nightly.stdout.splitlines() if line.startswith("  20")]
        assert plan[0].startswith(f"  {LATE_DAY}: 7 orders arrived after its last run (started ")
        assert plan[1:] == [f"  {yesterday}: yesterday"]  # EARLY had nothing new: not redone

        body, html = daily(client, LATE_DAY)
        assert numbers(body) == (7, 4, 11, 4, 0)  # now with the late orders
        assert 'id="day-late"' not in html
    finally:
        close_app(app)

    by_date = sorted((r.order_date.date(), r.trigger, r.status) for r in runs)
    assert by_date == sorted([
        (EARLY, "requested", "succeeded"),
        (LATE_DAY, "requested", "succeeded"),
        (LATE_DAY, "late-orders", "succeeded"),
        (yesterday, "nightly", "succeeded"),
    ])  # fmt: skip
    counts = day_counts(FIRST + LATE)
    expected = expected_state({EARLY: counts[EARLY], LATE_DAY: counts[LATE_DAY], yesterday: {}})
    assert actual_state(clean_cassandra) == expected
    assert expected["user_preferences"]["ann"][2] == WESTERN  # the late orders changed her segment
