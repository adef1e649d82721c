"""Quantile bands from aggregated residuals, for forecasters without a distribution of their own.

A per-window model (statsforecast's, the cycle rule) forecasts past windows of the training
history whose next days are known; the errors, divided by each window's mean daily use (so one
band serves light and heavy users), give empirical quantiles per horizon day -- of each day's
error, and of the error of the running total. The total's band is measured on totals, not
added up from daily bands: a slow drift moves every day the same way, so daily errors do not
cancel out over a month the way independent ones would.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.errors import PitstopError
from models.forecasting.distribution import (
    CUM_LEVELS,
    DAILY_LEVELS,
    ForecastDistribution,
    monotone_cumulative,
    sorted_quantiles,
)
from models.forecasting.features import HISTORY_COLUMN, build_training_windows

# Mean daily use below this is a parked window: its band is scaled by this instead.
MIN_SCALE = 0.05
# Past windows a band is measured on, at most (sampled from the most recent ones).
BACKTEST_WINDOWS = 1500
# Windows whose base day is within this many days of the history's end (before its last
# horizon) are the backtest's pool: a band should describe the recent past.
BACKTEST_DAYS = 120


class BandError(PitstopError, ValueError):
    """A band that cannot be measured; the message says what is missing."""


def window_scale(frame: pd.DataFrame) -> np.ndarray:
    """Each row's mean daily use over its history (NaN days parked), at least MIN_SCALE."""
    means = np.array(
        [
            np.nan_to_num(np.asarray(h, dtype=np.float64), nan=0.0).mean()
            for h in frame[HISTORY_COLUMN]
        ]
    )
    return np.maximum(means, MIN_SCALE)


@dataclass(frozen=True)
class ResidualBands:
    """Per horizon day, quantiles of scaled daily errors (h, len(DAILY_LEVELS)) and of scaled
    running-total errors (h, len(CUM_LEVELS))."""

    daily: np.ndarray
    cumulative: np.ndarray
    windows: int

    @classmethod
    def fit(cls, point: np.ndarray, actual: np.ndarray, scale: np.ndarray) -> ResidualBands:
        """Bands from forecasts of past windows and what followed (NaN: no reading, skipped)."""
        point, actual = np.asarray(point, float), np.asarray(actual, float)
        if point.shape != actual.shape or point.ndim != 2 or len(point) < 20:
            raise BandError(
                f"Bands need at least 20 past forecasts with their actuals, got {point.shape}."
            )
        ratio = 1.0 / np.asarray(scale, float)[:, None]
        daily = (actual - point) * ratio
        # A day without a reading counted as parked in the total, as in the training windows.
        totals = np.cumsum(np.nan_to_num(actual), axis=1) - np.cumsum(point, axis=1)
        return cls(
            daily=np.nanquantile(daily, DAILY_LEVELS, axis=0).T,
            cumulative=np.nanquantile(totals * ratio, CUM_LEVELS, axis=0).T,
            windows=len(point),
        )

    def apply(self, point: np.ndarray, scale: np.ndarray) -> ForecastDistribution:
        """The point forecast with these bands around it, scaled by each row's use."""
        point = np.asarray(point, float)
        s = np.asarray(scale, float)[:, None, None]
        daily = np.clip(point[:, :, None] + s * self.daily[None], 0.0, None)
        totals = np.cumsum(point, axis=1)[:, :, None] + s * self.cumulative[None]
        return ForecastDistribution(
            point,
            daily=sorted_quantiles(daily),
            cumulative=monotone_cumulative(sorted_quantiles(totals)),
        )


def backtest_windows(
    history: pd.DataFrame,
    window_days: int,
    horizon_days: int,
    max_windows: int = BACKTEST_WINDOWS,
    recent_days: int = BACKTEST_DAYS,
    seed: int = 0,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Past windows of `history` with their known next days, from its recent past, sampled."""
    windows, futures = build_training_windows(history, window_days, horizon_days)
    dates = pd.to_datetime(windows["date"])
    recent = np.flatnonzero((dates > dates.max() - pd.Timedelta(days=recent_days)).to_numpy())
    rng = np.random.default_rng(seed)
    if len(recent) > max_windows:
        recent = np.sort(rng.choice(recent, size=max_windows, replace=False))
    return windows.iloc[recent].reset_index(drop=True), futures[recent]
