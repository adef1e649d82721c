"""Filtered reads of tables that delta-rs updated (its rewritten files hold string views)."""

from __future__ import annotations

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from core.lake import read_table
from tests.conftest import make_test_config

pytestmark = pytest.mark.component


def test_a_filtered_read_after_a_delta_rs_update_finds_the_rows(tmp_path):
    cfg = make_test_config(tmp_path)
    location = cfg.storage.table("battery_alerts")
    schema = pa.schema([("alert_id", pa.string()), ("status", pa.string()), ("n", pa.int64())])
    rows = {"alert_id": ["a", "b", "c"], "status": ["open"] * 3, "n": [1, 2, 3]}
    write_deltalake(location, pa.table(rows, schema=schema))
    # An acknowledgement rewrites the file holding "a": its strings come back as views.
    DeltaTable(location).update(predicate="alert_id = 'a'", new_values={"status": "acknowledged"})
    still_open = read_table(cfg, "battery_alerts", filters=[("status", "=", "open")])
    assert sorted(still_open["alert_id"]) == ["b", "c"]
    ids = read_table(
        cfg,
        "battery_alerts",
        columns=["alert_id"],
        filters=[[("n", ">", 2)], [("alert_id", "=", "a")]],
    )
    assert list(ids.columns) == ["alert_id"] and sorted(ids["alert_id"]) == ["a", "c"]
