"""The fitted forms of the AutoML candidates, each a `ForecastPythonModel` in the one contract.

- statsforecast models are per-series: they are refitted on each window when predicting
  (cheap for naive/seasonal models, tens of ms a window for ETS; see `predict_s_per_1k`).
  Windows too short for a model fall back to seasonal naive, then to the window's mean.
- mlforecast + LightGBM is one global model on lags and rolling means, fitted once.
- Pitstop's LSTM is one global network.

Each forecasts from the window it is given at predict time and ignores input columns it
does not use, such as the optional health arrays.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from models.forecasting.features import HISTORY_COLUMN
from models.forecasting.pyfunc import ForecastPythonModel

SEASON = 7
# Forecast rows the fallback chain takes over from a model when it returns NaN: seasonal
# naive needs a week, the mean needs a day.
_MIN_FALLBACK_DAYS = (SEASON, 1)


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


def _wide(result: pd.DataFrame, rows: int, horizon: int) -> np.ndarray:
    """Nixtla's long forecast (unique_id, ds, one model column) as a (rows, horizon) array."""
    column = next(c for c in result.columns if c not in ("unique_id", "ds"))
    ordered = result.sort_values(["unique_id", "ds"], kind="stable")
    return ordered[column].to_numpy(dtype=np.float64).reshape(rows, horizon)


class StatsForecastModel(ForecastPythonModel):
    """A statsforecast model refitted on every window at predict time (it is per-series)."""

    def __init__(
        self, model: Any, min_days: int, window_days: int = 60, horizon_days: int = 30
    ) -> None:
        self.model = model
        self.min_days = min_days
        self.window_days = window_days
        self.horizon_days = horizon_days

    def forecast(self, frame: pd.DataFrame) -> np.ndarray:
        """Fit and forecast each window; short or failed windows take the fallback chain."""
        from statsforecast.models import HistoricAverage, SeasonalNaive

        histories = _histories(frame, self.window_days)
        lengths = np.array([len(h) for h in histories])
        out = np.full((len(histories), self.horizon_days), np.nan)
        chain = [(self.model, self.min_days), (SeasonalNaive(SEASON), _MIN_FALLBACK_DAYS[0])]
        chain.append((HistoricAverage(), _MIN_FALLBACK_DAYS[1]))
        for model, min_days in chain:
            rows = np.flatnonzero(~np.isfinite(out).all(axis=1) & (lengths >= min_days))
            if len(rows):
                out[rows] = self._run(model, [histories[i] for i in rows])
        return np.clip(np.nan_to_num(out, nan=0.0), 0.0, None)

    def _run(self, model: Any, histories: list[np.ndarray]) -> np.ndarray:
        from statsforecast import StatsForecast
        from statsforecast.models import SeasonalNaive

        # One job: the stream's workers and the sweep already use both cores. A model that
        # raises on one series (e.g. ETS on a flat window) gives way to seasonal naive there.
        engine = StatsForecast(
            models=[model], freq=1, n_jobs=1, fallback_model=SeasonalNaive(SEASON)
        )
        with warnings.catch_warnings():
            # Flat or all-zero windows (parked cars) make the fits warn about zero variance.
            warnings.simplefilter("ignore")
            result = engine.forecast(h=self.horizon_days, df=_long_frame(histories))
        return _wide(result, len(histories), self.horizon_days)


class MlForecastModel(ForecastPythonModel):
    """A fitted mlforecast pipeline (global LightGBM) forecasting from the windows it is given."""

    def __init__(self, forecaster: Any, window_days: int = 60, horizon_days: int = 30) -> None:
        self.forecaster = forecaster
        self.window_days = window_days
        self.horizon_days = horizon_days

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
