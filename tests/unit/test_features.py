"""Model-input windows and failure dates: the contract shared by training and scoring."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.features import (
    MODEL_INPUT_COLUMNS,
    FeatureError,
    build_history_windows,
    build_training_windows,
    daily_series,
    forecast_failure_date,
    forecast_failure_days,
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
