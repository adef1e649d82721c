"""Which registered model version a job scores with, and loading it once per Python worker.

The driver resolves the alias to a concrete version (at most every
`mlflow.alias_refresh_seconds`) and ships only `models:/name/version` to the workers. Each
worker keeps the loaded model in a small cache keyed by that URI, so a model is loaded once
per worker per version -- not per task, as MLflow's `spark_udf` does in local mode -- and
an alias move reaches the running job without a restart.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pyspark import Accumulator

from core.errors import PitstopError
from models.forecasting.features import HEALTH_HISTORY_COLUMNS
from streaming.worker_heap import freeze_long_lived

log = logging.getLogger(__name__)


class ModelUnavailableError(PitstopError):
    """The configured model cannot be resolved from the registry."""


@dataclass(frozen=True)
class ModelRef:
    """One concrete registered model version and the role it plays in the job."""

    name: str
    version: str
    role: str = "champion"
    source: str | None = None  # a saved model folder outside the registry (fixtures, tests)
    # The optional health history arrays this model reads (from its signature).
    inputs: tuple[str, ...] = field(default=(), compare=False)
    # The failure risk at which this version's alerts open (its MLmodel metadata); None for
    # a version without a calibrated risk, whose alerts follow the forecast's running sum.
    alert_threshold: float | None = field(default=None, compare=False)

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


def optional_inputs(uri: str) -> tuple[str, ...]:
    """The health history arrays the model at `uri` declares as input (its MLflow signature).

    A model whose signature cannot be read gets them all.
    """
    return _described(uri)[0]


def _described(uri: str) -> tuple[tuple[str, ...], float | None]:
    """The optional health inputs the model at `uri` declares (all of them when its signature
    cannot be read) and the alert threshold in its metadata (None: none)."""
    from mlflow.models import Model

    try:
        model = Model.load(uri)
    except Exception as exc:  # MLflow raises its own types; scoring can still go ahead
        log.warning("Cannot read the MLmodel of %s (%s); sending every input", uri, exc)
        return HEALTH_HISTORY_COLUMNS, None
    signature = model.signature
    names = set(signature.inputs.input_names()) if signature is not None else None
    inputs = (
        HEALTH_HISTORY_COLUMNS
        if names is None
        else tuple(c for c in HEALTH_HISTORY_COLUMNS if c in names)
    )
    threshold = ((model.metadata or {}).get("pitstop") or {}).get("alert_threshold")
    return inputs, None if threshold is None else float(threshold)


class ModelTracker:
    """Follows an alias across micro-batches; keeps the last good version if the registry fails.

    The registry is asked at most every `refresh_seconds` (0: every micro-batch), so a
    micro-batch does not wait on a registry call it almost never needs.
    """

    def __init__(
        self,
        client: Any,
        name: str,
        alias: str,
        role: str = "champion",
        refresh_seconds: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client, self._name, self._alias, self._role = client, name, alias, role
        self._refresh_seconds, self._clock = refresh_seconds, clock
        self.current = _with_inputs(resolve_model(client, name, alias, role))
        self._resolved_at = clock()
        log.info("Scoring with %s (alias %s)", self.current.uri, alias)

    def refresh(self) -> ModelRef:
        """The version to use for the next micro-batch (logs a switch or a registry outage)."""
        now = self._clock()
        if now - self._resolved_at < self._refresh_seconds:
            return self.current
        self._resolved_at = now
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
            self.current = _with_inputs(latest)
        return self.current


def _with_inputs(ref: ModelRef) -> ModelRef:
    inputs, threshold = _described(ref.uri)
    if threshold is not None:
        log.info("%s alerts at a failure risk of %.4f", ref.uri, threshold)
    return replace(ref, inputs=inputs, alert_threshold=threshold)


class PinnedModel:
    """A model fixed for the whole run (`--model URI`): replay and batch scoring."""

    def __init__(self, client: Any, uri: str, role: str = "champion") -> None:
        folder = Path(uri).expanduser()
        if (folder / "MLmodel").is_file():
            self.current = _with_inputs(
                ModelRef(
                    name=folder.resolve().name,
                    version="local",
                    role=role,
                    source=str(folder.resolve()),
                )
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
        self.current = _with_inputs(self.current)

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
    freeze_long_lived()  # the model lives as long as the worker: no more scans of it
    if loads is not None:
        loads.add(1)
    log.info("Loaded %s in worker", ref.uri)
    return model


def health_inputs(refs: list[ModelRef]) -> list[str]:
    """The health history arrays some model of `refs` reads (no other is decoded)."""
    return [c for c in HEALTH_HISTORY_COLUMNS if any(c in ref.inputs for ref in refs)]
