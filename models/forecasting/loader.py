"""Loading a registered forecaster for scoring, without MLflow's per-row checks.

The stream, the trainers (scoring a champion) and the CLI load forecasters through here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import mlflow
import numpy as np
import pandas as pd

from models.forecasting.distribution import ForecastDistribution
from models.forecasting.pyfunc import ForecastInputError, ForecastPythonModel, coerce_model_input

log = logging.getLogger(__name__)


@dataclass
class Forecaster:
    """A loaded forecaster for the streaming job: contract rows in, forecasts out.

    Calls the python model directly, skipping MLflow's per-row signature check (~14 us per
    row); the caller builds rows with `models.forecasting.features`, which already honours the
    contract.
    """

    name: str
    version: str
    model_uri: str
    python_model: ForecastPythonModel

    @property
    def horizon(self) -> int:
        """Days forecast per row."""
        return int(self.python_model.horizon_days)

    @property
    def window(self) -> int:
        """Days of history the model looks at."""
        return int(self.python_model.window_days)

    @property
    def alert_threshold(self) -> float | None:
        """The calibrated risk at which this version's alerts open (None: no risk)."""
        if getattr(self.python_model, "risk_calibrator", None) is None:
            return None
        return getattr(self.python_model, "alert_threshold", None)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Forecast contract rows; an empty frame gives a (0, horizon) array."""
        if len(frame) == 0:
            return np.zeros((0, self.horizon))
        return np.asarray(self.python_model.forecast(self._rows(frame)), dtype=np.float64)

    def predict_distribution(self, frame: pd.DataFrame) -> ForecastDistribution:
        """Point forecast, quantiles and calibrated risk of contract rows (what the stream
        stores); a version without quantiles or risk leaves them None."""
        if len(frame) == 0:
            return ForecastDistribution(np.zeros((0, self.horizon)))
        return self.python_model.forecast_distribution(self._rows(frame))

    def _rows(self, frame: pd.DataFrame) -> pd.DataFrame:
        # No window limit here: the stream builds windows from its own configuration, and a
        # model with a shorter window uses the most recent days of a longer one.
        return coerce_model_input(frame, array_columns=self.python_model.extra_inputs)


def load_forecaster(model_uri: str, torch_threads: int | None = 1) -> Forecaster:
    """Load a contract forecaster by URI (`models:/name@alias`, `models:/name/3`, `runs:/...`).

    An alias is resolved to its version first, so name, version and weights always agree.
    `torch_threads` (default 1) caps torch's intra-op threads for this process: more threads
    than cores / concurrent tasks never helped (DESIGN.md). None leaves torch as it is.
    """
    name, version, uri = _resolve_uri(model_uri)
    if torch_threads is not None:
        import torch

        torch.set_num_threads(torch_threads)
    loaded = mlflow.pyfunc.load_model(uri)
    python_model = loaded.unwrap_python_model()
    if not isinstance(python_model, ForecastPythonModel):
        raise ForecastInputError(
            f"{model_uri} is not a Pitstop forecaster ({type(python_model).__name__}); log it "
            "with models.forecasting.pyfunc.ForecastPythonModel."
        )
    log.info("Loaded forecaster %s version %s from %s", name, version, uri)
    return Forecaster(name=name, version=version, model_uri=uri, python_model=python_model)


def _resolve_uri(model_uri: str) -> tuple[str, str, str]:
    """(name, version, concrete uri) for a model URI; non-registry URIs keep their own text."""
    if not model_uri.startswith("models:/"):
        return model_uri, "", model_uri
    body = model_uri[len("models:/") :]
    if "@" in body:
        from models.registry import resolve_alias

        name, alias = body.split("@", 1)
        version, uri = resolve_alias(name, alias)
        return name, version, uri
    name, _, version = body.partition("/")
    return name, version, model_uri
