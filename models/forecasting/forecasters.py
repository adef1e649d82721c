"""The fitted forms of the AutoML candidates, each a `ForecastPythonModel` in the one contract.

- statsforecast models are per-series: they are refitted on each window when predicting
  (cheap for naive/seasonal models, tens of ms a window for ETS; see `predict_s_per_1k`).
  Windows too short for a model fall back to seasonal naive, then to the window's mean.
  Daily quantiles are their 80% prediction intervals (the bands below for the window
  averages, which have none); running totals get bands of aggregated residuals measured on
  the history's recent past (`models.forecasting.bands`).
- mlforecast + LightGBM is one global model on lags and rolling means, fitted once; its
  quantiles come from LightGBM's quantile objective (`models.forecasting.lgbm_quantiles`).
- Pitstop's LSTM is one global network with pinball-trained quantile heads.

Versions logged before quantiles existed unpickle without bands or quantile models (the
class attributes' None) and give the point forecast alone.

Each forecasts from the window it is given at predict time and ignores input columns it
does not use, such as the optional health arrays.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from models.forecasting.bands import ResidualBands, window_scale
from models.forecasting.distribution import DAILY_LEVELS, ForecastDistribution, sorted_quantiles
from models.forecasting.features import HISTORY_COLUMN
from models.forecasting.pyfunc import ForecastPythonModel

SEASON = 7
# Forecast rows the fallback chain takes over from a model when it returns NaN: seasonal
# naive needs a week, the mean needs a day.
_MIN_FALLBACK_DAYS = (SEASON, 1)
# The central interval whose ends are the 10% and 90% daily quantiles.
INTERVAL_LEVEL = round(100 * (DAILY_LEVELS[-1] - DAILY_LEVELS[0]))


def _histories(frame: pd.DataFrame, window_days: int) -> list[np.ndarray]:
    """The most recent `window_days` of each row's history; NaN (no reading) is a parked day."""
    return [
        np.nan_to_num(np.asarray(h, dtype=np.float64)[-window_days:], nan=0.0)
        for h in frame[HISTORY_COLUMN]
    ]


def _long_frame(histories: Sequence[np.ndarray]) -> pd.DataFrame:
    """Nixtla's long format: unique_id = row number, integer ds, y."""
    lengths = np.fromiter((len(h) for h in histories), dtype=np.int64, count=len(histories))
    ends = np.cumsum(lengths)
    return pd.DataFrame(
        {
            "unique_id": np.repeat(np.arange(len(histories)), lengths),
            "ds": np.arange(ends[-1]) - np.repeat(ends - lengths, lengths),
            "y": np.concatenate(histories),
        }
    )


def _wide(result: pd.DataFrame, rows: int, horizon: int, column: str | None = None) -> np.ndarray:
    """Nixtla's long forecast (unique_id, ds, model columns) as a (rows, horizon) array of
    `column` (default: the first model column)."""
    column = column or next(c for c in result.columns if c not in ("unique_id", "ds"))
    ordered = result.sort_values(["unique_id", "ds"], kind="stable")
    return ordered[column].to_numpy(dtype=np.float64).reshape(rows, horizon)


