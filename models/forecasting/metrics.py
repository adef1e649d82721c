"""Forecast accuracy metrics and the quality of the 30-day failure alert they lead to.

Shared by the LSTM trainer, the AutoML sweep and the benchmarks so every model is scored
the same way. RMSE, MAE and sMAPE are utilsforecast's losses over all scored days pooled;
MASE scales MAE by the seasonal naive error pooled over the fleet's series. Array metrics
ignore positions where the actual value is NaN (a day with no reading), so callers can pass
a ragged horizon padded with NaN.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd
from utilsforecast import losses

from core.errors import PitstopError
from models.forecasting.features import build_history_windows, model_input_columns


class MetricError(PitstopError, ValueError):
    """Inputs that cannot be scored."""


def _pairs(actual: np.ndarray, predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    actual = np.asarray(actual, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    if actual.shape != predicted.shape:
        raise MetricError(f"actual {actual.shape} and predicted {predicted.shape} differ in shape.")
    keep = np.isfinite(actual)
    if not keep.any():
        raise MetricError("No actual values to score against.")
    return actual[keep], predicted[keep]


def _scored(actual: np.ndarray, predicted: np.ndarray) -> pd.DataFrame:
    """Pairs with an actual value as one series in utilsforecast's long format, so its
    per-series losses are pooled over every battery and day."""
    a, p = _pairs(actual, predicted)
    return pd.DataFrame({"unique_id": 0, "y": a, "forecast": p})


def _loss(loss: Callable[..., pd.DataFrame], scored: pd.DataFrame) -> float:
    return float(loss(scored, models=["forecast"])["forecast"].iloc[0])


def rmse(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Root mean squared error."""
    return _loss(losses.rmse, _scored(actual, predicted))


def nrmse(actual: np.ndarray, predicted: np.ndarray) -> float:
    """RMSE divided by the range (max - min) of the actual values, Azure ML's NRMSE.

    NaN when every actual value is the same (the range is 0).
    """
    a, _ = _pairs(actual, predicted)
    spread = float(a.max() - a.min())
    return rmse(actual, predicted) / spread if spread > 0 else float("nan")


