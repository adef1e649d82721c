"""A lake written by an older Pitstop gains the forecast quantiles and risk columns in place."""

from __future__ import annotations

import datetime as dt

import pytest
from delta.tables import DeltaTable
from pyspark.sql import Row
from pyspark.sql import types as T

from streaming import tables
from tests.conftest import make_test_config

pytestmark = pytest.mark.component

NEW_COLUMNS = {
    tables.FORECASTS: [
        "daily_q10",
        "daily_q50",
        "daily_q90",
        "cum_q10",
        "cum_q50",
        "cum_q90",
        "failure_risk",
    ],
    tables.ALERTS: ["failure_risk"],
}


def _older(schema: T.StructType, dropped: list[str]) -> T.StructType:
    return T.StructType([f for f in schema.fields if f.name not in dropped])


def test_existing_tables_get_the_new_columns_and_keep_their_rows(spark, tmp_path):
    cfg = make_test_config(tmp_path)
    path = cfg.storage.table(tables.FORECASTS)
    old = _older(tables.FORECAST_SCHEMA, NEW_COLUMNS[tables.FORECASTS])
    row = {f.name: None for f in old.fields} | {
        "battery_id": "B1",
        "date": dt.date(2024, 3, 1),
        "forecast": [1.0] * 30,
        "model_name": "battery-cycles-rnn",
    }
    spark.createDataFrame([row], old).write.format("delta").save(path)
    alerts_path = cfg.storage.table(tables.ALERTS)
    DeltaTable.createIfNotExists(spark).location(alerts_path).addColumns(
        _older(tables.ALERT_SCHEMA, NEW_COLUMNS[tables.ALERTS])
    ).execute()

    tables.ensure_tables(spark, cfg)
    tables.ensure_tables(spark, cfg)  # a second start finds nothing to add

    for name, added in NEW_COLUMNS.items():
        columns = spark.read.format("delta").load(cfg.storage.table(name)).columns
        assert set(added) <= set(columns), name
    stored = spark.read.format("delta").load(path)
    assert stored.select("battery_id", "failure_risk", "cum_q50").collect() == [
        Row(battery_id="B1", failure_risk=None, cum_q50=None)
    ]
    # The stream's appends (every column, by name) land in the evolved table.
    new = {f.name: None for f in tables.FORECAST_SCHEMA.fields} | {
        **row,
        "battery_id": "B2",
        "failure_risk": 0.25,
        "cum_q50": [float(d) for d in range(1, 31)],
    }
    spark.createDataFrame([new], tables.FORECAST_SCHEMA).write.format("delta").mode("append").save(
        path
    )
    risks = {r.battery_id: r.failure_risk for r in spark.read.format("delta").load(path).collect()}
    assert risks == {"B1": None, "B2": 0.25}
