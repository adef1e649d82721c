"""The forecast pyfunc contract every forecaster is logged with (loading one for scoring:
`models.forecasting.loader`).

Input: one row per battery and reading date with the MODEL_INPUT_COLUMNS of
`models.forecasting.features` (`daily_cycles` an array of doubles, oldest first). Output: a
DataFrame with one row per input row (`models.forecasting.distribution.OUTPUT_COLUMNS`):
`forecast`, the daily cycles of the days after; `daily_q10/50/90` and `cum_q10/50/90`,
quantiles of each day's and of the running total's cycles; `failure_risk`, the calibrated
probability of reaching the rated cycles within `alert_within_days`. Any forecaster that
subclasses `ForecastPythonModel` and logs with `forecast_signature()` and
`forecast_input_example()` can be the champion: the streaming job neither knows nor
cares which one it scores with. Versions registered before quantiles existed returned the
(n, horizon) array alone; the stream still scores them (no quantiles, no risk).

The alert threshold a version was calibrated to travels with it: an attribute of the model
and the `pitstop` entry of its MLmodel metadata (`alert_metadata`), which the stream reads.

A model that also reads health signals (`extra_inputs`, e.g. `resting_voltage_history`)
declares them as optional inputs: rows may carry them or not, and a model that does not
use them ignores them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.types.schema import Array, ColSpec, DataType, Schema

from core.errors import PitstopError
from models.forecasting.distribution import (
    CUM_COLUMNS,
    DAILY_COLUMNS,
    POINT_COLUMN,
    RISK_COLUMN,
    ForecastDistribution,
    raw_failure_risk,
)
from models.forecasting.features import (
    HEALTH_HISTORY_SUFFIX,
    HISTORY_COLUMN,
    MODEL_INPUT_COLUMNS,
    STATIC_COLUMNS,
    flat_rows,
    split_rows,
)

log = logging.getLogger(__name__)

LSTM_ARTIFACT = "lstm"


class ForecastInputError(PitstopError, MlflowException, ValueError):
    """Model input that breaks the forecast contract.

    Also an MlflowException with INVALID_PARAMETER_VALUE, so MLflow's scoring server answers
    400 with this message instead of a generic error.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)


def forecast_signature(
    horizon_days: int = 30, optional_arrays: tuple[str, ...] = ()
) -> ModelSignature:
    """Contract signature: MODEL_INPUT_COLUMNS in; out, per row, the `forecast` and quantile
    arrays of `horizon_days` doubles and the `failure_risk`.

    `optional_arrays` (a model's `extra_inputs`) are declared as optional double arrays. A
    request may leave such a column out, or send null for a row; MLflow's check refuses a
    record that lacks a key other records in the same request have (pandas fills it NaN).
    """
    inputs = Schema(
        [
            ColSpec(Array(DataType.double), HISTORY_COLUMN),
            *[ColSpec(DataType.double, name) for name in STATIC_COLUMNS],
            *[ColSpec(Array(DataType.double), name, required=False) for name in optional_arrays],
        ]
    )
    outputs = Schema(
        [
            ColSpec(Array(DataType.double), name)
            for name in (POINT_COLUMN, *DAILY_COLUMNS, *CUM_COLUMNS)
        ]
        + [ColSpec(DataType.double, RISK_COLUMN, required=False)]
    )
    return ModelSignature(inputs=inputs, outputs=outputs)


# A plausible day of each health signal, for input examples: volts, volts, share, deg C.
_EXAMPLE_HEALTH = {
    "cranking_voltage_min": (10.2, 0.1),
    "resting_voltage": (12.65, 0.02),
    "charge_acceptance": (0.85, 0.02),
    "ambient_temp_c": (14.0, 3.0),
}


