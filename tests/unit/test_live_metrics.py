"""Live accuracy scored the way the offline holdout is, the champion's verdict, input drift."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from models.forecasting.metrics import nrmse
from models.reporting.live_metrics import (
    LiveMetricsError,
    champion_health,
    compare_live,
    daily_cycles_profile,
    input_drift,
    live_metrics,
    profile_quantiles,
)

pytestmark = pytest.mark.unit

DAY = dt.date(2024, 3, 1)


def pairs(version: str, role: str, offsets: dict[int, float], batteries: int = 4) -> list[dict]:
    """Accuracy rows: per target day offset -> forecast error; actuals 0..batteries-1."""
    rows = []
    for day, error in offsets.items():
        for b in range(batteries):
            rows.append(
                {
                    "model_name": "rnn",
                    "model_version": version,
                    "model_role": role,
                    "battery_id": f"B{b}",
                    "forecast_date": DAY + dt.timedelta(days=day - 1),
                    "horizon_day": 1,
                    "target_date": DAY + dt.timedelta(days=day),
                    "forecast": b + error,
                    "actual": float(b),
                    "error": error,
                }
            )
    return rows


def test_live_nrmse_pools_a_window_and_normalises_like_the_holdout() -> None:
    frame = pd.DataFrame(pairs("1", "champion", {0: 0.1, 1: 0.3, 3: 0.5}))
    daily = live_metrics(frame, window_days=2).set_index("day")
    assert list(daily.index) == [DAY, DAY + dt.timedelta(1), DAY + dt.timedelta(3)]
    second = daily.loc[DAY + dt.timedelta(1)]
    window = frame[frame["target_date"] <= DAY + dt.timedelta(1)]
    assert second["pairs"] == 8 and second["day_pairs"] == 4
    assert second["nrmse"] == pytest.approx(nrmse(window["actual"], window["forecast"]))
    assert second["mae"] == pytest.approx(0.2)
    # Day 3's window (days 2-3) holds day 3 alone: day 2 had no pairs.
    assert daily.loc[DAY + dt.timedelta(3), "pairs"] == 4


def test_live_metrics_empty_and_bad_input() -> None:
    assert live_metrics(pd.DataFrame()).empty
    with pytest.raises(LiveMetricsError, match="target_date"):
        live_metrics(pd.DataFrame({"model_name": ["a"]}))
    with pytest.raises(LiveMetricsError, match="at least 1"):
        live_metrics(pd.DataFrame(pairs("1", "champion", {0: 0.1})), window_days=0)


def test_compare_scores_versions_on_the_pairs_both_have() -> None:
    champion = pairs("1", "champion", {0: 0.4, 1: 0.4})
    shadow = pairs("2", "shadow", {0: 0.1, 1: 0.1})
    extra = pairs("1", "champion", {5: 3.0})  # only the champion scored day 5
    scores = compare_live(pd.DataFrame(champion + shadow + extra)).set_index("model_role")
    assert scores.loc["champion", "pairs"] == scores.loc["shadow", "pairs"] == 8
    assert scores.loc["champion", "mae"] == pytest.approx(0.4)
    assert scores.loc["shadow", "nrmse"] < scores.loc["champion", "nrmse"]
    recent = compare_live(pd.DataFrame(champion + shadow), days=1).set_index("model_role")
    assert recent.loc["shadow", "first_day"] == DAY + dt.timedelta(1)


def test_the_champion_is_degraded_after_consecutive_days_over_the_margin() -> None:
    errors = {0: 0.1, 1: 0.1, 2: 2.0, 3: 2.0, 4: 2.0}
    daily = live_metrics(pd.DataFrame(pairs("1", "champion", errors)), window_days=1)
    holdout = float(daily["nrmse"].iloc[0])
    verdict = champion_health(daily, holdout, margin=0.25, days=3, min_pairs=4)
    assert verdict["status"] == "degraded" and verdict["days_over"] == 3
    assert verdict["threshold"] == pytest.approx(holdout * 1.25)
    assert verdict["day"] == DAY + dt.timedelta(4)
    assert champion_health(daily, holdout, 0.25, 4, 4)["status"] == "ok"
    # Too few pairs, or no holdout figure: no verdict.
    assert champion_health(daily, holdout, 0.25, 3, min_pairs=100)["status"] == "unknown"
    assert champion_health(daily, None, 0.25, 3, 4)["status"] == "unknown"


def test_a_gap_in_the_days_breaks_the_run() -> None:
    errors = {0: 2.0, 1: 2.0, 3: 2.0}
    daily = live_metrics(pd.DataFrame(pairs("1", "champion", errors)), window_days=1)
    assert champion_health(daily, 0.01, 0.25, 2, 4)["days_over"] == 1


def test_drift_is_small_on_the_training_distribution_and_large_off_it() -> None:
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"daily_cycles_used": rng.gamma(2.0, 0.5, 5_000)})
    profile = daily_cycles_profile(train)
    assert len(profile) == 21 and profile["train_daily_cycles_q050"] > 0
    levels, quantiles = profile_quantiles({**profile, "holdout_nrmse": 0.03})
    same = input_drift(rng.gamma(2.0, 0.5, 3_000), levels, quantiles)
    shifted = input_drift(rng.gamma(2.0, 0.9, 3_000), levels, quantiles)
    assert same["psi"] < 0.05 and same["ks"] < 0.05
    assert shifted["psi"] > 0.25 and shifted["ks"] > 0.2 and shifted["ks_pvalue"] < 1e-6
    assert profile_quantiles({"holdout_nrmse": 0.03}) is None


def test_drift_handles_repeated_quantiles_and_no_readings() -> None:
    # Many idle days: the lower quantiles all sit at 0.
    values = np.concatenate([np.zeros(600), np.linspace(0.1, 2.0, 400)])
    levels, quantiles = profile_quantiles(
        daily_cycles_profile(pd.DataFrame({"daily_cycles_used": values}))
    )
    drift = input_drift(values, levels, quantiles)
    assert drift["psi"] < 0.05 and np.isfinite(drift["ks"])
    assert np.isnan(input_drift(np.array([]), levels, quantiles)["psi"])
