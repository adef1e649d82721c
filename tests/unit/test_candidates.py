"""Every AutoML candidate, fitted on a tiny fleet, honours the forecast contract on any window."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from apps.training_data import simulated_readings
from models.forecasting.candidates import (
    CandidateError,
    FitRequest,
    StatsForecastModel,
    default_candidates,
    select_candidates,
)
from models.forecasting.distribution import OUTPUT_COLUMNS, ForecastDistribution
from models.forecasting.pyfunc import ForecastPythonModel, forecast_input_example

pytestmark = pytest.mark.unit

# Tiny settings: these tests check the contract, the benchmark checks quality.
FAST_LSTM = {"epochs": 1, "max_windows": 200, "max_val_windows": 100, "time_budget_s": 10.0}
NAMES = [c.name for c in default_candidates()]


def _point(output: pd.DataFrame) -> np.ndarray:
    """The daily point forecast of the contract's output frame, (rows, horizon)."""
    assert list(output.columns) == list(OUTPUT_COLUMNS)
    return ForecastDistribution.from_output(output, 30).point


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    return simulated_readings(batteries=6, days=90, seed=4)


def _windows() -> pd.DataFrame:
    """Full and short histories, a parked (all-zero) one, a day without a reading (None)."""
    example = forecast_input_example()
    extra = pd.DataFrame(
        {
            "daily_cycles": [[1.3], [0.9, 1.1, 1.0], [0.0] * 20, [1.0, None, 1.2] * 10],
            "lifetime_cycles_used": [1.0, 3.0, 200.0, 300.0],
            "battery_rated_cycles": [500.0] * 4,
            "battery_age_days": [1.0, 3.0, 150.0, 220.0],
        }
    )
    return pd.concat([example, extra], ignore_index=True)


@pytest.mark.parametrize("name", NAMES)
def test_candidate_forecasts_n_by_30_from_any_window(name: str, history: pd.DataFrame) -> None:
    (candidate,) = select_candidates([name], **FAST_LSTM)
    model = candidate.fit(FitRequest(history, time_budget_s=10.0))
    assert isinstance(model, ForecastPythonModel)
    windows = _windows()
    forecast = _point(
        model.predict(None, windows)
    )  # the pyfunc entry point, contract checks included
    assert forecast.shape == (len(windows), 30) and forecast.dtype == np.float64
    assert np.isfinite(forecast).all() and (forecast >= 0).all()
    # A normal week's use forecasts a normal level, not zero or a runaway.
    assert 0.2 < forecast[0].mean() < 3.0
    assert _point(model.predict(None, windows.iloc[0:0])).shape == (0, 30)


def test_statsforecast_short_windows_take_the_fallback_chain() -> None:
    from statsforecast.models import SeasonalWindowAverage

    model = StatsForecastModel(SeasonalWindowAverage(7, 4), min_days=28)
    week = [1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.2]
    rows = pd.DataFrame(
        {
            "daily_cycles": [np.array(week * 2), np.array([2.0, 4.0])],
            "lifetime_cycles_used": [1.0, 1.0],
            "battery_rated_cycles": [9.0, 9.0],
            "battery_age_days": [1.0, 1.0],
        }
    )
    forecast = model.forecast(rows)
    # Two weeks: too short for 4 weeks of averages, so seasonal naive repeats the last week.
    assert forecast[0, :7] == pytest.approx(week) and forecast[0, 7:14] == pytest.approx(week)
    # Two days: the mean of what there is.
    assert forecast[1] == pytest.approx(np.full(30, 3.0))


def test_candidates_run_cheapest_first_with_baselines_marked() -> None:
    candidates = default_candidates()
    baselines = [c.baseline for c in candidates]
    assert baselines == sorted(baselines, reverse=True) and any(baselines)
    assert {"naive", "seasonal_naive", "auto_ets", "arima", "lightgbm", "lstm"} <= set(NAMES)
    assert len(set(NAMES)) == len(NAMES)


def test_unknown_candidate_names_the_choices() -> None:
    with pytest.raises(CandidateError, match="Unknown candidate\\(s\\) prophet; choose from naive"):
        select_candidates(["naive", "prophet"])
    assert [c.name for c in select_candidates(["lstm", "naive"])] == ["naive", "lstm"]