def forecast_input_example(
    window_days: int = 60, optional_arrays: tuple[str, ...] = ()
) -> pd.DataFrame:
    """Two contract rows: a battery with a full window and a new one with a week of history.

    `optional_arrays` add those health history arrays, aligned with each row's history.
    """
    week = [1.2, 1.1, 1.2, 1.3, 1.4, 0.7, 0.5]
    full = (week * (window_days // 7 + 1))[-window_days:]
    histories = [[float(v) for v in full], week[: min(7, window_days)]]
    frame = pd.DataFrame(
        {
            HISTORY_COLUMN: histories,
            "lifetime_cycles_used": [412.5, 8.1],
            "battery_rated_cycles": [500.0, 750.0],
            "battery_age_days": [388.0, 7.0],
        }
    )
    for name in optional_arrays:
        level, swing = _EXAMPLE_HEALTH.get(name.removesuffix(HEALTH_HISTORY_SUFFIX), (1.0, 0.1))
        frame[name] = [
            [round(level + swing * ((day % 7) - 3) / 3, 3) for day in range(len(h))]
            for h in histories
        ]
    return frame


def coerce_model_input(
    model_input: pd.DataFrame | dict[str, Any],
    max_days: int | None = None,
    array_columns: tuple[str, ...] = (),
) -> pd.DataFrame:
    """Contract columns as a DataFrame: history arrays as float64 ndarrays, statics as floats.

    `max_days` (the model's window) rejects longer histories instead of silently cutting them.
    `array_columns` are optional arrays the model reads beside the history (its
    `extra_inputs`): each, when present, must be as long as the row's history; a null or
    empty array (Arrow's view of a null list) and null values inside one are missing values
    (NaN). Other columns pass through untouched.
    """
    frame = pd.DataFrame(model_input) if isinstance(model_input, dict) else model_input
    if not isinstance(frame, pd.DataFrame):
        raise ForecastInputError(
            f"Forecast input must be a DataFrame with columns {', '.join(MODEL_INPUT_COLUMNS)}."
        )
    missing = [c for c in MODEL_INPUT_COLUMNS if c not in frame.columns]
    if missing:
        raise ForecastInputError(f"Forecast input lacks column(s) {', '.join(missing)}.")
    values = frame[HISTORY_COLUMN].tolist()
    rows = flat_rows(values)
    if (
        rows is not None
        and (rows[1] > 0).all()
        and (max_days is None or not len(rows[1]) or rows[1].max() <= max_days)
    ):
        # The usual input (arrays of numbers): no row-by-row conversion.
        days, lengths = rows
        histories = split_rows(days, lengths)
    else:
        histories = [_checked_history(value, max_days) for value in values]
        lengths = np.fromiter(map(len, histories), dtype=np.int64, count=len(histories))
        days = np.concatenate(histories) if histories else np.zeros(0)
    if (days < 0).any() or np.isinf(days).any():
        raise ForecastInputError(f"Every '{HISTORY_COLUMN}' value must be 0 or more, and finite.")
    return _with_columns(frame, histories, lengths, array_columns)


def _checked_history(value: Any, max_days: int | None) -> np.ndarray:
    """One history as float64, or the reason it cannot be one."""
    if value is None or np.ndim(value) != 1 or len(value) == 0:
        raise ForecastInputError(f"Every '{HISTORY_COLUMN}' must be a non-empty array.")
    if max_days is not None and len(value) > max_days:
        raise ForecastInputError(
            f"A '{HISTORY_COLUMN}' holds {len(value)} days; this model takes at most "
            f"{max_days} (the most recent, oldest first)."
        )
    # None inside a history is a day without a reading: parked, as in features.
    return np.asarray(value, dtype=np.float64)


def _with_columns(
    frame: pd.DataFrame,
    histories: list[np.ndarray],
    lengths: np.ndarray,
    array_columns: tuple[str, ...],
) -> pd.DataFrame:
    """The checked histories (of `lengths` days), the statics as floats, the optional arrays
    aligned with the histories, and every other column of `frame` untouched."""
    out = pd.DataFrame(index=range(len(frame)))
    out[HISTORY_COLUMN] = histories
    for name in STATIC_COLUMNS:
        out[name] = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64)
    for name in array_columns:
        if name in frame.columns:
            out[name] = _aligned_arrays(frame[name].tolist(), histories, lengths, name)
    for name in frame.columns:
        if name not in out.columns:
            out[name] = frame[name].to_numpy()
    return out


def _aligned_arrays(
    values: list[Any], histories: list[np.ndarray], lengths: np.ndarray, name: str
) -> list[np.ndarray]:
    """Optional per-day arrays as float64, one per history and as long (`lengths`, the
    histories'); null/empty -> NaN."""
    rows = flat_rows(values)
    if rows is not None and np.array_equal(rows[1], lengths):
        flat = rows[0]
        if np.isinf(flat).any():
            raise ForecastInputError(f"Every '{name}' value must be finite (or null).")
        return split_rows(flat, lengths)
    out = []
    for value, history in zip(values, histories, strict=True):
        if value is None or (np.ndim(value) == 0 and pd.isna(value)) or np.size(value) == 0:
            out.append(np.full(len(history), np.nan))
            continue
        try:
            # None inside the array is a day without a value.
            array = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise ForecastInputError(f"Every '{name}' must be an array of numbers.") from None
        if array.ndim != 1 or len(array) != len(history):
            raise ForecastInputError(
                f"Every '{name}' must be null or an array as long as its '{HISTORY_COLUMN}' "
                "(one value per day, oldest first)."
            )
        if np.isinf(array).any():
            raise ForecastInputError(f"Every '{name}' value must be finite (or null).")
        out.append(array)
    return out


class ForecastPythonModel(mlflow.pyfunc.PythonModel):
    """Base of every Pitstop forecaster: `predict` checks the contract, subclasses do the work.

    A subclass implements `forecast` (the point forecast) and, when it has a distribution,
    `quantile_forecast` (point plus quantiles). The risk follows from the cumulative
    quantiles and the `risk_calibrator` set after training; `alert_threshold` is the
    calibrated risk at which its alerts open. `extra_inputs` names the optional array columns
    (health signal histories) a subclass reads; rows without them still get a forecast.
    """

    window_days: int = 60
    horizon_days: int = 30
    extra_inputs: tuple[str, ...] = ()
    # Set by calibration (models.forecasting.risk); class defaults keep versions pickled
    # before they existed loadable: no calibrator, no risk.
    risk_calibrator: Any = None
    alert_threshold: float | None = None
    alert_within_days: int = 30

    def forecast(self, frame: pd.DataFrame) -> np.ndarray:
        """(n, horizon) daily cycles for contract rows already coerced; subclasses implement."""
        raise NotImplementedError

    def quantile_forecast(self, frame: pd.DataFrame) -> ForecastDistribution:
        """Point forecast and quantiles for coerced rows; without a distribution, the point."""
        return ForecastDistribution(self.forecast(frame))

    def raw_distribution(self, frame: pd.DataFrame) -> ForecastDistribution:
        """`quantile_forecast` with the uncalibrated risk read from its cumulative quantiles."""
        dist = self.quantile_forecast(frame)
        if dist.cumulative is not None:
            dist.risk = raw_failure_risk(
                dist.cumulative,
                frame["lifetime_cycles_used"].to_numpy(dtype=np.float64),
                frame["battery_rated_cycles"].to_numpy(dtype=np.float64),
                self.alert_within_days,
            )
        return dist

    def forecast_distribution(self, frame: pd.DataFrame) -> ForecastDistribution:
        """The contract's answer for coerced rows: quantiles and the calibrated risk (None
        before the model is calibrated)."""
        dist = self.raw_distribution(frame)
        calibrator = getattr(self, "risk_calibrator", None)
        dist.risk = None if calibrator is None or dist.risk is None else calibrator.apply(dist.risk)
        return dist

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """The pyfunc entry point: contract rows -> the contract's output frame."""
        frame = coerce_model_input(
            model_input, max_days=self.window_days, array_columns=self.extra_inputs
        )
        if frame.empty:
            return ForecastDistribution(np.zeros((0, self.horizon_days))).to_frame()
        return self.forecast_distribution(frame).to_frame()


def alert_metadata(model: ForecastPythonModel) -> dict[str, Any]:
    """The MLmodel metadata that carries a calibrated model's alert threshold to the stream."""
    if getattr(model, "risk_calibrator", None) is None or model.alert_threshold is None:
        return {}
    return {
        "pitstop": {
            "alert_threshold": float(model.alert_threshold),
            "alert_within_days": int(model.alert_within_days),
            "risk_calibration": model.risk_calibrator.method,
        }
    }


class LstmForecastModel(ForecastPythonModel):
    """The Pitstop LSTM as a pyfunc; weights travel as the `lstm` artifact folder."""

    def __init__(self) -> None:
        self._model: Any = None
        self._spec: Any = None
        self._warned_missing = False

    def load_context(self, context: Any) -> None:
        """Rebuild the network from the logged artifact folder."""
        from models.forecasting.lstm import load_lstm

        self._model, self._spec = load_lstm(context.artifacts[LSTM_ARTIFACT])
        self.window_days = self._spec.window_days
        self.horizon_days = self._spec.horizon_days
        self.extra_inputs = tuple(self._spec.extra_channels)
        self._warned_missing = False

    def forecast(self, frame: pd.DataFrame) -> np.ndarray:
        """Forecast with the loaded network."""
        from models.forecasting.lstm import predict_lstm

        self._check_inputs(frame)
        return predict_lstm(self._model, self._spec, frame)

    def quantile_forecast(self, frame: pd.DataFrame) -> ForecastDistribution:
        """Point forecast and the network's own quantiles (none for a spec without them)."""
        from models.forecasting.lstm import predict_lstm_distribution

        self._check_inputs(frame)
        return predict_lstm_distribution(self._model, self._spec, frame)

    def _check_inputs(self, frame: pd.DataFrame) -> None:
        if self._model is None:
            raise RuntimeError("The LSTM is not loaded; load the model through MLflow.")
        missing = [c for c in self.extra_inputs if c not in frame.columns]
        if missing and not self._warned_missing:
            # Allowed (the inputs are optional), but worth one line: the forecasts are not
            # the ones this model was validated with.
            log.warning(
                "Scoring without %s: this model was trained with them and takes them as "
                "missing values",
                ", ".join(missing),
            )
            self._warned_missing = True


def log_lstm_model(
    model: Any,
    spec: Any,
    workdir: str | Path,
    name: str = "model",
    calibration: ForecastPythonModel | None = None,
) -> mlflow.models.model.ModelInfo:
    """Log a trained LSTM in the active run as a contract pyfunc; returns MLflow's ModelInfo.

    `calibration` (a calibrated model of the same network) lends its risk calibrator and alert
    threshold to the logged one.
    """
    import torch

    from models.forecasting.lstm import save_lstm

    folder = save_lstm(model, spec, Path(workdir) / LSTM_ARTIFACT)
    python_model = LstmForecastModel()
    if calibration is not None:
        copy_calibration(calibration, python_model)
    return log_pyfunc(
        python_model,
        name,
        horizon_days=spec.horizon_days,
        window_days=spec.window_days,
        extra_inputs=tuple(spec.extra_channels),
        artifacts={LSTM_ARTIFACT: str(folder)},
        pins={"torch": torch.__version__.split("+")[0]},
    )


def copy_calibration(source: ForecastPythonModel, target: ForecastPythonModel) -> None:
    """Give `target` the risk calibrator, alert threshold and horizon of `source`."""
    target.risk_calibrator = getattr(source, "risk_calibrator", None)
    target.alert_threshold = getattr(source, "alert_threshold", None)
    target.alert_within_days = getattr(source, "alert_within_days", 30)


def log_pyfunc(
    python_model: ForecastPythonModel,
    name: str,
    *,
    horizon_days: int,
    window_days: int,
    extra_inputs: tuple[str, ...] = (),
    artifacts: dict[str, str] | None = None,
    pins: dict[str, str] | None = None,
) -> mlflow.models.model.ModelInfo:
    """Log any contract forecaster in the active run: signature, input example, pip pins, and
    its alert threshold in the MLmodel metadata (`alert_metadata`)."""
    quiet = _DropMessage("Passing a Python object as `python_model`")
    pyfunc_log = logging.getLogger("mlflow.pyfunc")
    # The class is pickled by reference to this installed module and any weights travel as
    # files, which is what the models-from-code warning is about; say nothing each run.
    pyfunc_log.addFilter(quiet)
    try:
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=python_model,
            artifacts=artifacts,
            signature=forecast_signature(horizon_days, extra_inputs),
            input_example=forecast_input_example(window_days, extra_inputs),
            # Stated, not inferred: inference loads the model in a subprocess, seconds a log.
            pip_requirements=forecast_requirements(**(pins or {})),
            metadata=alert_metadata(python_model) or None,
        )
    finally:
        pyfunc_log.removeFilter(quiet)


class _DropMessage(logging.Filter):
    """Drops log records whose message starts with a given text."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self._prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self._prefix)


def forecast_requirements(**extra: str) -> list[str]:
    """pip requirements of a forecast pyfunc: mlflow, numpy, pandas, plus `extra` pins."""
    pins = {"mlflow": mlflow.__version__, "numpy": np.__version__, "pandas": pd.__version__}
    pins.update(extra)
    return [f"{package}=={version}" for package, version in pins.items()]
