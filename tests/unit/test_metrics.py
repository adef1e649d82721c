"""Forecast metrics and alert quality, against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.forecasting.metrics import (
    MetricError,
    alert_quality,
    evaluate_holdout,
    forecast_metrics,
    holdout_targets,
    mae,
    mase,
    nrmse,
    rmse,
    seasonal_naive_scale,
    smape,
)

pytestmark = pytest.mark.unit


def test_nrmse_is_rmse_over_the_range_of_actuals() -> None:
    actual = np.array([[1.0, 3.0], [5.0, 1.0]])
    predicted = np.array([[2.0, 3.0], [5.0, 0.0]])
    assert rmse(actual, predicted) == pytest.approx(np.sqrt(2 / 4))
    assert nrmse(actual, predicted) == pytest.approx(np.sqrt(0.5) / 4.0)


def test_nan_actuals_are_left_out() -> None:
    actual = np.array([1.0, np.nan, 3.0])
    predicted = np.array([2.0, 100.0, 3.0])
    assert mae(actual, predicted) == pytest.approx(0.5)


def test_nrmse_of_constant_actuals_is_nan() -> None:
    assert np.isnan(nrmse(np.array([2.0, 2.0]), np.array([1.0, 3.0])))


def test_metrics_reject_mismatched_shapes() -> None:
    with pytest.raises(MetricError, match="differ in shape"):
        mae(np.zeros((2, 3)), np.zeros((3, 2)))


def test_metrics_need_some_actual_values() -> None:
    with pytest.raises(MetricError, match="No actual values"):
        rmse(np.array([np.nan]), np.array([1.0]))


def test_smape_in_percent_with_zero_days_as_perfect() -> None:
    actual = np.array([0.0, 1.0, 2.0])
    predicted = np.array([0.0, 3.0, 2.0])
    # Terms: 0 (both zero), 2*2/4 = 1, 0 -> mean 1/3 -> 33.3 %.
    assert smape(actual, predicted) == pytest.approx(100.0 / 3.0)


def test_mase_scales_mae_by_the_seasonal_naive_error() -> None:
    series = [np.array([1.0, 2.0, 1.0, 4.0]), np.array([5.0])]  # the second is too short
    scale = seasonal_naive_scale(series, season=2)
    assert scale == pytest.approx((0.0 + 2.0) / 2)
    assert mase(np.array([1.0, 1.0]), np.array([2.0, 3.0]), scale) == pytest.approx(1.5)
    assert np.isnan(mase(np.array([1.0]), np.array([1.0]), 0.0))


def test_seasonal_scale_needs_a_series_longer_than_the_season() -> None:
    with pytest.raises(MetricError, match="longer than the season"):
        seasonal_naive_scale([np.array([1.0, 2.0])], season=7)


def test_forecast_metrics_bundle() -> None:
    metrics = forecast_metrics(np.array([1.0, 3.0]), np.array([1.0, 2.0]), naive_scale=0.5)
    assert set(metrics) == {"nrmse", "rmse", "mae", "smape", "mase"}
    assert metrics["mase"] == pytest.approx(1.0)


def _readings(battery: str, cycles: list[float]) -> pd.DataFrame:
    dates = pd.date_range("2024-01-01", periods=len(cycles), freq="D").strftime("%Y-%m-%d")
    return pd.DataFrame(
        {
            "battery_id": battery,
            "date": dates,
            "daily_cycles_used": cycles,
            "lifetime_cycles_used": np.cumsum(cycles),
            "battery_rated_cycles": 1000.0,
            "battery_age_days": np.arange(len(cycles)),
        }
    )


def test_holdout_targets_align_days_after_the_last_training_reading() -> None:
    readings = _readings("b1", [1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    train, holdout = readings.iloc[:4], readings.iloc[[4, 5]]
    inputs, actual = holdout_targets(train, holdout.iloc[[1]], window_days=3, horizon_days=3)
    assert inputs["daily_cycles"].iloc[0].tolist() == [2.0, 3.0, 4.0]
    assert np.isnan(actual[0, 0]) and actual[0, 1] == 6.0 and np.isnan(actual[0, 2])


def test_holdout_targets_need_overlapping_batteries() -> None:
    with pytest.raises(MetricError, match="both training and holdout"):
        holdout_targets(_readings("a", [1.0]), _readings("b", [1.0]), 3, 3)


def test_evaluate_holdout_scores_a_perfect_forecast_as_zero() -> None:
    readings = _readings("b1", [1.0, 2.0] * 10)
    train, holdout = readings.iloc[:16], readings.iloc[16:]
    metrics = evaluate_holdout(
        lambda frame: np.array([[1.0, 2.0, 1.0, 2.0]] * len(frame)), train, holdout, 8, 4, season=3
    )
    assert metrics["nrmse"] == 0.0 and metrics["mase"] == 0.0


def _alerts_case() -> tuple[pd.DataFrame, pd.DataFrame]:
    days = pd.date_range("2024-01-01", periods=60, freq="D")

    def scored(battery: str, predicted: pd.Timestamp | None, from_day: int, to_day: int):
        frame = pd.DataFrame({"battery_id": battery, "date": days[from_day:to_day]})
        frame["predicted_failure_date"] = pd.NaT
        if predicted is not None:
            frame.loc[frame.index[-10:], "predicted_failure_date"] = predicted
        return frame

    forecasts = pd.concat(
        [
            # a: fails day 50, alerted on day 30 (20 days of warning): a hit.
            scored("a", days[50], 0, 40).pipe(
                lambda f: f.assign(
                    predicted_failure_date=f["predicted_failure_date"].where(
                        f["date"] >= days[30], pd.NaT
                    )
                )
            ),
            # b: never fails but is alerted: a false alarm.
            scored("b", days[55], 0, 40),
            # c: fails day 45 with no alert: a miss.
            scored("c", None, 0, 44),
            # d: fails long after the data ends: neither due nor alerted.
            scored("d", None, 0, 40),
        ],
        ignore_index=True,
    )
    truth = pd.DataFrame(
        {
            "battery_id": ["a", "b", "c", "d"],
            "failure_date": [days[50], None, days[45], "2025-01-01"],
        }
    )
    return forecasts, truth


def test_alert_quality_recall_precision_and_lead_time() -> None:
    forecasts, truth = _alerts_case()
    quality = alert_quality(forecasts, truth, within_days=30)
    assert quality["batteries_due"] == 2.0  # a and c
    assert quality["alerts"] == 2.0  # a and b
    assert quality["recall"] == pytest.approx(0.5)
    assert quality["precision"] == pytest.approx(0.5)
    assert quality["median_lead_days"] == 20.0


def test_alert_too_early_is_not_precise_unless_graced() -> None:
    days = pd.date_range("2024-01-01", periods=60, freq="D")
    forecasts = pd.DataFrame(
        {"battery_id": "a", "date": days[:40], "predicted_failure_date": days[40]}
    )
    truth = pd.DataFrame({"battery_id": ["a"], "failure_date": [days[45]]})
    # Predicted 30 days out on day 10, it really fails 35 days after that alert.
    strict = alert_quality(forecasts, truth, within_days=30)
    assert strict["precision"] == 0.0 and strict["recall"] == 1.0
    graced = alert_quality(forecasts, truth, within_days=30, grace_days=7)
    assert graced["precision"] == 1.0 and graced["median_lead_days"] == 35.0


def test_alert_quality_missing_column() -> None:
    with pytest.raises(MetricError, match="failure_date"):
        alert_quality(
            pd.DataFrame({"battery_id": [], "date": [], "predicted_failure_date": []}),
            pd.DataFrame({"battery_id": []}),
        )
