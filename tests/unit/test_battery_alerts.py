"""Alert decisions of a micro-batch, in pandas (streaming.battery.alerts)."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from streaming.battery.alerts import (
    ALERT_COLUMNS,
    INSERT,
    UPDATE,
    alert_id,
    alert_message,
    alerts_from_triggers,
    plan_alert_changes,
)

pytestmark = pytest.mark.unit

NOW = dt.datetime(2024, 3, 5, 12, tzinfo=dt.timezone.utc)
NO_ARRIVALS = pd.DataFrame(columns=["car_id", "battery_id", "date"])
NO_ALERTS = pd.DataFrame(columns=ALERT_COLUMNS)


def trigger(battery: str, day: int, days_to_failure: int, car: str = "C1") -> dict:
    date = dt.date(2024, 3, day)
    return {
        "battery_id": battery,
        "car_id": car,
        "date": date,
        "predicted_failure_date": date + dt.timedelta(days=days_to_failure),
        "days_to_failure": days_to_failure,
        "lifetime_cycles_used": 480.0 + day,
        "battery_rated_cycles": 500.0,
        "model_name": "m",
        "model_version": "3",
    }


def stored(found: pd.DataFrame, status: str = "open") -> pd.DataFrame:
    """`found` as the table holds it after an earlier micro-batch opened it."""
    plan = plan_alert_changes(found, NO_ARRIVALS, NO_ALERTS, NOW - dt.timedelta(days=1))
    return plan.rows.drop(columns="_op").assign(status=status)


def test_alerts_take_the_first_triggering_date_and_the_latest_forecast():
    found = alerts_from_triggers(
        pd.DataFrame([trigger("B1", 2, 29), trigger("B1", 3, 27), trigger("B2", 3, 10, "C2")])
    )
    b1 = found.set_index("battery_id").loc["B1"]
    assert b1.alert_date == dt.date(2024, 3, 2)
    assert b1.predicted_failure_date == dt.date(2024, 3, 30)
    assert b1.last_reading_date == dt.date(2024, 3, 3)
    assert b1.model_version == "3"
    assert b1.alert_id == alert_id("B1", dt.date(2024, 3, 2)) and len(b1.alert_id) == 16
    assert b1.message.startswith(
        "Your car's battery is predicted to reach the end of its life around 30 March 2024."
    )
    assert alerts_from_triggers(pd.DataFrame(columns=list(trigger("B", 1, 1)))).empty


def test_an_alert_opens_once_and_is_refreshed_after():
    found = alerts_from_triggers(pd.DataFrame([trigger("B1", 1, 27)]))
    first = plan_alert_changes(found, NO_ARRIVALS, NO_ALERTS, NOW)
    assert first.rows["_op"].tolist() == [INSERT]
    assert first.openings["status"].tolist() == ["open"]

    later = alerts_from_triggers(pd.DataFrame([trigger("B1", 4, 20)]))
    again = plan_alert_changes(later, NO_ARRIVALS, stored(found), NOW)
    assert again.rows["_op"].tolist() == [UPDATE]
    row = again.rows.iloc[0]
    assert row.alert_id == found.alert_id[0]  # the same alert, its opening unchanged
    assert row.alert_date == dt.date(2024, 3, 1)
    assert row.days_to_failure == 20 and row.last_reading_date == dt.date(2024, 3, 4)
    assert again.openings.empty


def test_an_acknowledged_battery_gets_no_new_alert():
    found = alerts_from_triggers(pd.DataFrame([trigger("B1", 1, 27)]))
    later = alerts_from_triggers(pd.DataFrame([trigger("B1", 4, 20)]))
    plan = plan_alert_changes(later, NO_ARRIVALS, stored(found, "acknowledged"), NOW)
    assert plan.empty and plan.openings.empty


def test_a_new_battery_closes_the_cars_older_alert_and_one_replaced_at_once_opens_closed():
    found = alerts_from_triggers(pd.DataFrame([trigger("B1", 1, 27)]))
    arrival = pd.DataFrame([{"car_id": "C1", "battery_id": "B2", "date": dt.date(2024, 3, 10)}])
    closes = plan_alert_changes(alerts_from_triggers(pd.DataFrame()), arrival, stored(found), NOW)
    assert closes.rows[["_op", "status", "close_reason"]].values.tolist() == [
        [UPDATE, "closed", "replaced"]
    ]
    at_once = plan_alert_changes(found, arrival, NO_ALERTS, NOW)
    assert at_once.rows[["_op", "status", "close_reason"]].values.tolist() == [
        [INSERT, "closed", "replaced"]
    ]
    assert at_once.openings.empty  # never published
    # A battery that arrived before the alert opened does not close it.
    early = arrival.assign(date=dt.date(2024, 2, 20))
    assert plan_alert_changes(alerts_from_triggers(pd.DataFrame()), early, stored(found), NOW).empty


def test_alert_message_names_the_day_in_words():
    assert "around 1 April 2024." in alert_message(dt.date(2024, 4, 1))
