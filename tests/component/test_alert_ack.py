"""Operators acknowledge alerts through delta-rs; the Spark job's MERGE keeps working after."""

from __future__ import annotations

import datetime as dt

import pytest

from pitstop.alerts import AlertsError, acknowledge_alert, query_alerts
from streaming import sinks, tables
from tests.conftest import make_test_config

pytestmark = pytest.mark.component

ALERT_COLUMNS = (
    "alert_id string, battery_id string, car_id string, alert_date date, "
    "predicted_failure_date date, days_to_failure int, last_reading_date date, "
    "lifetime_cycles_used double, battery_rated_cycles double, model_name string, "
    "model_version string"
)


def alert_row(alert_id: str, day: int, days_to_failure: int) -> tuple:
    return (
        alert_id,
        "B1",
        "C1",
        dt.date(2024, 3, day),
        dt.date(2024, 3, day + days_to_failure),
        days_to_failure,
        dt.date(2024, 3, day),
        480.0,
        500.0,
        "battery-cycles-rnn",
        "1",
    )


def test_ack_closes_the_alert_and_the_stream_opens_no_new_one(spark, tmp_path):
    cfg = make_test_config(tmp_path)
    path = tables.ensure_tables(spark, cfg)[tables.ALERTS]
    first = spark.createDataFrame([alert_row("00000000000000a1", 1, 27)], ALERT_COLUMNS)
    sinks.update_alerts(spark, path, first)
    assert list(query_alerts(cfg)["alert_id"]) == ["00000000000000a1"]

    assert acknowledge_alert(cfg, "00000000000000a1", by="ops") == 1
    assert acknowledge_alert(cfg, "00000000000000a1") == 0  # no longer open
    assert query_alerts(cfg).empty

    # The next micro-batch still predicts failure: Spark MERGEs into the table delta-rs
    # wrote, and the acknowledged battery gets no new alert until it is replaced.
    later = spark.createDataFrame([alert_row("00000000000000b2", 5, 20)], ALERT_COLUMNS)
    sinks.update_alerts(spark, path, later)
    every = query_alerts(cfg, include_closed=True)
    assert list(every["status"]) == ["acknowledged"]
    assert every["close_reason"].iloc[0] == "acknowledged by ops"


def test_ack_rejects_what_is_not_an_alert_id(tmp_path):
    cfg = make_test_config(tmp_path)
    with pytest.raises(AlertsError, match="not an alert id"):
        acknowledge_alert(cfg, "'; DROP TABLE")
    with pytest.raises(AlertsError, match="No battery alert table"):
        acknowledge_alert(cfg, "00000000000000a1")
