"""LightGBM with the quantile objective: direct quantiles of each day's and the running total's use.

The point forecast stays mlforecast's recursive LightGBM (`candidates.MlForecastModel`); its
quantiles come from separate quantile-objective models that forecast from the window
directly, the horizon day being a feature. Recursion would feed a 10% quantile back in as
if it were the day's use and drift lower each step; a direct model has nothing to feed back.
The running total gets its own models, trained on totals: it is not the sum of daily
quantiles. Inputs are scale-free (each window divided by its mean day), as the other global
models have them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from models.forecasting.distribution import (
    CUM_LEVELS,
    DAILY_LEVELS,
    ForecastDistribution,
    monotone_cumulative,
    sorted_quantiles,
)
from models.forecasting.features import HISTORY_COLUMN

QUANTILE_PARAMS: dict[str, Any] = {
    "n_estimators": 150,
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_child_samples": 50,
}
# Days of history the features look back over, and the lags taken one by one.
LOOKBACK = 56
LAGS = 14
# Training rows: windows sampled, and horizon days sampled per window.
MAX_WINDOWS = 12_000
DAYS_PER_WINDOW = 5
MIN_SCALE = 0.05


def _aligned(frame: pd.DataFrame) -> np.ndarray:
    """(n, LOOKBACK) each history's last days, right-aligned, NaN before its first day."""
    out = np.full((len(frame), LOOKBACK), np.nan)
    for row, history in enumerate(frame[HISTORY_COLUMN]):
        values = np.nan_to_num(np.asarray(history, dtype=np.float64), nan=0.0)[-LOOKBACK:]
        if len(values):
            out[row, LOOKBACK - len(values) :] = values
    return out


def window_features(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(n, f) scale-free features of each row's window, and each row's scale (mean day)."""
    days = _aligned(frame)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a row without any day
        mean = np.nanmean(days, axis=1)
    scale = np.where(np.isfinite(mean), np.maximum(mean, MIN_SCALE), MIN_SCALE)
    scaled = days / scale[:, None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices of short windows
        means = [np.nanmean(scaled[:, -k:], axis=1) for k in (7, 14, 28, 56)]
        spread = np.nanstd(scaled[:, -28:], axis=1)
    lifetime = pd.to_numeric(frame["lifetime_cycles_used"], errors="coerce").to_numpy(float)
    age = pd.to_numeric(frame["battery_age_days"], errors="coerce").to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        long_run = np.where(age > 0, np.log(np.maximum(lifetime / age, MIN_SCALE) / scale), np.nan)
    features = np.column_stack(
        [scaled[:, -LAGS:][:, ::-1], *means, spread, long_run, np.log(scale)]
    )
    return features, scale


def _same_weekday(scaled: np.ndarray, horizon_day: np.ndarray) -> np.ndarray:
    """Per row, the mean of the last four days on the weekday of its horizon day."""
    offset = 7 - ((horizon_day - 1) % 7 + 1)  # days back from the last day to that weekday
    columns = LOOKBACK - 1 - offset[:, None] - 7 * np.arange(4)[None, :]
    values = np.take_along_axis(scaled, columns, axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values, axis=1)


def _rows(frame: pd.DataFrame, horizon_days: np.ndarray, per_row: int) -> tuple[np.ndarray, ...]:
    """Design matrix for `per_row` horizon days of each row (horizon_days: (n * per_row,))."""
    features, scale = window_features(frame)
    scaled = _aligned(frame) / scale[:, None]
    owner = np.repeat(np.arange(len(frame)), per_row)
    design = np.column_stack(
        [features[owner], horizon_days, _same_weekday(scaled[owner], horizon_days)]
    )
    return design, scale, owner


@dataclass
class QuantileBoosters:
    """Fitted quantile models: daily ones at DAILY_LEVELS, running-total ones at CUM_LEVELS."""

    horizon_days: int
    daily: list[Any] = field(default_factory=list)
    cumulative: list[Any] = field(default_factory=list)

    def predict(self, frame: pd.DataFrame, point: np.ndarray) -> ForecastDistribution:
        """The point forecast with these models' quantiles (in cycles) for contract rows."""
        h = self.horizon_days
        days = np.tile(np.arange(1, h + 1), len(frame))
        design, scale, _ = _rows(frame, days, h)
        s = scale[:, None, None]
        daily = np.stack([m.predict(design).reshape(-1, h) for m in self.daily], axis=-1)
        mean_day = np.stack([m.predict(design).reshape(-1, h) for m in self.cumulative], axis=-1)
        totals = mean_day * np.arange(1, h + 1)[None, :, None] * s
        return ForecastDistribution(
            point,
            daily=sorted_quantiles(np.clip(daily * s, 0.0, None)),
            cumulative=monotone_cumulative(sorted_quantiles(totals)),
        )


def fit_quantile_boosters(
    windows: pd.DataFrame, futures: np.ndarray, seed: int = 0
) -> QuantileBoosters:
    """Fit the daily and running-total quantile models on training windows and their futures."""
    import lightgbm

    rng = np.random.default_rng(seed)
    if len(windows) > MAX_WINDOWS:
        keep = np.sort(rng.choice(len(windows), size=MAX_WINDOWS, replace=False))
        windows, futures = windows.iloc[keep].reset_index(drop=True), futures[keep]
    h = futures.shape[1]
    per_row = min(DAYS_PER_WINDOW, h)
    days = np.concatenate(
        [rng.choice(h, size=per_row, replace=False) + 1 for _ in range(len(windows))]
    )
    design, scale, owner = _rows(windows, days, per_row)
    actual = np.nan_to_num(futures) / scale[:, None]
    daily_target = actual[owner, days - 1]
    mean_target = np.cumsum(actual, axis=1)[owner, days - 1] / days

    def fit(alpha: float, target: np.ndarray) -> Any:
        model = lightgbm.LGBMRegressor(
            objective="quantile",
            alpha=alpha,
            **QUANTILE_PARAMS,
            n_jobs=1,
            random_state=seed,
            verbose=-1,
        )
        return model.fit(design, target)

    return QuantileBoosters(
        horizon_days=h,
        daily=[fit(q, daily_target) for q in DAILY_LEVELS],
        cumulative=[fit(q, mean_target) for q in CUM_LEVELS],
    )
