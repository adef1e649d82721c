"""AutoML candidates: forecasters from maintained libraries, each in the one forecast contract.

Every candidate fits on readings (a fold's history) and returns a `ForecastPythonModel` that
forecasts from the window it is given at predict time, so any of them can be the champion:

- statsforecast models are per-series: they are refitted on each window when predicting
  (cheap for naive/seasonal models, tens of ms a window for ETS; see `predict_s_per_1k`).
  Windows too short for a model fall back to seasonal naive, then to the window's mean.
- mlforecast + LightGBM is one global model on lags and rolling means, fitted once.
- Pitstop's LSTM is one global network, fitted with the same code as `pitstop train rnn`
  (health signal histories included as inputs when the readings carry them).

Every candidate ignores input columns it does not use, such as the optional health arrays.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from core.errors import PitstopError
from models.forecasting.features import (
    HISTORY_COLUMN,
    build_training_windows,
    daily_series,
    health_channels,
)
from models.forecasting.pyfunc import (
    ForecastPythonModel,
    forecast_input_example,
    forecast_requirements,
    forecast_signature,
    log_lstm_model,
)

log = logging.getLogger(__name__)

SEASON = 7
# Forecast rows the fallback chain takes over from a model when it returns NaN: seasonal
# naive needs a week, the mean needs a day.
_MIN_FALLBACK_DAYS = (SEASON, 1)


class CandidateError(PitstopError, ValueError):
    """A candidate that cannot be built or fitted; the message says what to change."""


@dataclass(frozen=True)
class FitRequest:
    """What a candidate fits on and within which limits."""

    history: pd.DataFrame  # contract readings
    window_days: int = 60
    horizon_days: int = 30
    time_budget_s: float | None = None
    seed: int = 0


@dataclass(frozen=True)
class Candidate:
    """One model of the sweep; `baseline` ones always run, so the leaderboard has a reference."""

    name: str
    library: str
    description: str
    fit: Callable[[FitRequest], ForecastPythonModel]
    params: dict[str, Any] = field(default_factory=dict)
    baseline: bool = False


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


# --- fitting --------------------------------------------------------------------------


def _statsforecast(model_factory: Callable[[], Any], min_days: int) -> Callable[[FitRequest], Any]:
    def fit(request: FitRequest) -> ForecastPythonModel:
        # Nothing global to learn: the model is fitted on each window when forecasting.
        return StatsForecastModel(
            model_factory(), min_days, request.window_days, request.horizon_days
        )

    return fit


LIGHTGBM_PARAMS: dict[str, Any] = {
    "n_estimators": 300,
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_child_samples": 50,
}
LIGHTGBM_LAGS: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 14, 21, 28)


def _fit_lightgbm(request: FitRequest) -> ForecastPythonModel:
    import lightgbm
    from mlforecast import MLForecast
    from mlforecast.lag_transforms import RollingMean, SeasonalRollingMean
    from mlforecast.target_transforms import LocalStandardScaler

    dense = daily_series(request.history)
    frame = pd.DataFrame(
        {
            "unique_id": dense["battery_id"].to_numpy(),
            "ds": ((dense["date"] - dense["date"].min()) // pd.Timedelta(days=1)).to_numpy(),
            "y": dense["daily_cycles_used"].to_numpy(dtype=np.float64),
        }
    )
    # Series need more days than the longest lag to give a training row.
    lengths = frame.groupby("unique_id")["y"].transform("size")
    frame = frame[lengths > max(LIGHTGBM_LAGS)]
    if frame.empty:
        raise CandidateError(
            f"LightGBM needs batteries with more than {max(LIGHTGBM_LAGS)} days of readings."
        )
    regressor = lightgbm.LGBMRegressor(
        **LIGHTGBM_PARAMS, n_jobs=1, random_state=request.seed, verbose=-1
    )
    # The contract carries no date, so weekday enters through the lags of 7, 14, 21, 28 days
    # and a same-weekday rolling mean rather than a calendar column. Scaling each series by
    # its own mean and spread lets one model serve light and heavy users alike.
    forecaster = MLForecast(
        models={"lightgbm": regressor},
        freq=1,
        lags=list(LIGHTGBM_LAGS),
        lag_transforms={
            1: [RollingMean(window_size=7), RollingMean(window_size=28)],
            SEASON: [SeasonalRollingMean(season_length=SEASON, window_size=4)],
        },
        target_transforms=[LocalStandardScaler()],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        forecaster.fit(frame, static_features=[], cache_train_df=False)
    return MlForecastModel(forecaster, request.window_days, request.horizon_days)


LSTM_FIT: dict[str, Any] = {
    "epochs": 20,
    "max_windows": 12_000,
    "learning_rate": 3e-3,
    "patience": 4,
    "batch_size": 256,
}
LSTM_FOLD_BUDGET_S = 90.0
# Options of the LSTM candidate that are not `fit_lstm` arguments.
_LSTM_OWN_OPTIONS = ("time_budget_s", "health_signals")


def _fit_lstm(request: FitRequest, options: dict[str, Any]) -> ForecastPythonModel:
    import torch

    from models.forecasting.lstm import fit_lstm
    from models.forecasting.lstm_windows import LstmSpec

    windows, futures = build_training_windows(
        request.history, request.window_days, request.horizon_days
    )
    channels = health_channels(request.history) if options.get("health_signals", True) else ()
    spec = LstmSpec(
        window_days=request.window_days,
        horizon_days=request.horizon_days,
        extra_channels=channels,
    )
    budget = options.get("time_budget_s", LSTM_FOLD_BUDGET_S)
    if request.time_budget_s is not None:
        budget = min(budget, request.time_budget_s)
    previous = torch.get_num_threads()
    # One thread, as `pitstop train rnn`: two threads on two shared cores ran 6x slower.
    torch.set_num_threads(1)
    try:
        fitted = fit_lstm(
            windows,
            futures,
            spec,
            **{k: v for k, v in options.items() if k not in _LSTM_OWN_OPTIONS},
            time_budget_s=max(1.0, budget),
            seed=request.seed,
        )
    finally:
        torch.set_num_threads(previous)
    return TrainedLstm(fitted.model, fitted.spec)


def lstm_candidate(**options: Any) -> Candidate:
    """Pitstop's LSTM; `options` override `fit_lstm` settings (e.g. epochs, max_windows).

    `health_signals=False` trains without the health signal histories even when present.
    """
    settings = {
        **LSTM_FIT,
        "time_budget_s": LSTM_FOLD_BUDGET_S,
        "health_signals": True,
        **options,
    }
    return Candidate(
        name="lstm",
        library="torch (Pitstop)",
        description="one global LSTM correcting a weekly-pattern baseline",
        fit=lambda request: _fit_lstm(request, settings),
        params=settings,
    )


def default_candidates() -> list[Candidate]:
    """The sweep's candidates, cheapest first: baselines, statistical, LightGBM, LSTM."""
    from statsforecast import models as sf

    def stats(name: str, desc: str, factory: Callable[[], Any], min_days: int, **kw: Any) -> Any:
        params = {"model": type(factory()).__name__, "min_days": min_days, **kw}
        return Candidate(name, "statsforecast", desc, _statsforecast(factory, min_days), params)

    baselines = [
        stats("naive", "repeats the last day", sf.Naive, 1),
        stats(
            "seasonal_naive",
            "repeats the last week",
            lambda: sf.SeasonalNaive(SEASON),
            7,
            season_length=SEASON,
        ),
        stats(
            "window_average",
            "mean of the last 28 days",
            lambda: sf.WindowAverage(28),
            1,
            window_size=28,
        ),
        stats(
            "seasonal_window_average",
            "mean of each weekday over the last 4 weeks",
            lambda: sf.SeasonalWindowAverage(SEASON, 4),
            4 * SEASON,
            season_length=SEASON,
            window_size=4,
        ),
    ]
    baselines = [replace(c, baseline=True) for c in baselines]
    statistical = [
        stats(
            "auto_ets",
            "exponential smoothing, weekly season, chosen by AICc",
            lambda: sf.AutoETS(season_length=SEASON),
            2 * SEASON,
            season_length=SEASON,
        ),
        stats(
            "auto_theta",
            "theta method, weekly season, chosen by MSE",
            lambda: sf.AutoTheta(season_length=SEASON),
            2 * SEASON,
            season_length=SEASON,
        ),
        # A fixed seasonal ARIMA: AutoARIMA's order search took ~0.4 s a window here.
        stats(
            "arima",
            "ARIMA(1,0,0)(0,1,1)7",
            lambda: sf.ARIMA(order=(1, 0, 0), seasonal_order=(0, 1, 1), season_length=SEASON),
            2 * SEASON,
            order="(1,0,0)",
            seasonal_order="(0,1,1)",
            season_length=SEASON,
        ),
    ]
    lightgbm = Candidate(
        name="lightgbm",
        library="mlforecast + lightgbm",
        description="one global LightGBM on lags and rolling means, recursive",
        fit=_fit_lightgbm,
        params={**LIGHTGBM_PARAMS, "lags": ",".join(map(str, LIGHTGBM_LAGS))},
    )
    return [*baselines, *statistical, lightgbm, lstm_candidate()]


