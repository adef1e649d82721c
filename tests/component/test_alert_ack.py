"""Operators acknowledge alerts through delta-rs; the Spark job's MERGE keeps working after."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from apps.alerts import AlertsError, acknowledge_alert, query_alerts
from streaming import tables
from streaming.battery.alert_table import AlertTable, commit_alert_changes
from streaming.battery.alerts import FOUND_COLUMNS, alert_message
from tests.conftest import make_test_config

pytestmark = pytest.mark.component


def update_alerts(path: str, alerts: list[tuple], replaced: list[tuple] = (), batch_id: int = 0):
    """One micro-batch's alert changes: candidate alerts (`alert_row`) and batteries new to
    the stream (car, battery, first date); returns how many alerts opened."""
    found = pd.DataFrame(alerts, columns=FOUND_COLUMNS[:-1])
    found["message"] = [alert_message(d) for d in found["predicted_failure_date"]]
    arrivals = pd.DataFrame(list(replaced), columns=["car_id", "battery_id", "date"])
    return len(commit_alert_changes(AlertTable(path), found, arrivals, "test-stream", batch_id))


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
    update_alerts(path, [alert_row("00000000000000a1", 1, 27)], batch_id=0)
    assert list(query_alerts(cfg)["alert_id"]) == ["00000000000000a1"]
    # The MERGE wrote its file with string views: a filter its statistics cannot settle
    # still compares (pyarrow has no string = string_view kernel).
    assert list(query_alerts(cfg, battery_id="B1")["alert_id"]) == ["00000000000000a1"]
    assert query_alerts(cfg, battery_id="B0").empty

    assert acknowledge_alert(cfg, "00000000000000a1", by="ops") == 1
    assert acknowledge_alert(cfg, "00000000000000a1") == 0  # no longer open
    assert query_alerts(cfg).empty

    # The next micro-batch still predicts failure: the stream MERGEs after the operator's
    # update, and the acknowledged battery gets no new alert until it is replaced.
    update_alerts(path, [alert_row("00000000000000b2", 5, 20)], batch_id=1)
    every = query_alerts(cfg, include_closed=True)
    assert list(every["status"]) == ["acknowledged"]
    assert every["close_reason"].iloc[0] == "acknowledged by ops"


def test_ack_keeps_who_and_why_whatever_their_quotes(spark, tmp_path):
    cfg = make_test_config(tmp_path)
    path = tables.ensure_tables(spark, cfg)[tables.ALERTS]
    update_alerts(path, [alert_row("00000000000000c3", 1, 27)], batch_id=0)
    assert acknowledge_alert(cfg, "00000000000000c3", by="Dana O'Brien", why="it's 'done'") == 1
    row = query_alerts(cfg, include_closed=True)
    assert row["close_reason"].item() == "acknowledged by Dana O'Brien: it's 'done'"
    assert row["closed_at"].notna().item() and row["status"].item() == "acknowledged"


def test_ack_rejects_what_is_not_an_alert_id(tmp_path):
    cfg = make_test_config(tmp_path)
    with pytest.raises(AlertsError, match="not an alert id"):
        acknowledge_alert(cfg, "'; DROP TABLE")
    with pytest.raises(AlertsError, match="No battery alert table"):
        acknowledge_alert(cfg, "00000000000000a1")
