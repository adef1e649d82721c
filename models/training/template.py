"""The one training skeleton every trainer runs: fit -> evaluate -> log -> register ->
compare with the champion on the same holdout -> promote.

A trainer (rnn, automl, compliance) loads and splits its data, then hands `run_training` a
`TrainingPlan`: its parameters and the few steps that differ -- how to fit, how to score the
fitted model and its baselines on the holdout, how to log it as a pyfunc, how to score the
current champion on that very holdout, and what to write about it once registered. The
skeleton owns the MLflow run, the registry and the champion comparison, so all three
register and promote the same way (as mlops-stacks' one deployment step serves every model).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import mlflow

from core.config import PitstopConfig
from models.registry import (
    configure_mlflow,
    has_alias,
    promote_if_better,
    register_version,
    resolve_alias,
)

log = logging.getLogger(__name__)

ARTIFACT_NAME = "model"
Fitted = TypeVar("Fitted")


@dataclass(frozen=True)
class TrainingPlan(Generic[Fitted]):
    """What one trainer passes to `run_training`: names, parameters and its own steps.

    Every step runs inside the MLflow run, so it may log more (curves, figures, child runs).
    """

    name: str  # the run name's prefix
    kind: str  # the `pitstop.model_kind` tag
    model_name: str
    alias: str
    primary_metric: str  # compared with the champion's on the same holdout
    params: dict[str, Any]
    fit: Callable[[], Fitted]
    evaluate: Callable[[Fitted], dict[str, float]]  # the run's metrics, baselines included
    log_model: Callable[[Fitted, str], None]  # log the pyfunc under the artifact name given
    score_champion: Callable[[str], dict[str, float]]  # model URI -> its metrics, same holdout
    lower_is_better: bool = True
    version_tags: dict[str, str] = field(default_factory=dict)
    # After registering: (fitted, version, run_id, metrics); a model card, say.
    document: Callable[[Fitted, str, str, dict[str, float]], None] | None = None
    # Metrics describing the training inputs, logged with the run (a forecaster's daily
    # cycles quantiles: what `pitstop monitor` measures live input drift against).
    inputs_profile: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainingOutcome(Generic[Fitted]):
    """What `run_training` did: the run, the version registered and the champion verdict."""

    run_id: str
    model_name: str
    fitted: Fitted
    metrics: dict[str, float]
    version: str | None = None
    promoted: bool = False
    champion_version: str | None = None
    champion_metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


def run_training(
    cfg: PitstopConfig,
    plan: TrainingPlan[Fitted],
    *,
    force: bool = False,
    register: bool = True,
    started: float | None = None,
) -> TrainingOutcome[Fitted]:
    """Fit, evaluate and log `plan` in one MLflow run; register it and promote it if it beats
    the champion on the same holdout (or `force`). `started` (perf_counter) counts the
    trainer's own preparation into the outcome's seconds."""
    started = time.perf_counter() if started is None else started
    configure_mlflow(cfg)
    run_name = f"{plan.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    with mlflow.start_run(run_name=run_name) as run:
        run_id = run.info.run_id
        mlflow.set_tag("pitstop.model_kind", plan.kind)
        mlflow.log_params(plan.params)
        if plan.inputs_profile:
            mlflow.log_metrics(plan.inputs_profile)
        fitted = plan.fit()
        metrics = plan.evaluate(fitted)
        mlflow.log_metrics(metrics)
        plan.log_model(fitted, ARTIFACT_NAME)
        if not register:
            return TrainingOutcome(
                run_id, plan.model_name, fitted, metrics, seconds=time.perf_counter() - started
            )
        version = register_version(run_id, ARTIFACT_NAME, plan.model_name, tags=plan.version_tags)
        champion_version, champion = champion_metrics(
            plan.model_name, plan.alias, plan.score_champion
        )
        mlflow.log_metrics({f"champion_{k}": v for k, v in champion.items()})
        promoted = promote_if_better(
            plan.model_name,
            version,
            plan.primary_metric,
            metrics[plan.primary_metric],
            champion.get(plan.primary_metric),
            lower_is_better=plan.lower_is_better,
            force=force,
            alias=plan.alias,
        )
        if force:
            mlflow.set_tag("pitstop.forced", "true")
        if plan.document is not None:
            _document(plan, fitted, version, run_id, metrics)
    seconds = time.perf_counter() - started
    log.info(
        "Run %s: %s v%s, promoted=%s, %.1fs", run_id, plan.model_name, version, promoted, seconds
    )
    return TrainingOutcome(
        run_id,
        plan.model_name,
        fitted,
        metrics,
        version,
        promoted,
        champion_version,
        champion,
        seconds,
    )


def champion_metrics(
    name: str, alias: str, score: Callable[[str], dict[str, float]]
) -> tuple[str | None, dict[str, float]]:
    """The version `alias` points at and its metrics from `score(model_uri)`, scored now on
    this run's holdout (the champion may predate this data); ({} when it cannot be scored)."""
    if not has_alias(name, alias):
        return None, {}
    version, uri = resolve_alias(name, alias)
    try:
        return version, score(uri)
    except Exception as exc:  # a broken champion must not block a healthy challenger
        log.warning("Could not score champion %s v%s on the holdout: %s", name, version, exc)
        return version, {}


def _document(
    plan: TrainingPlan[Fitted], fitted: Fitted, version: str, run_id: str, metrics: dict
) -> None:
    """The plan's write-up of the new version (model card, explanation); a failure only warns:
    the version is registered, and a missing card must not undo that."""
    assert plan.document is not None
    try:
        plan.document(fitted, version, run_id, metrics)
    except Exception as exc:
        log.warning("Could not write the model card of %s v%s: %s", plan.model_name, version, exc)
        mlflow.set_tag("pitstop.model_card", f"failed: {exc}"[:250])