def select_candidates(names: Sequence[str] | None, **lstm_options: Any) -> list[Candidate]:
    """The default candidates, or those named (in the default order); unknown names raise."""
    candidates = default_candidates()
    if lstm_options:
        candidates = [lstm_candidate(**lstm_options) if c.name == "lstm" else c for c in candidates]
    if not names:
        return candidates
    known = [c.name for c in candidates]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise CandidateError(
            f"Unknown candidate(s) {', '.join(unknown)}; choose from {', '.join(known)}."
        )
    return [c for c in candidates if c.name in names]


def log_forecaster(python_model: ForecastPythonModel, name: str = "model") -> Any:
    """Log a fitted candidate in the active run as a contract pyfunc; returns MLflow's ModelInfo."""
    if isinstance(python_model, TrainedLstm):
        with tempfile.TemporaryDirectory() as workdir:
            return log_lstm_model(python_model.model, python_model.spec, workdir, name=name)
    import lightgbm
    import mlforecast
    import statsforecast

    pins = {
        "statsforecast": statsforecast.__version__,
        "mlforecast": mlforecast.__version__,
        "lightgbm": lightgbm.__version__,
    }
    pyfunc_log = logging.getLogger("mlflow.pyfunc")
    quiet = _SkipPrefix("Passing a Python object as `python_model`")
    # The class is pickled by reference to this installed module; the models-from-code
    # advice does not apply, so keep it out of every sweep's output.
    pyfunc_log.addFilter(quiet)
    try:
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=python_model,
            signature=forecast_signature(python_model.horizon_days),
            input_example=forecast_input_example(python_model.window_days),
            pip_requirements=forecast_requirements(**pins),
        )
    finally:
        pyfunc_log.removeFilter(quiet)


class _SkipPrefix(logging.Filter):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self._prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self._prefix)
