"""What a forecaster returns: the daily point forecast, quantiles of daily and cumulative use,
and the 30-day failure risk -- and the contract's output frame that carries them.

Cumulative quantiles are their own forecast, not sums of daily quantiles (the 90% quantile of
a 30-day total is far below the sum of thirty daily 90% quantiles). Each family derives them
its own way (the LSTM's pinball head, LightGBM's quantile objective, aggregated residuals for
per-window models and the rule); the risk reads them at the alert horizon:

    raw risk = P(cumulative use over the horizon >= rated - lifetime cycles)

from the quantiles at `CUM_LEVELS`, interpolated, then calibrated (`models.forecasting.risk`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.errors import PitstopError

# Quantile levels of daily use in the contract's output (daily_q10, daily_q50, daily_q90).
DAILY_LEVELS: tuple[float, ...] = (0.1, 0.5, 0.9)
# Quantile levels of cumulative use every forecaster estimates; the risk reads the CDF from
# them, so the low ones (a battery certain to reach its rating) are dense. The contract's
# output shows 10/50/90 (cum_q10, cum_q50, cum_q90).
CUM_LEVELS: tuple[float, ...] = (0.02, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.98)
SHOWN_LEVELS: tuple[float, ...] = (0.1, 0.5, 0.9)

POINT_COLUMN = "forecast"
RISK_COLUMN = "failure_risk"
DAILY_COLUMNS: tuple[str, ...] = tuple(f"daily_q{round(100 * q)}" for q in SHOWN_LEVELS)
CUM_COLUMNS: tuple[str, ...] = tuple(f"cum_q{round(100 * q)}" for q in SHOWN_LEVELS)
QUANTILE_COLUMNS: tuple[str, ...] = (*DAILY_COLUMNS, *CUM_COLUMNS)
OUTPUT_COLUMNS: tuple[str, ...] = (POINT_COLUMN, *QUANTILE_COLUMNS, RISK_COLUMN)


class DistributionError(PitstopError, ValueError):
    """A forecast output that does not have the contract's shape."""


@dataclass
class ForecastDistribution:
    """One forecaster's answer for n rows over a horizon of h days.

    `daily` (n, h, len(daily_levels)) and `cumulative` (n, h, len(cum_levels)) are None for
    a model that gives only a point forecast (models registered before quantiles existed);
    `risk` (n,) is None when the model has no calibrated risk, NaN for a row it cannot judge.
    """

    point: np.ndarray
    daily: np.ndarray | None = None
    cumulative: np.ndarray | None = None
    risk: np.ndarray | None = None
    daily_levels: tuple[float, ...] = DAILY_LEVELS
    cum_levels: tuple[float, ...] = CUM_LEVELS

    def __post_init__(self) -> None:
        self.point = np.asarray(self.point, dtype=np.float64)
        if self.point.ndim != 2:
            raise DistributionError(
                f"A point forecast must be (rows, horizon), got {self.point.shape}."
            )
        n, h = self.point.shape
        for name, levels in (("daily", self.daily_levels), ("cumulative", self.cum_levels)):
            value = getattr(self, name)
            if value is not None and np.shape(value) != (n, h, len(levels)):
                raise DistributionError(
                    f"{name} quantiles must be {(n, h, len(levels))}, got {np.shape(value)}."
                )
            if value is not None and any(q not in levels for q in SHOWN_LEVELS):
                raise DistributionError(f"{name} quantiles must include {SHOWN_LEVELS}.")
        if self.risk is not None and np.shape(self.risk) != (n,):
            raise DistributionError(f"risk must be ({n},), got {np.shape(self.risk)}.")

    def __len__(self) -> int:
        return len(self.point)

    @property
    def horizon(self) -> int:
        """Days forecast per row."""
        return int(self.point.shape[1])

    def shown_daily(self) -> np.ndarray | None:
        """(n, h, 3) daily quantiles at SHOWN_LEVELS (None without quantiles)."""
        return _shown(self.daily, self.daily_levels)

    def shown_cumulative(self) -> np.ndarray | None:
        """(n, h, 3) cumulative quantiles at SHOWN_LEVELS (None without quantiles)."""
        return _shown(self.cumulative, self.cum_levels)

    def to_frame(self) -> pd.DataFrame:
        """The contract's output: one row per input row, arrays per column (null if absent)."""
        n = len(self)
        frame = pd.DataFrame({POINT_COLUMN: list(self.point)})
        for columns, values in (
            (DAILY_COLUMNS, self.shown_daily()),
            (CUM_COLUMNS, self.shown_cumulative()),
        ):
            for k, column in enumerate(columns):
                frame[column] = [None] * n if values is None else list(values[:, :, k])
        frame[RISK_COLUMN] = np.full(n, np.nan) if self.risk is None else self.risk
        return frame

    @classmethod
    def from_output(cls, output: object, horizon: int | None = None) -> ForecastDistribution:
        """A forecaster's pyfunc output: the contract frame, or the 2-D array of the models
        registered before quantiles existed (point forecast only)."""
        if isinstance(output, pd.DataFrame) and POINT_COLUMN in output.columns:
            point = _matrix(output[POINT_COLUMN], horizon)
            risk = None
            if RISK_COLUMN in output.columns:
                values = pd.to_numeric(output[RISK_COLUMN], errors="coerce").to_numpy(float)
                risk = None if len(values) and np.isnan(values).all() else values
            return cls(
                point,
                daily=_stack(output, DAILY_COLUMNS, point.shape),
                cumulative=_stack(output, CUM_COLUMNS, point.shape),
                risk=risk,
                daily_levels=SHOWN_LEVELS,
                cum_levels=SHOWN_LEVELS,
            )
        point = None if isinstance(output, pd.DataFrame) else np.asarray(output, dtype=np.float64)
        if point is None or point.ndim != 2:
            raise DistributionError(
                f"A forecaster returned {type(output).__name__} of shape {np.shape(output)}; "
                "expected the contract frame or a (rows, horizon) array."
            )
        return cls(point)


