"""Score model-input windows with a registered forecaster, loaded once per Python worker.

The driver resolves the alias to a concrete version every micro-batch (cheap: one
registry call) and ships only `models:/name/version` to the workers. Each worker keeps
the loaded model in a small cache keyed by that URI, so a model is loaded once per worker
per version -- not per task, as MLflow's `spark_udf` does in local mode -- and an alias
move is picked up by the next micro-batch without a restart.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pyspark import Accumulator
from pyspark.sql import DataFrame
from pyspark.sql import types as T

from models.features import MODEL_INPUT_COLUMNS, forecast_failure_days
from pitstop.errors import PitstopError
from streaming.tables import FORECAST_SCHEMA

log = logging.getLogger(__name__)

SCORED_SCHEMA = T.StructType([f for f in FORECAST_SCHEMA.fields if f.name != "scored_at"])


class ModelUnavailableError(PitstopError):
    """The configured model cannot be resolved from the registry."""


@dataclass(frozen=True)
class ModelRef:
    """One concrete registered model version and the role it plays in the job."""

    name: str
    version: str
    role: str = "champion"
    source: str | None = None  # a saved model folder outside the registry (fixtures, tests)

    @property
    def uri(self) -> str:
        return self.source or f"models:/{self.name}/{self.version}"


@dataclass(frozen=True)
class RegistryTarget:
    """Where workers load models from (the driver's tracking and registry URIs)."""

    tracking_uri: str
    registry_uri: str | None


def resolve_model(client: Any, name: str, alias: str, role: str = "champion") -> ModelRef:
    """The version `alias` points at, or ModelUnavailableError in one sentence."""
    try:
        version = client.get_model_version_by_alias(name, alias)
    except Exception as exc:  # MLflow raises its own types; the message is what matters
        raise ModelUnavailableError(
            f"No version of model '{name}' has alias '{alias}' in the registry "
            f"({type(exc).__name__}); train one with `pitstop train rnn` or fix forecast.model."
        ) from None
    return ModelRef(name=name, version=str(version.version), role=role)


class ModelTracker:
    """Follows an alias across micro-batches; keeps the last good version if the registry fails."""

    def __init__(self, client: Any, name: str, alias: str, role: str = "champion") -> None:
        self._client, self._name, self._alias, self._role = client, name, alias, role
        self.current = resolve_model(client, name, alias, role)
        log.info("Scoring with %s (alias %s)", self.current.uri, alias)

    def refresh(self) -> ModelRef:
        """The version to use for the next micro-batch (logs a switch or a registry outage)."""
        try:
            latest = resolve_model(self._client, self._name, self._alias, self._role)
        except ModelUnavailableError as exc:
            log.warning("Registry unavailable, keeping %s: %s", self.current.uri, exc)
            return self.current
        if latest != self.current:
            log.info(
                "Alias %s of %s moved: %s -> %s; next micro-batch uses the new version",
                self._alias,
                self._name,
                self.current.version,
                latest.version,
            )
            self.current = latest
        return self.current


class PinnedModel:
    """A model fixed for the whole run (`--model URI`): replay and batch scoring."""

    def __init__(self, client: Any, uri: str, role: str = "champion") -> None:
        folder = Path(uri).expanduser()
        if (folder / "MLmodel").is_file():
            self.current = ModelRef(
                name=folder.resolve().name, version="local", role=role, source=str(folder.resolve())
            )
            return
        match = re.fullmatch(r"models:/([^/@]+)(?:/(\d+)|@([\w-]+))", uri.strip())
        if match is None:
            raise ModelUnavailableError(
                f"--model must be models:/NAME/VERSION, models:/NAME@ALIAS or a saved model "
                f"folder, not {uri!r}."
            )
        name, version, alias = match.groups()
        if alias is not None:
            self.current = resolve_model(client, name, alias, role)
        else:
            try:
                client.get_model_version(name, version)
            except Exception as exc:  # MLflow's own exception types
                raise ModelUnavailableError(
                    f"Model '{name}' has no version {version} in the registry "
                    f"({type(exc).__name__})."
                ) from None
            self.current = ModelRef(name=name, version=version, role=role)

    def refresh(self) -> ModelRef:
        """Always the pinned version."""
        return self.current


# Per-Python-worker cache: registry|URI -> loaded model. Workers can be replaced at any time,
# so a miss is normal and simply loads again.
_LOADED: dict[str, Any] = {}


def cached_model(
    ref: ModelRef,
    target: RegistryTarget,
    loads: Accumulator | None,
    load: Callable[[str], Any],
) -> Any:
    """The model `ref` in this Python worker: from the cache, else `load(uri)` once."""
    # Keyed by registry too: `models:/name/1` of two registries are two different models.
    registry = target.registry_uri or target.tracking_uri
    key = f"{registry}|{ref.uri}"
    model = _LOADED.get(key)
    if model is not None:
        return model
    import mlflow

    # Always set both: workers inherit MLFLOW_*_URI variables from whatever process started
    # the JVM, so an unset registry would silently fall back to somebody else's.
    mlflow.set_tracking_uri(target.tracking_uri)
    mlflow.set_registry_uri(target.registry_uri or target.tracking_uri)
    model = load(ref.uri)
    for stale in [k for k in _LOADED if k.startswith(f"{registry}|models:/{ref.name}/")]:
        del _LOADED[stale]  # an older version of the same model: the alias has moved on
    _LOADED[key] = model
    if loads is not None:
        loads.add(1)
    log.info("Loaded %s in worker", ref.uri)
    return model


def _load_forecaster(uri: str) -> Any:
    from models.pyfunc import load_forecaster

    return load_forecaster(uri)


def score_windows(
    windows: DataFrame,
    ref: ModelRef,
    target: RegistryTarget,
    loads: Accumulator | None = None,
) -> DataFrame:
    """Forecast each window with `ref`; add days to failure and the predicted failure date."""
    columns = list(MODEL_INPUT_COLUMNS)

    def score(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        model = None
        for batch in batches:
            if batch.empty:
                continue
            batch = batch.reset_index(drop=True)
            model = model or cached_model(ref, target, loads, _load_forecaster)
            forecast = np.asarray(model.predict(batch[columns]), dtype=np.float64)
            days = forecast_failure_days(
                batch["lifetime_cycles_used"].to_numpy(),
                batch["battery_rated_cycles"].to_numpy(),
                forecast,
            )
            dates = pd.to_datetime(batch["date"])
            failure = dates + pd.to_timedelta(np.nan_to_num(days, nan=0.0), unit="D")
            known = ~np.isnan(days)
            yield pd.DataFrame(
                {
                    "battery_id": batch["battery_id"],
                    "car_id": batch["car_id"],
                    "date": batch["date"],
                    "lifetime_cycles_used": batch["lifetime_cycles_used"],
                    "battery_rated_cycles": batch["battery_rated_cycles"],
                    "forecast": list(forecast),
                    "days_to_failure": pd.Series(
                        np.where(known, days, 0).astype("int64"), dtype="Int32"
                    ).where(known),
                    "predicted_failure_date": pd.Series(failure.dt.date).where(known, None),
                    "model_name": ref.name,
                    "model_version": ref.version,
                    "model_role": ref.role,
                }
            )

    return windows.mapInPandas(score, SCORED_SCHEMA)