def mae(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Mean absolute error."""
    return _loss(losses.mae, _scored(actual, predicted))


def smape(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Symmetric MAPE in percent (0-200); a day where both are 0 counts as a perfect 0.

    utilsforecast's sMAPE divides by |a| + |p| (0-1); the usual percent form divides by
    their mean, so it is 200 times that.
    """
    return 200.0 * _loss(losses.smape, _scored(actual, predicted))


def seasonal_naive_scale(series: Iterable[np.ndarray], season: int = 7) -> float:
    """MASE's denominator: in-sample MAE of the seasonal naive forecast, pooled over series."""
    if season < 1:
        raise MetricError(f"season must be at least 1, got {season}.")
    diffs = [
        np.abs(s[season:] - s[:-season])
        for s in (np.asarray(x, dtype=np.float64) for x in series)
        if len(s) > season
    ]
    if not diffs:
        raise MetricError(f"No series is longer than the season ({season} days) to scale MASE.")
    pooled = np.concatenate(diffs)
    pooled = pooled[np.isfinite(pooled)]
    return float(pooled.mean()) if len(pooled) else float("nan")


def mase(actual: np.ndarray, predicted: np.ndarray, scale: float) -> float:
    """Mean absolute scaled error: MAE over `scale` (see `seasonal_naive_scale`)."""
    if not scale or not np.isfinite(scale):
        return float("nan")
    return mae(actual, predicted) / scale


def forecast_metrics(
    actual: np.ndarray, predicted: np.ndarray, naive_scale: float | None = None
) -> dict[str, float]:
    """NRMSE, RMSE, MAE, sMAPE and (given the naive scale) MASE in one dict."""
    scored = _scored(actual, predicted)
    root = _loss(losses.rmse, scored)
    spread = float(scored["y"].max() - scored["y"].min())
    metrics = {
        "nrmse": root / spread if spread > 0 else float("nan"),
        "rmse": root,
        "mae": _loss(losses.mae, scored),
        "smape": 200.0 * _loss(losses.smape, scored),
    }
    if naive_scale is not None:
        usable = bool(naive_scale) and np.isfinite(naive_scale)
        metrics["mase"] = metrics["mae"] / naive_scale if usable else float("nan")
    return metrics


def holdout_targets(
    train: pd.DataFrame, holdout: pd.DataFrame, window_days: int, horizon_days: int
) -> tuple[pd.DataFrame, np.ndarray]:
    """Model input at each battery's last training reading and the actual days after it.

    Returns the input rows (one per battery with both training and holdout readings) and
    an (n, horizon) array of actual daily cycles, NaN where the holdout has no reading.
    """
    last = train.assign(date=pd.to_datetime(train["date"])).groupby("battery_id")["date"].max()
    last = last[last.index.isin(holdout["battery_id"].unique())]
    if last.empty:
        raise MetricError("No battery has both training and holdout readings.")
    inputs = build_history_windows(train, window_days, last.reset_index())
    actual = np.full((len(inputs), horizon_days), np.nan)
    future = holdout[holdout["battery_id"].isin(last.index)]
    future = future.assign(date=pd.to_datetime(future["date"])).drop_duplicates(
        ["battery_id", "date"]
    )
    row_of = pd.Series(np.arange(len(inputs)), index=inputs["battery_id"].to_numpy())
    rows = row_of.reindex(future["battery_id"].to_numpy()).to_numpy()
    origin = last.reindex(future["battery_id"].to_numpy()).to_numpy()
    step = (future["date"].to_numpy() - origin) // np.timedelta64(1, "D")
    ok = (step >= 1) & (step <= horizon_days)
    cycles = future["daily_cycles_used"].to_numpy(dtype=np.float64)
    actual[rows[ok], step[ok] - 1] = cycles[ok]
    return inputs, actual


def evaluate_holdout(
    predict: Callable[[pd.DataFrame], np.ndarray],
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    window_days: int,
    horizon_days: int,
    season: int = 7,
) -> dict[str, float]:
    """Forecast metrics of `predict` on a holdout (see `models.forecasting.data.split_holdout`)."""
    inputs, actual = holdout_targets(train, holdout, window_days, horizon_days)
    predicted = np.asarray(predict(inputs[model_input_columns(inputs)]), dtype=np.float64)
    if predicted.shape != actual.shape:
        raise MetricError(f"The model returned {predicted.shape}, expected {actual.shape}.")
    series = [
        g.sort_values("date")["daily_cycles_used"].to_numpy()
        for _, g in train.groupby("battery_id")
    ]
    return forecast_metrics(actual, predicted, seasonal_naive_scale(series, season))


def alert_quality(
    forecasts: pd.DataFrame,
    truth: pd.DataFrame,
    within_days: int = 30,
    grace_days: int = 0,
) -> dict[str, float]:
    """Recall, precision and median lead time of the "fails within `within_days`" alert.

    `forecasts`: one row per scored reading with `battery_id`, `date` and
    `predicted_failure_date` (NaT when no failure is forecast within the horizon).
    `truth`: `battery_id` and `failure_date` (NaT or absent when it never failed).

    A battery's alert is raised on its first reading whose predicted failure is at most
    `within_days` away. It is correct when the battery really fails within
    `within_days + grace_days` of that date. A battery should have been alerted when it
    failed at most `within_days` after one of its scored readings. Lead time is failure
    date minus alert date, over correctly alerted batteries.
    """
    for frame, needed, what in (
        (forecasts, ("battery_id", "date", "predicted_failure_date"), "forecasts"),
        (truth, ("battery_id", "failure_date"), "truth"),
    ):
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise MetricError(f"{what} needs column(s) {', '.join(missing)}.")
    scored = forecasts.assign(
        battery_id=forecasts["battery_id"].astype(str),
        date=pd.to_datetime(forecasts["date"]),
        predicted_failure_date=pd.to_datetime(forecasts["predicted_failure_date"]),
    )
    failures = (
        truth.assign(
            battery_id=truth["battery_id"].astype(str),
            failure_date=pd.to_datetime(truth["failure_date"]),
        )
        .drop_duplicates("battery_id")
        .set_index("battery_id")["failure_date"]
    )
    triggering = scored[(scored["predicted_failure_date"] - scored["date"]).dt.days <= within_days]
    alert_date = triggering.groupby("battery_id")["date"].min()
    last_scored = scored.groupby("battery_id")["date"].max()
    failure = failures.reindex(last_scored.index)
    due = failure.notna() & ((failure - last_scored).dt.days <= within_days)
    lead = (failures.reindex(alert_date.index) - alert_date).dt.days
    correct = lead.notna() & (lead >= 0) & (lead <= within_days + grace_days)
    recalled = due & last_scored.index.isin(alert_date.index[lead.notna() & (lead >= 0)])
    return {
        "batteries_due": float(due.sum()),
        "alerts": float(len(alert_date)),
        "recall": float(recalled.sum() / due.sum()) if due.sum() else float("nan"),
        "precision": float(correct.sum() / len(alert_date)) if len(alert_date) else float("nan"),
        "median_lead_days": float(lead[correct].median()) if correct.any() else float("nan"),
    }
