"""The cycle rule: its days to failure, its tuning, and the rule as a contract forecaster."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from apps.training_data import simulated_readings
from models.forecasting.bands import BandError, ResidualBands
from models.forecasting.candidates import FitRequest
from models.forecasting.features import build_history_windows
from models.forecasting.pyfunc import coerce_model_input
from models.forecasting.rule import (
    CycleRule,
    RuleForecastModel,
    fit_rule,
    rule_days,
    tune_rule,
)

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def readings() -> pd.DataFrame:
    return simulated_readings(batteries=40, days=240, seed=5)


def test_rule_days_divide_what_is_left_by_the_recent_mean() -> None:
    frame = pd.DataFrame(
        {
            "battery_id": "b",
            "date": pd.date_range("2024-01-01", periods=4, freq="D"),
            "daily_cycles_used": [1.0, 3.0, 2.0, 2.0],
            "lifetime_cycles_used": [91.0, 94.0, 96.0, 100.0],
            "battery_rated_cycles": 100.0,
        }
    )
    days = rule_days(frame.drop(index=2), mean_days=2)  # day 3 missing: parked, 0 cycles
    assert days["days"].round(3).tolist() == [9.0, 3.0, 0.0]  # 9/1, 6/2, at the rating


def test_tuning_finds_a_rule_that_reaches_the_precision(readings: pd.DataFrame) -> None:
    rule, scores = tune_rule(readings, target_precision=0.97)
    assert rule.precision >= 0.97 and rule.recall > 0.9
    assert rule.mean_days in scores["mean_days"].unique()
    best = scores[
        (scores["mean_days"] == rule.mean_days) & (scores["alert_days"] == rule.alert_days)
    ]
    assert best["recall"].iloc[0] == rule.recall
    assert "last 7 days" in CycleRule(7, 20).describe()


def test_without_a_failure_the_rule_stays_untuned(readings: pd.DataFrame, caplog) -> None:
    young = readings.assign(battery_rated_cycles=1e6)
    rule, scores = tune_rule(young, 0.97)
    assert (rule.mean_days, rule.alert_days, rule.tuned) == (28, 25, False) and scores.empty
    assert "untuned" in caplog.text


def test_the_rule_forecasts_flat_within_its_own_bands(readings: pd.DataFrame) -> None:
    model = fit_rule(FitRequest(readings, window_days=60, horizon_days=30, seed=0))
    assert isinstance(model, RuleForecastModel) and model.bands is not None
    last = readings.groupby("battery_id", as_index=False)["date"].max()
    rows = coerce_model_input(build_history_windows(readings, 60, last))
    dist = model.raw_distribution(rows)
    assert np.allclose(dist.point, dist.point[:, :1])  # flat
    tail = [np.nan_to_num(h)[-model.rule.mean_days :].mean() for h in rows["daily_cycles"]]
    np.testing.assert_allclose(dist.point[:, 0], tail)
    assert dist.cumulative is not None and dist.risk is not None
    assert np.all(np.diff(dist.cumulative, axis=2) >= 0)  # levels never cross
    frame = model.predict(None, rows.drop(columns=["battery_id", "date"]))
    assert frame["failure_risk"].isna().all()  # uncalibrated: no risk in the contract yet


def test_bands_need_enough_past_forecasts() -> None:
    with pytest.raises(BandError, match="at least 20"):
        ResidualBands.fit(np.ones((5, 3)), np.ones((5, 3)), np.ones(5))
    point = np.ones((50, 4))
    actual = point + np.random.default_rng(0).normal(0, 0.1, (50, 4))
    bands = ResidualBands.fit(point, actual, np.ones(50))
    # A running total's band widens with the days it adds up.
    width = bands.cumulative[:, -1] - bands.cumulative[:, 0]
    assert width[-1] > width[0] > 0