def _shown(values: np.ndarray | None, levels: tuple[float, ...]) -> np.ndarray | None:
    return None if values is None else values[:, :, [levels.index(q) for q in SHOWN_LEVELS]]


def _matrix(values: pd.Series, horizon: int | None) -> np.ndarray:
    rows = [np.asarray(v, dtype=np.float64) for v in values]
    width = horizon if horizon is not None else (len(rows[0]) if rows else 0)
    if any(r.shape != (width,) for r in rows):
        raise DistributionError(f"Every '{values.name}' must hold {width} days.")
    return np.stack(rows) if rows else np.zeros((0, width))


def _stack(
    frame: pd.DataFrame, columns: tuple[str, ...], shape: tuple[int, int]
) -> np.ndarray | None:
    if any(c not in frame.columns for c in columns) or frame[columns[0]].isna().any():
        return None
    if shape[0] == 0:
        return np.zeros((0, shape[1], len(columns)))
    return np.stack([_matrix(frame[c], shape[1]) for c in columns], axis=-1)


def sorted_quantiles(values: np.ndarray) -> np.ndarray:
    """Quantiles (..., levels) made non-crossing by sorting across levels (rearrangement)."""
    return np.sort(values, axis=-1)


def monotone_cumulative(cumulative: np.ndarray) -> np.ndarray:
    """Cumulative quantiles (n, h, k) made non-decreasing over the horizon and non-negative."""
    return np.maximum.accumulate(np.clip(cumulative, 0.0, None), axis=1)


def exceedance_probability(
    quantiles: np.ndarray, remaining: np.ndarray, levels: tuple[float, ...] = CUM_LEVELS
) -> np.ndarray:
    """P(X >= remaining) per row, X given by its quantiles (n, k) at `levels`.

    The CDF is linear between quantiles, linear from (0, 0) up to the lowest one (use is
    never negative) and an exponential tail above the highest, whose density continues the
    last segment's. remaining <= 0 (already at the rating) gives 1; NaN quantiles give NaN.
    """
    q = sorted_quantiles(np.asarray(quantiles, dtype=np.float64))
    x = np.asarray(remaining, dtype=np.float64)
    tau = np.asarray(levels, dtype=np.float64)
    n, k = q.shape
    if k != len(tau):
        raise DistributionError(f"{k} quantiles per row but {len(tau)} levels.")
    above = (q < x[:, None]).sum(axis=1)  # quantiles strictly below the remaining cycles
    cdf = np.empty(n)
    low = above == 0
    cdf[low] = tau[0] * np.clip(x[low] / np.maximum(q[low, 0], 1e-12), 0.0, 1.0)
    top = above == k
    width = np.maximum(q[top, -1] - q[top, -2], 1e-9)
    scale = (1.0 - tau[-1]) * width / (tau[-1] - tau[-2])
    cdf[top] = 1.0 - (1.0 - tau[-1]) * np.exp(-(x[top] - q[top, -1]) / scale)
    mid = ~low & ~top
    i = above[mid]
    rows = np.flatnonzero(mid)
    lo, hi = q[rows, i - 1], q[rows, i]
    share = np.where(hi > lo, (x[mid] - lo) / np.maximum(hi - lo, 1e-12), 1.0)
    cdf[mid] = tau[i - 1] + share * (tau[i] - tau[i - 1])
    risk = 1.0 - cdf
    risk[x <= 0] = 1.0
    risk[np.isnan(q).any(axis=1) | np.isnan(x)] = np.nan
    return np.clip(risk, 0.0, 1.0)


def raw_failure_risk(
    cumulative: np.ndarray,
    lifetime_cycles_used: np.ndarray,
    battery_rated_cycles: np.ndarray,
    within_days: int,
) -> np.ndarray:
    """P(lifetime + cumulative use reaches the rating within `within_days`), uncalibrated.

    Use never decreases, so reaching the rating by day d is the total by day d reaching it.
    """
    day = min(within_days, cumulative.shape[1]) - 1
    remaining = np.asarray(battery_rated_cycles, float) - np.asarray(lifetime_cycles_used, float)
    return exceedance_probability(cumulative[:, day, :], remaining)