class StatsForecastModel(ForecastPythonModel):
    """A statsforecast model refitted on every window at predict time (it is per-series)."""

    # Measured at fit time (candidates); None for versions logged before bands existed.
    bands: ResidualBands | None = None

    def __init__(
        self, model: Any, min_days: int, window_days: int = 60, horizon_days: int = 30
    ) -> None:
        self.model = model
        self.min_days = min_days
        self.window_days = window_days
        self.horizon_days = horizon_days

    def forecast(self, frame: pd.DataFrame) -> np.ndarray:
        """Fit and forecast each window; short or failed windows take the fallback chain."""
        return self._chain(frame, intervals=False)[0]

    def quantile_forecast(self, frame: pd.DataFrame) -> ForecastDistribution:
        """The forecast in its bands, daily quantiles from the models' 80% intervals."""
        point, low, high = self._chain(frame, intervals=self.bands is not None)
        if self.bands is None:
            return ForecastDistribution(point)
        dist = self.bands.apply(point, window_scale(frame))
        assert dist.daily is not None
        known = np.isfinite(low).all(axis=1) & np.isfinite(high).all(axis=1)
        daily = np.stack([low, point, high], axis=-1)
        dist.daily[known] = sorted_quantiles(np.clip(daily[known], 0.0, None))
        return dist

    def _chain(
        self, frame: pd.DataFrame, intervals: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Point forecast and 80% interval (NaN where a model has none) through the chain."""
        from statsforecast.models import HistoricAverage, SeasonalNaive

        histories = _histories(frame, self.window_days)
        lengths = np.array([len(h) for h in histories])
        shape = (len(histories), self.horizon_days)
        out, low, high = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
        chain = [(self.model, self.min_days), (SeasonalNaive(SEASON), _MIN_FALLBACK_DAYS[0])]
        chain.append((HistoricAverage(), _MIN_FALLBACK_DAYS[1]))
        for model, min_days in chain:
            rows = np.flatnonzero(~np.isfinite(out).all(axis=1) & (lengths >= min_days))
            if len(rows):
                level = intervals and _has_intervals(model)
                out[rows], low[rows], high[rows] = self._run(
                    model, [histories[i] for i in rows], level
                )
        return np.clip(np.nan_to_num(out, nan=0.0), 0.0, None), low, high

    def _run(
        self, model: Any, histories: list[np.ndarray], intervals: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        from statsforecast import StatsForecast
        from statsforecast.models import SeasonalNaive

        # One job: the stream's workers and the sweep already use both cores. A model that
        # raises on one series (e.g. ETS on a flat window) gives way to seasonal naive there.
        engine = StatsForecast(
            models=[model], freq=1, n_jobs=1, fallback_model=SeasonalNaive(SEASON)
        )
        level = [INTERVAL_LEVEL] if intervals else None
        with warnings.catch_warnings():
            # Flat or all-zero windows (parked cars) make the fits warn about zero variance.
            warnings.simplefilter("ignore")
            result = engine.forecast(h=self.horizon_days, df=_long_frame(histories), level=level)
        rows, h = len(histories), self.horizon_days
        point = _wide(result, rows, h)
        if not intervals:
            return point, np.full_like(point, np.nan), np.full_like(point, np.nan)
        name = next(c for c in result.columns if c not in ("unique_id", "ds"))
        low = _wide(result, rows, h, f"{name}-lo-{INTERVAL_LEVEL}")
        return point, low, _wide(result, rows, h, f"{name}-hi-{INTERVAL_LEVEL}")


def _has_intervals(model: Any) -> bool:
    """Whether a statsforecast model gives prediction intervals without conformal windows
    (the window averages need `prediction_intervals`, which 60-day windows cannot feed)."""
    return type(model).__name__ not in ("WindowAverage", "SeasonalWindowAverage")


class MlForecastModel(ForecastPythonModel):
    """A fitted mlforecast pipeline (global LightGBM) forecasting from the windows it is given,
    with LightGBM quantile models beside it (None for versions logged before them)."""

    boosters: Any = None

    def __init__(self, forecaster: Any, window_days: int = 60, horizon_days: int = 30) -> None:
        self.forecaster = forecaster
        self.window_days = window_days
        self.horizon_days = horizon_days

    def quantile_forecast(self, frame: pd.DataFrame) -> ForecastDistribution:
        """The recursive point forecast with the quantile models' daily and total quantiles."""
        point = self.forecast(frame)
        if self.boosters is None:
            return ForecastDistribution(point)
        return self.boosters.predict(frame, point)

    def forecast(self, frame: pd.DataFrame) -> np.ndarray:
        """Recursive forecast of each window; lags beyond a short window are missing values,
        which LightGBM handles natively."""
        histories = _histories(frame, self.window_days)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "found null values" for every short window
            result = self.forecaster.predict(self.horizon_days, new_df=_long_frame(histories))
        out = _wide(result, len(histories), self.horizon_days)
        # A window with no use at all has no level to scale by; forecast no use, as the LSTM.
        idle = np.array([not h.any() for h in histories])
        out[idle] = 0.0
        return np.clip(out, 0.0, None)


class TrainedLstm(ForecastPythonModel):
    """The Pitstop LSTM held in memory during the sweep; logged as `LstmForecastModel`."""

    def __init__(self, model: Any, spec: Any) -> None:
        self.model = model
        self.spec = spec
        self.window_days = spec.window_days
        self.horizon_days = spec.horizon_days
        self.extra_inputs = tuple(spec.extra_channels)

    def forecast(self, frame: pd.DataFrame) -> np.ndarray:
        """Forecast with the trained network."""
        from models.forecasting.lstm import predict_lstm

        return predict_lstm(self.model, self.spec, frame)

    def quantile_forecast(self, frame: pd.DataFrame) -> ForecastDistribution:
        """Point forecast and the network's quantile heads."""
        from models.forecasting.lstm import predict_lstm_distribution

        return predict_lstm_distribution(self.model, self.spec, frame)
