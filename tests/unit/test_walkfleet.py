"""The second, independent fleet generator (evaluation only) writes what Pitstop reads."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from benchmarks.fleets.walkfleet import WalkFleetParams, generate, write_fleet
from models.forecasting.data import load_readings
from models.forecasting.risk import failure_dates

pytestmark = pytest.mark.unit

PARAMS = WalkFleetParams(batteries=60, days=240, seed=3, start_date=dt.date(2023, 3, 1))


def test_the_fleet_is_lab_schema_with_true_failures_and_missing_days(tmp_path) -> None:
    path = write_fleet(tmp_path, PARAMS)
    readings = load_readings(path)  # the lab's CSV, read as users' files are
    truth = pd.read_csv(tmp_path / "truth" / "batteries.csv", dtype={"battery_id": str})
    worn = truth[truth["cause"] == "worn"]
    assert len(worn) > 5 and set(worn["battery_id"]) <= set(readings["battery_id"])
    # A dead battery sends no reading on half its failure days: then the labels read from the
    # data still find it, from where it stopped.
    last = readings.groupby("battery_id")["date"].max()
    quiet = worn[worn["failure_date"] > worn["battery_id"].map(last)]
    assert 0 < len(quiet) < len(worn)
    found = failure_dates(readings)
    assert found.reindex(quiet["battery_id"]).notna().mean() > 0.5
    # Days without a reading inside batteries' lives: parked days and telemetry gaps.
    days = pd.to_datetime(readings["date"]).groupby(readings["battery_id"]).agg(["min", "max"])
    span = ((days["max"] - days["min"]).dt.days + 1).sum()
    assert 0.02 < 1 - len(readings) / span < 0.2
    assert not any(c in readings.columns for c in ("resting_voltage", "ambient_temp_c"))


def test_generation_is_seeded() -> None:
    first, truth, _ = generate(PARAMS)
    again, truth_again, _ = generate(PARAMS)
    pd.testing.assert_frame_equal(first, again)
    pd.testing.assert_frame_equal(truth, truth_again)
