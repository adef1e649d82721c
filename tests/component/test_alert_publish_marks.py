"""The alert tables' delta-rs operations scale to a backlog's micro-batch: marking published
openings, and looking up the alerts of 100k batteries and cars."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pyarrow as pa
import pytest
from deltalake import write_deltalake
from pyspark.sql.pandas.types import to_arrow_schema

from streaming import tables
from streaming.battery.alert_table import SQL_IN_LIMIT, AlertTable
from streaming.notes.classify import compliance_alert_id
from streaming.notes.flow import insert_compliance_alerts
from tests.conftest import make_test_config

pytestmark = pytest.mark.component

# One micro-batch of a notes backlog (200k notes per trigger, about half non-compliant) opens
# this many alerts; an `alert_id IN (...)` update of them killed the driver with SIGSEGV.
BACKLOG_OPENINGS = 100_000


def test_a_backlogs_openings_are_marked_published_in_one_go(spark, tmp_path) -> None:
    cfg = make_test_config(tmp_path)
    location = tables.ensure_tables(spark, cfg)[tables.COMPLIANCE_ALERTS]
    written = dt.datetime(2024, 3, 1, tzinfo=dt.timezone.utc)
    cars = [f"C{i % 5_000}" for i in range(BACKLOG_OPENINGS)]
    notes = [f"N{i}" for i in range(BACKLOG_OPENINGS)]
    alerts = pd.DataFrame(
        {
            "car_id": cars,
            "note_id": notes,
            "component": "water pump",
            "text": "cast iron body, mfd '94",
            "probability": 0.97,
            "written_at": written,
            "model_name": "component-compliance",
            "model_version": "1",
            "alert_id": [compliance_alert_id(c, n) for c, n in zip(cars, notes, strict=True)],
        }
    )
    assert insert_compliance_alerts(location, alerts, "test-notes", 0) == BACKLOG_OPENINGS
    table = AlertTable(location, schema=tables.COMPLIANCE_ALERT_SCHEMA)
    # A few stay unsent: marking is by id, never the whole table.
    sent = list(alerts["alert_id"][:-3])
    at = dt.datetime(2024, 3, 1, 12, tzinfo=dt.timezone.utc)

    assert table.mark_published(sent, at) == len(sent)
    assert sorted(table.unpublished()["alert_id"]) == sorted(alerts["alert_id"][-3:])
    marked = table.rows("published_at IS NOT NULL")
    assert len(marked) == len(sent) and set(marked["published_at"]) == {pd.Timestamp(at)}
    # Marked ones keep their first time: a second send (after a crash) changes nothing.
    assert table.mark_published(sent[:10], at + dt.timedelta(hours=1)) == 0


def test_a_backlogs_alert_lookup_of_100k_batteries_finds_the_same_rows(spark, tmp_path) -> None:
    cfg = make_test_config(tmp_path)
    location = tables.ensure_tables(spark, cfg)[tables.ALERTS]
    schema = to_arrow_schema(tables.ALERT_SCHEMA, timezone="UTC")
    stored = {name: [None] * 4 for name in schema.names}
    stored.update(
        alert_id=["a1", "a2", "a3", "a4"],
        battery_id=["B1", "B2", "B3", "B4"],
        car_id=["C1", "C2", "C3", "C4"],
        status=["open", "closed", "open", "acknowledged"],
        alert_date=[dt.date(2024, 3, 1)] * 4,
    )
    write_deltalake(location, pa.Table.from_pydict(stored, schema=schema), mode="append")
    table = AlertTable(location)
    # B2's alerts whatever their status; C3's and C4's open ones only (C4's is acknowledged).
    few = table.relevant(["B2"], ["C3", "C4"])
    batteries = [f"X{i}" for i in range(BACKLOG_OPENINGS)] + ["B2"]
    cars = [f"Y{i}" for i in range(BACKLOG_OPENINGS)] + ["C3", "C4"]
    assert len(batteries) + len(cars) > SQL_IN_LIMIT

    many = table.relevant(batteries, cars)

    assert sorted(few["alert_id"]) == sorted(many["alert_id"]) == ["a2", "a3"]
    assert list(many.columns) == list(few.columns) == schema.names
