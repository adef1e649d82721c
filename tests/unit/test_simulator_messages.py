"""Encoded messages honour the wire contract; note truth never reaches the wire."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest

from core.validation import check_note, check_telemetry
from simulator.fleet import Fleet, FleetParams
from simulator.messages import encode_notes, encode_telemetry, split_note

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def day():
    fleet = Fleet(FleetParams(500, dt.date(2024, 3, 1), seed=4))
    for _ in range(3):
        fleet.step()
    return fleet.step()


def test_every_telemetry_message_passes_the_contract_validator(day) -> None:
    batch = encode_telemetry(day)
    assert len(batch) == len(day) == len(batch.values)
    for value in batch.values:
        checked = check_telemetry(value)
        assert checked.reason is None, checked.reason
    first = json.loads(batch.values[0])
    assert list(first)[:4] == ["schema_version", "car_id", "battery_id", "date"]
    assert first["schema_version"] == 1 and first["date"] == "2024-03-04"
    assert isinstance(first["battery_rated_cycles"], float)
    assert isinstance(first["number_of_trips"], int)


def test_messages_are_keyed_by_battery_and_match_the_rows(day) -> None:
    batch = encode_telemetry(day, 10, 20)
    assert batch.keys == day.battery_ids(10, 20)
    decoded = [json.loads(v) for v in batch.values]
    assert [d["battery_id"] for d in decoded] == batch.keys
    assert [d["daily_cycles_used"] for d in decoded] == day.columns["daily_cycles_used"][
        10:20
    ].tolist()


def test_missing_health_signal_is_null_not_nan(day) -> None:
    day.columns["resting_voltage"][0] = np.nan
    value = encode_telemetry(day, 0, 1).values[0]
    assert json.loads(value)["resting_voltage"] is None
    assert b"NaN" not in value and check_telemetry(value).reason is None


def test_empty_slice_gives_an_empty_batch(day) -> None:
    batch = encode_telemetry(day, len(day), len(day) + 5)
    assert len(batch) == 0 and batch.values == []


def test_note_truth_stays_off_the_wire() -> None:
    note = {
        "schema_version": 1,
        "note_id": "N1",
        "car_id": "C00001",
        "component": "bracket",
        "text": "Steel bracket made in 1991, fair condition",
        "written_at": "2024-01-02T10:00:00Z",
        "non_compliant": True,
    }
    message, truth = split_note(note)
    assert "non_compliant" not in message and truth["non_compliant"] is True
    batch = encode_notes([message])
    assert batch.keys == ["C00001"]
    assert check_note(batch.values[0]).reason is None
