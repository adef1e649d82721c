"""AutoML candidates: forecasters from maintained libraries, each in the one forecast contract.

Every candidate fits on readings (a fold's history) and returns a `ForecastPythonModel` that
forecasts from the window it is given at predict time, so any of them can be the champion:

statsforecast's models, mlforecast + LightGBM and Pitstop's LSTM (fitted with the same code
as `pitstop train rnn`, health signal histories included when the readings carry them); the
fitted forms are in `models.forecasting.forecasters`.
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
from models.forecasting.features import build_training_windows, daily_series, health_channels
from models.forecasting.forecasters import (
    SEASON,
    MlForecastModel,
    StatsForecastModel,
    TrainedLstm,
)
from models.forecasting.pyfunc import (
    ForecastPythonModel,
    forecast_input_example,
    forecast_requirements,
    forecast_signature,
    log_lstm_model,
)

log = logging.getLogger(__name__)


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
