"""The wire contract's validator: typed fields or one clear quarantine reason."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from core.contract import MAX_MESSAGE_BYTES
from core.validation import check_note, check_telemetry

pytestmark = pytest.mark.unit

GOOD = {
    "schema_version": 1,
    "car_id": "C1",
    "battery_id": "17",
    "date": "2024-02-29",
    "battery_age_days": 10,
    "number_of_trips": 2,
    "daily_trip_duration": 1.5,
    "daily_cycles_used": 1,
    "lifetime_cycles_used": 100.0,
    "battery_rated_cycles": 500.0,
    "resting_voltage": None,
}


def check(**changes):
    message = {**GOOD, **changes}
    return check_telemetry(json.dumps({k: v for k, v in message.items() if v != "<drop>"}))


def test_valid_message_is_typed_and_keeps_unknown_fields_apart():
    checked = check(firmware="1.2")
    assert checked.ok
    assert checked.fields["date"] == dt.date(2024, 2, 29)
    assert checked.fields["daily_cycles_used"] == 1.0
    assert isinstance(checked.fields["daily_cycles_used"], float)
    assert checked.fields["resting_voltage"] is None
    assert checked.extra == {"firmware": "1.2"}


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"battery_age_days": 2.5}, "field 'battery_age_days' must be an integer, got 2.5"),
        ({"number_of_trips": True}, "field 'number_of_trips' must be an integer, got a boolean"),
        ({"daily_cycles_used": "1.0"}, "must be a number, got the string '1.0'"),
        ({"battery_id": ""}, "field 'battery_id' must not be empty"),
        ({"car_id": None}, "null required field 'car_id'"),
        ({"date": "<drop>"}, "missing required field 'date'"),
        ({"date": "2023-02-29"}, "must be a date YYYY-MM-DD"),
        ({"date": "20240101"}, "must be a date YYYY-MM-DD"),
        ({"battery_rated_cycles": 0}, "out of range: 0.0 (must be > 0)"),
        ({"daily_trip_duration": 24.5}, "out of range: 24.5 (must be <= 24)"),
        ({"lifetime_cycles_used": -1}, "out of range: -1.0 (must be >= 0)"),
        ({"schema_version": 2}, "unknown schema_version 2"),
        ({"resting_voltage": "high"}, "field 'resting_voltage' must be a number"),
        ({"number_of_trips": [1]}, "field 'number_of_trips' must be an integer, got a JSON list"),
        ({"car_id": 7}, "field 'car_id' must be a string, got 7"),
    ],
)
def test_each_broken_rule_gets_its_reason(changes, reason):
    checked = check(**changes)
    assert not checked.ok
    assert reason in checked.reason


def test_whole_floats_are_integers_and_overflowing_numbers_are_not_numbers():
    checked = check(battery_age_days=10.0)
    assert checked.fields["battery_age_days"] == 10
    assert isinstance(checked.fields["battery_age_days"], int)
    # 1e999 is valid JSON that Python reads as infinity.
    overflow = json.dumps(GOOD).replace(
        '"daily_trip_duration": 1.5', '"daily_trip_duration": 1e999'
    )
    assert check_telemetry(overflow).reason == (
        "field 'daily_trip_duration' must be a number, got inf"
    )


def test_envelope_problems_are_reasons_too():
    assert check_telemetry(None).reason == "empty message"
    assert check_telemetry(b"\xff\xfe").reason == "not UTF-8"
    assert check_telemetry(b'{"a": NaN}').reason == "not JSON"
    assert check_telemetry(b'"text"').reason == "not a JSON object (str)"
    big = json.dumps({**GOOD, "pad": "x" * MAX_MESSAGE_BYTES})
    assert check_telemetry(big).reason.startswith("oversized")


def test_note_timestamps_become_utc():
    note = {
        "schema_version": 1,
        "note_id": "N1",
        "car_id": "C1",
        "component": "bracket",
        "text": "Steel component manufactured in 1995 in fair condition",
        "written_at": "2024-03-01T10:00:00+02:00",
    }
    checked = check_note(json.dumps(note))
    assert checked.ok
    assert checked.fields["written_at"] == dt.datetime(2024, 3, 1, 8, tzinfo=dt.timezone.utc)
    assert "written_at" in check_note(json.dumps({**note, "written_at": "yesterday"})).reason
