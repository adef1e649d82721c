"""An existing lake keeps working: a compliance_alerts table of the previous version gains the
alert lifecycle columns (Delta schema evolution) and its rows become open, acknowledgeable
alerts."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from pyspark.sql import types as T

from apps.alerts import acknowledge_alert, query_alerts
from streaming import tables
from streaming.notes.classify import compliance_alert_id
from tests.conftest import make_test_config

pytestmark = pytest.mark.component

LIFECYCLE = ("alert_id", "status", "updated_at", "closed_at", "close_reason", "published_at")


def test_an_older_compliance_table_is_upgraded_in_place(spark, tmp_path):
    cfg = make_test_config(tmp_path)
    old_schema = T.StructType(
        [f for f in tables.COMPLIANCE_ALERT_SCHEMA.fields if f.name not in LIFECYCLE]
    )
    stamp = dt.datetime(2024, 3, 1, tzinfo=dt.timezone.utc)
    rows = [
        ("C1", "n1", "pump", "Iron pump", 0.9, stamp, "component-compliance", "1", stamp),
        ("C2", "n2", "hose", "Plastic hose", 0.8, stamp, "component-compliance", "1", stamp),
    ]
    location = cfg.storage.table(tables.COMPLIANCE_ALERTS)
    spark.createDataFrame(rows, old_schema).write.format("delta").save(location)
    # Before the upgrade the CLI still lists them (every stored alert is open).
    assert len(query_alerts(cfg, "compliance")) == 2

    tables.ensure_tables(spark, cfg)
    upgraded = spark.read.format("delta").load(location)
    assert upgraded.columns == tables.COMPLIANCE_ALERT_SCHEMA.fieldNames()
    stored = {r.note_id: r for r in upgraded.collect()}
    assert {r.status for r in stored.values()} == {"open"}
    assert stored["n1"].alert_id == compliance_alert_id("C1", "n1")
    assert stored["n1"].published_at is None  # the outbox sends it at the next start

    acked = compliance_alert_id("C2", "n2")
    assert acknowledge_alert(cfg, acked, by="O'Brien", why="replaced", kind="compliance") == 1
    assert list(query_alerts(cfg, "compliance")["note_id"]) == ["n1"]
    closed = query_alerts(cfg, "compliance", include_closed=True).set_index("alert_id")
    assert closed.at[acked, "status"] == "acknowledged"
    assert closed.at[acked, "close_reason"] == "acknowledged by O'Brien: replaced"
    # A second start changes nothing more.
    version = spark.sql(f"DESCRIBE HISTORY delta.`{location}`").first().version
    tables.ensure_tables(spark, cfg)
    assert spark.sql(f"DESCRIBE HISTORY delta.`{location}`").first().version == version


def test_a_table_whose_creation_was_killed_is_created_afresh(spark, tmp_path):
    """A job SIGKILLed while creating `telemetry` leaves a `_delta_log` with no commit in it
    (only `_staged_commits/`): the next start creates the table instead of failing forever."""
    cfg = make_test_config(tmp_path)
    location = cfg.storage.table(tables.TELEMETRY)
    log_dir = Path(location) / "_delta_log"
    (log_dir / "_staged_commits").mkdir(parents=True)
    (log_dir / ".00000000000000000000.json.crc.tmp").write_text("")

    tables.ensure_tables(spark, cfg)
    created = spark.read.format("delta").load(location)
    assert created.columns == tables.TELEMETRY_SCHEMA.fieldNames()
    assert created.count() == 0


def test_a_table_with_commits_is_never_cleared(spark, tmp_path):
    """Only a log without any commit is taken for an aborted creation."""
    cfg = make_test_config(tmp_path)
    tables.ensure_tables(spark, cfg)
    location = cfg.storage.table(tables.TELEMETRY)
    version = spark.sql(f"DESCRIBE HISTORY delta.`{location}`").first().version
    (Path(location) / "_delta_log" / "_staged_commits").mkdir(exist_ok=True)
    tables.ensure_tables(spark, cfg)
    assert spark.sql(f"DESCRIBE HISTORY delta.`{location}`").first().version == version
