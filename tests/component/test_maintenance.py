"""`pitstop maintain` compacts the stream's small files without touching what it guarantees."""

from __future__ import annotations

import pytest
from delta.tables import DeltaTable
from pyspark.sql import Row
from pyspark.testing import assertDataFrameEqual

from core.errors import PitstopError
from streaming import tables
from streaming.delta_appends import AppendLedger
from streaming.maintenance import maintain_tables
from tests.conftest import make_test_config

pytestmark = pytest.mark.component


def _micro_batch(spark, batch_id: int):
    row = (
        "battery-telemetry",
        f"B{batch_id}",
        None,
        "{}",
        "not JSON",
        "t",
        0,
        batch_id,
        None,
        None,
    )
    return spark.createDataFrame([row], tables.QUARANTINE_SCHEMA).coalesce(1)


def test_compaction_keeps_rows_and_exactly_once_appends(spark, tmp_path):
    cfg = make_test_config(tmp_path)
    path = tables.ensure_tables(spark, cfg)[tables.QUARANTINE]
    ledger = AppendLedger(spark)
    for batch_id in range(5):
        ledger.append(_micro_batch(spark, batch_id), path, "stream-q", batch_id)

    done = {u.table: u for u in maintain_tables(spark, cfg)}

    assert done[tables.QUARANTINE].files_before == 5
    assert done[tables.QUARANTINE].files_after == 1
    assert done[tables.QUARANTINE].vacuumed
    assert set(done) == set(tables.SCHEMAS)
    frame = spark.read.format("delta").load(path)
    assertDataFrameEqual(frame.select("offset"), [Row(offset=i) for i in range(5)])
    # A micro-batch replayed after compaction (by a restarted job) is recognised and skipped.
    AppendLedger(spark).append(_micro_batch(spark, 4), path, "stream-q", 4)
    assert spark.read.format("delta").load(path).count() == 5
    assert DeltaTable.forPath(spark, path).history(1).first()["operation"] == "VACUUM END"


def test_a_vacuum_shorter_than_deltas_safety_margin_is_refused(spark, tmp_path):
    cfg = make_test_config(tmp_path)
    tables.ensure_tables(spark, cfg)
    with pytest.raises(PitstopError, match="at least 168"):
        maintain_tables(spark, cfg, vacuum_hours=1)
