"""Model-input windows and failure dates: the contract shared by training and scoring."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.contract import HEALTH_SIGNALS
from models.forecasting.features import (
    HEALTH_COLUMNS,
    HEALTH_HISTORY_COLUMNS,
    MODEL_INPUT_COLUMNS,
    FeatureError,
    build_history_windows,
    build_training_windows,
    daily_series,
    forecast_failure_date,
    forecast_failure_days,
    health_channels,
    model_input_columns,
)

pytestmark = pytest.mark.unit


def _readings(
    battery: str, start: str, cycles: list[float], skip: tuple[int, ...] = ()
) -> pd.DataFrame:
    dates = pd.date_range(start, periods=len(cycles), freq="D")
    rows = [
        {
            "battery_id": battery,
            "date": d.strftime("%Y-%m-%d"),
            "daily_cycles_used": c,
            "lifetime_cycles_used": 100.0 + i,
            "battery_rated_cycles": 500.0,
            "battery_age_days": i,
        }
        for i, (d, c) in enumerate(zip(dates, cycles, strict=True))
        if i not in skip
    ]
    return pd.DataFrame(rows)


def test_daily_series_fills_parked_days_and_keeps_first_duplicate() -> None:
    readings = _readings("b1", "2024-03-01", [1.0, 2.0, 3.0, 4.0], skip=(1, 2))
    duplicate = readings.iloc[[0]].assign(daily_cycles_used=99.0)
    dense = daily_series(pd.concat([readings, duplicate]))
    assert dense["date"].dt.strftime("%d").tolist() == ["01", "02", "03", "04"]
    assert dense["daily_cycles_used"].tolist() == [1.0, 0.0, 0.0, 4.0]
    assert dense["observed"].tolist() == [True, False, False, True]


def test_daily_series_sorts_batteries_and_keeps_them_apart() -> None:
    readings = pd.concat(
        [_readings("b2", "2024-01-05", [5.0, 6.0]), _readings("b1", "2024-01-01", [1.0, 2.0])]
    )
    dense = daily_series(readings)
    assert dense["battery_id"].tolist() == ["b1", "b1", "b2", "b2"]
    assert dense["daily_cycles_used"].tolist() == [1.0, 2.0, 5.0, 6.0]


def test_daily_series_missing_column() -> None:
    with pytest.raises(FeatureError, match="daily_cycles_used"):
        daily_series(pd.DataFrame({"battery_id": ["b"], "date": ["2024-01-01"]}))


def test_history_windows_are_oldest_first_and_short_for_new_batteries() -> None:
    readings = _readings("b1", "2024-01-01", [1.0, 2.0, 3.0, 4.0, 5.0])
    windows = build_history_windows(readings, window_days=3)
    assert list(windows.columns) == ["battery_id", "date", *MODEL_INPUT_COLUMNS]
    assert [w.tolist() for w in windows["daily_cycles"]] == [
        [1.0],
        [1.0, 2.0],
        [1.0, 2.0, 3.0],
        [2.0, 3.0, 4.0],
        [3.0, 4.0, 5.0],
    ]
    assert windows["lifetime_cycles_used"].tolist() == [100.0, 101.0, 102.0, 103.0, 104.0]


def test_history_windows_for_selected_targets_only() -> None:
    readings = pd.concat(
        [_readings("b1", "2024-01-01", [1.0, 2.0, 3.0]), _readings("b2", "2024-01-01", [7.0, 8.0])]
    )
    targets = pd.DataFrame(
        {"battery_id": ["b2", "b1", "unknown"], "date": ["2024-01-02", "2024-01-03", "2024-01-01"]}
    )
    windows = build_history_windows(readings, 2, targets)
    assert windows["battery_id"].tolist() == ["b1", "b2"]
    assert [w.tolist() for w in windows["daily_cycles"]] == [[2.0, 3.0], [7.0, 8.0]]


def test_history_windows_rejects_bad_window() -> None:
    with pytest.raises(FeatureError, match="window_days"):
        build_history_windows(_readings("b1", "2024-01-01", [1.0]), window_days=0)


def test_history_windows_missing_static_column() -> None:
    readings = _readings("b1", "2024-01-01", [1.0]).drop(columns="battery_age_days")
    with pytest.raises(FeatureError, match="battery_age_days"):
        build_history_windows(readings, 3)


def _with_health(readings: pd.DataFrame) -> pd.DataFrame:
    """Resting voltage 12.0, 12.1, ... by day; temperature the day number; one null reading."""
    day = (pd.to_datetime(readings["date"]) - pd.Timestamp("2024-01-01")).dt.days.to_numpy()
    resting = (12.0 + 0.1 * day).astype(object)
    resting[day == 1] = None  # a reading without the signal (sensor dropout)
    return readings.assign(resting_voltage=resting, ambient_temp_c=day.astype(float))


def test_windows_carry_health_arrays_aligned_with_the_cycles() -> None:
    readings = _with_health(_readings("b1", "2024-01-01", [1.0, 2.0, 3.0, 4.0, 5.0], skip=(2,)))
    windows = build_history_windows(readings, window_days=3)
    assert list(windows.columns) == [
        "battery_id",
        "date",
        *MODEL_INPUT_COLUMNS,
        "resting_voltage_history",
        "ambient_temp_c_history",
    ]
    last = windows.iloc[-1]  # days 2 (parked, no reading), 3 and 4
    assert last["daily_cycles"].tolist() == [0.0, 4.0, 5.0]
    assert np.allclose(last["resting_voltage_history"], [np.nan, 12.3, 12.4], equal_nan=True)
    assert np.allclose(last["ambient_temp_c_history"], [np.nan, 3.0, 4.0], equal_nan=True)
    second = windows.iloc[1]  # days 0 and 1, day 1 read without a resting voltage
    assert np.allclose(second["resting_voltage_history"], [12.0, np.nan], equal_nan=True)
    for _, row in windows.iterrows():
        assert len(row["resting_voltage_history"]) == len(row["daily_cycles"])
    assert model_input_columns(windows)[-2:] == [
        "resting_voltage_history",
        "ambient_temp_c_history",
    ]


def test_training_windows_carry_the_same_health_arrays() -> None:
    readings = _with_health(_readings("b1", "2024-01-01", [float(i) for i in range(1, 9)]))
    windows, _ = build_training_windows(readings, window_days=4, horizon_days=3)
    assert "cranking_voltage_min_history" not in windows.columns
    assert np.allclose(windows["ambient_temp_c_history"].iloc[4], [1.0, 2.0, 3.0, 4.0])
    assert np.allclose(
        windows["resting_voltage_history"].iloc[2], [12.0, np.nan, 12.2], equal_nan=True
    )


def test_windows_without_health_signals_have_no_health_columns() -> None:
    empty = build_history_windows(
        _with_health(_readings("b1", "2024-01-01", [1.0])),
        3,
        pd.DataFrame({"battery_id": ["other"], "date": ["2024-01-01"]}),
    )
    assert empty.empty and "resting_voltage_history" in empty.columns
    plain = build_history_windows(_readings("b1", "2024-01-01", [1.0, 2.0]), 3)
    assert model_input_columns(plain) == list(MODEL_INPUT_COLUMNS)


def test_health_channels_need_the_signal_on_half_the_readings() -> None:
    readings = _readings("b1", "2024-01-01", [1.0] * 4).assign(
        resting_voltage=[12.0, None, 12.1, 12.2],
        charge_acceptance=[0.9, None, None, None],
        ambient_temp_c=[None, None, 3.0, 4.0],
    )
    assert health_channels(readings) == ("resting_voltage_history", "ambient_temp_c_history")
    assert health_channels(readings, min_share=0.75) == ("resting_voltage_history",)
    assert health_channels(_readings("b1", "2024-01-01", [1.0])) == ()


def test_health_columns_are_the_contracts_optional_signals() -> None:
    from models.reporting import explain

    assert (
        HEALTH_COLUMNS
        == HEALTH_SIGNALS
        == (
            "cranking_voltage_min",
            "resting_voltage",
            "charge_acceptance",
            "ambient_temp_c",
        )
    )
    assert HEALTH_HISTORY_COLUMNS[0] == "cranking_voltage_min_history"
    assert explain.HEALTH_COLUMNS is HEALTH_COLUMNS


def test_training_windows_pair_each_window_with_the_next_days() -> None:
    readings = _readings("b1", "2024-01-01", [float(i) for i in range(1, 9)], skip=(2,))
    windows, futures = build_training_windows(readings, window_days=4, horizon_days=3)
    # Day 2 (0-based) is parked: no window starts there, but it counts as 0 inside others.
    assert windows["date"].dt.day.tolist() == [1, 2, 4, 5]
    assert futures.tolist() == [[2.0, 0.0, 4.0], [0.0, 4.0, 5.0], [5.0, 6.0, 7.0], [6.0, 7.0, 8.0]]
    assert windows["daily_cycles"].iloc[2].tolist() == [1.0, 2.0, 0.0, 4.0]


def test_training_windows_stride_and_battery_boundaries() -> None:
    readings = pd.concat(
        [
            _readings("b1", "2024-01-01", [1.0] * 6),
            _readings("b2", "2024-01-01", [2.0] * 6),
        ]
    )
    windows, futures = build_training_windows(readings, 5, 2, stride=2)
    assert windows["battery_id"].tolist() == ["b1", "b1", "b2", "b2"]
    assert windows["date"].dt.day.tolist() == [1, 3, 1, 3]
    assert np.all(futures[:2] == 1.0) and np.all(futures[2:] == 2.0)


def test_training_windows_need_enough_history() -> None:
    with pytest.raises(FeatureError, match="nothing to train on"):
        build_training_windows(_readings("b1", "2024-01-01", [1.0, 2.0]), 5, horizon_days=3)


def test_training_windows_reject_bad_horizon() -> None:
    with pytest.raises(FeatureError, match="at least 1"):
        build_training_windows(_readings("b1", "2024-01-01", [1.0] * 5), 5, horizon_days=0)


def test_failure_days_counts_until_rating_is_reached() -> None:
    forecast = np.array([[10.0, 10.0, 10.0], [1.0, 1.0, 1.0], [5.0, 5.0, 5.0]])
    days = forecast_failure_days(
        np.array([480.0, 100.0, 600.0]), np.array([500.0, 500.0, 500.0]), forecast
    )
    assert days[0] == 2.0
    assert np.isnan(days[1])  # the horizon ends first
    assert days[2] == 0.0  # already past its rating


def test_failure_days_rejects_one_dimensional_forecast() -> None:
    with pytest.raises(FeatureError, match="2-D"):
        forecast_failure_days(np.array([1.0]), np.array([2.0]), np.array([1.0, 1.0]))


def test_failure_date_adds_days_to_the_reading_date() -> None:
    frame = forecast_failure_date(
        pd.Series(["2024-05-01", "2024-05-01"]),
        np.array([490.0, 0.0]),
        np.array([500.0, 500.0]),
        np.array([[4.0, 4.0, 4.0], [1.0, 1.0, 1.0]]),
    )
    assert frame["days_to_failure"].iloc[0] == 3.0
    assert frame["predicted_failure_date"].iloc[0] == pd.Timestamp("2024-05-04")
    assert pd.isna(frame["predicted_failure_date"].iloc[1])
