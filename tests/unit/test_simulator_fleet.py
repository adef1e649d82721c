"""The fleet model: seeded, consistent with the contract, wearing out and failing believably."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from simulator.fleet import Fleet, FleetParams, simulate_fleet
from simulator.messages import telemetry_frame

pytestmark = pytest.mark.unit

START = dt.date(2024, 1, 1)


def _frame(params: FleetParams, days: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    readings, failures = [], []
    for day in simulate_fleet(params, days):
        frame = telemetry_frame(day)
        frame["expected"] = day.expected_daily_cycles
        readings.append(frame)
        failures.extend(f.__dict__ for f in day.failures)
    return pd.concat(readings, ignore_index=True), pd.DataFrame(failures)


@pytest.fixture(scope="module")
def year() -> tuple[pd.DataFrame, pd.DataFrame]:
    return _frame(FleetParams(300, START, seed=3, failure_rate=0.1), 365)


def test_same_seed_same_fleet_and_other_seed_differs() -> None:
    first, _ = _frame(FleetParams(20, START, seed=1), 30)
    again, _ = _frame(FleetParams(20, START, seed=1), 30)
    other, _ = _frame(FleetParams(20, START, seed=2), 30)
    pd.testing.assert_frame_equal(first, again)
    assert not first["daily_cycles_used"].equals(other["daily_cycles_used"])


def test_readings_respect_the_contract_ranges(year) -> None:
    readings, _ = year
    assert (readings["daily_trip_duration"].between(0, 24)).all()
    assert (readings["daily_cycles_used"] > 0).all()
    assert (readings["number_of_trips"] >= 1).all()
    assert (readings["battery_age_days"] >= 1).all()
    assert (readings["battery_rated_cycles"].between(300, 1200)).all()
    assert readings["battery_id"].str.fullmatch(r"B\d{6,}").all()
    assert readings["car_id"].str.fullmatch(r"C\d{5,}").all()
    temps = readings["ambient_temp_c"].dropna()
    assert temps.between(-80, 80).all()


def test_lifetime_and_age_add_up_across_parked_gaps(year) -> None:
    readings, _ = year
    for _, battery in readings.groupby("battery_id"):
        dates = pd.to_datetime(battery["date"])
        gaps = dates.diff().dt.days.iloc[1:].to_numpy()
        # Age counts calendar days, parked ones included.
        assert (battery["battery_age_days"].diff().iloc[1:].to_numpy() == gaps).all()
        steps = battery["lifetime_cycles_used"].diff().iloc[1:].to_numpy()
        assert np.allclose(steps, battery["daily_cycles_used"].iloc[1:], atol=2e-3)
    parked = readings.groupby("car_id")["date"].nunique() < 365
    assert parked.any(), "some cars should stand parked (no telemetry) on some days"


def test_failed_battery_is_replaced_by_a_fresh_one_in_the_same_car(year) -> None:
    readings, failures = year
    assert set(failures["cause"]) == {"worn", "weak_cell"}
    for failure in failures.head(40).itertuples():
        old = readings[readings["battery_id"] == failure.battery_id]
        last = old.iloc[-1]
        assert last["date"] == failure.failure_date
        if failure.cause == "worn":
            assert last["lifetime_cycles_used"] >= last["battery_rated_cycles"] - 1e-6
        else:
            assert last["lifetime_cycles_used"] < last["battery_rated_cycles"]
        later = readings[(readings["car_id"] == failure.car_id) & (readings["date"] > last["date"])]
        if later.empty:
            continue
        first_new = later.iloc[0]
        assert first_new["battery_id"] != failure.battery_id
        assert first_new["lifetime_cycles_used"] == pytest.approx(
            first_new["daily_cycles_used"], abs=1e-3
        )
        days_after = (
            dt.date.fromisoformat(first_new["date"]) - dt.date.fromisoformat(failure.failure_date)
        ).days
        assert first_new["battery_age_days"] == days_after


def test_weak_cells_show_in_health_signals_before_they_fail(year) -> None:
    readings, failures = year
    weak = failures[failures["cause"] == "weak_cell"]
    assert len(weak) >= 5
    drops = []
    for failure in weak.itertuples():
        history = readings[readings["battery_id"] == failure.battery_id]
        if len(history) < 70:
            continue
        baseline = history["cranking_voltage_min"].iloc[-70:-50].mean()
        last_week = history["cranking_voltage_min"].iloc[-7:].mean()
        drops.append(baseline - last_week)
    assert drops and np.median(drops) > 0.5


def test_health_degrades_with_wear(year) -> None:
    readings, _ = year
    wear = readings["lifetime_cycles_used"] / readings["battery_rated_cycles"]
    young = readings.loc[wear < 0.2, "resting_voltage"].mean()
    old = readings.loc[wear > 0.8, "resting_voltage"].mean()
    assert young - old > 0.1


def test_expected_cycles_are_the_noise_free_mean(year) -> None:
    readings, _ = year
    ratio = readings["daily_cycles_used"] / readings["expected"]
    assert ratio.mean() == pytest.approx(1.0, abs=0.01)
    assert 0.03 < ratio.std() < 0.15


def test_weekday_pattern_is_visible(year) -> None:
    readings, _ = year
    weekday = pd.to_datetime(readings["date"]).dt.dayofweek
    by_day = readings.groupby(weekday)["daily_cycles_used"].mean()
    assert by_day.iloc[:5].mean() > by_day.iloc[5:].mean()


def test_failure_rate_seeds_weak_cells() -> None:
    fleet = Fleet(FleetParams(2000, START, seed=5, failure_rate=0.25))
    assert 400 < fleet.weak_cells_seeded < 600
    assert Fleet(FleetParams(500, START, seed=5, failure_rate=0.0)).weak_cells_seeded == 0


def test_state_does_not_grow_with_days() -> None:
    fleet = Fleet(FleetParams(50, START, seed=1))
    sizes = {name: len(v) for name, v in vars(fleet).items() if isinstance(v, np.ndarray)}
    for _ in range(400):
        fleet.step()
    assert {name: len(v) for name, v in vars(fleet).items() if isinstance(v, np.ndarray)} == sizes
    assert fleet.today == START + dt.timedelta(days=400)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"batteries": 0},
        {"failure_rate": 1.5},
        {"failure_rate": -0.1},
        {"parked_spells_per_year": -1},
    ],
)
def test_bad_params_are_rejected(kwargs) -> None:
    values = {"batteries": 10, "start_date": START, **kwargs}
    with pytest.raises(ValueError):
        FleetParams(**values)


def test_cycle_arithmetic_alerts_worn_failures_well() -> None:
    """A trailing-mean forecast catches worn batteries: the use is forecastable by design."""
    from models.forecasting.metrics import alert_quality  # noqa: PLC0415 - the project's own alert metric

    readings, failures = _frame(FleetParams(400, START, seed=11, failure_rate=0.0), 240)
    readings["date"] = pd.to_datetime(readings["date"])
    window, rows = 28, []
    for battery_id, battery in readings.groupby("battery_id", sort=False):
        if len(battery) < window:
            continue
        mean = battery["daily_cycles_used"].rolling(window).mean().iloc[window - 1 :]
        left = (battery["battery_rated_cycles"] - battery["lifetime_cycles_used"]).iloc[
            window - 1 :
        ]
        days = np.ceil(left / mean)
        dates = battery["date"].iloc[window - 1 :]
        predicted = dates + pd.to_timedelta(days.where(days <= 30), unit="D")
        rows.append(
            pd.DataFrame(
                {"battery_id": battery_id, "date": dates, "predicted_failure_date": predicted}
            )
        )
    forecasts = pd.concat(rows)
    forecasts = forecasts[forecasts["date"] <= readings["date"].max() - pd.Timedelta(days=30)]
    quality = alert_quality(forecasts, failures, within_days=30, grace_days=3)
    assert quality["batteries_due"] > 50
    assert quality["recall"] >= 0.95
    assert quality["precision"] >= 0.90
