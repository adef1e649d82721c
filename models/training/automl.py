"""Run the AutoML sweep into MLflow, register the best candidate, promote it only if better.

One parent run holds the settings, the leaderboard (CSV and PNG), the best candidate's
predicted-vs-true and residual plots, its pyfunc (signature and input example) and its
last-fold ("holdout") metrics; one nested child run per candidate holds its parameters,
metrics per fold and their means, fit time and predict time per 1,000 windows. The best is
registered as `cfg.mlflow.models.automl` and takes the champion alias only when it beats
the current champion on the same last fold, or when forced. The registered model is the
best candidate as fitted for the last fold (every reading but the last `horizon` days), so
its holdout metrics describe exactly what is registered, as with `pitstop train rnn`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from core.config import PitstopConfig
from models.forecasting.automl import (
    PRIMARY_METRIC,
    CandidateResult,
    leaderboard,
    prepare_readings,
    result_params,
    run_sweep,
)
from models.forecasting.candidates import log_forecaster, select_candidates
from models.forecasting.cv import METRICS, CvFold, model_inputs, rolling_origin_folds, score_fold
from models.forecasting.pyfunc import coerce_model_input, load_forecaster
from models.registry import (
    configure_mlflow,
    has_alias,
    promote_if_better,
    register_version,
    resolve_alias,
)
from models.reporting.automl_plots import (
    leaderboard_figure,
    predicted_vs_true_figure,
    residuals_figure,
)

log = logging.getLogger(__name__)

ARTIFACT_NAME = "model"
HOLDOUT_METRIC = f"holdout_{PRIMARY_METRIC}"
LAB_THRESHOLD = 0.1355
# Seconds of forecasting the model card's permutation importance may spend (~16 forecasts).
_EXPLAIN_SECONDS = 20.0


@dataclass(frozen=True)
class AutomlSettings:
    """What to forecast, how to validate, and when to stop (the `pitstop train automl` options)."""

    target: str = "daily_cycles_used"
    time_column: str = "date"
    series_column: str = "battery_id"
    horizon_days: int = 30
    cv_folds: int = 3
    time_budget_s: float | None = 600.0
    metric_threshold: float | None = LAB_THRESHOLD
    candidates: tuple[str, ...] = ()
    force: bool = False
    seed: int = 0
    data_source: str = "in-memory readings"
    lstm_options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AutomlResult:
    """What the sweep found, what was registered and whether it became the champion."""

    run_id: str
    model_name: str
    version: str
    promoted: bool
    best: str
    leaderboard: pd.DataFrame
    stopped_reason: str
    metrics: dict[str, float]
    champion_version: str | None = None
    champion_metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


def train_automl(
    cfg: PitstopConfig,
    readings: pd.DataFrame,
    settings: AutomlSettings | None = None,
    *,
    on_fold: Callable[[CandidateResult, int], None] | None = None,
    on_candidate: Callable[[CandidateResult], None] | None = None,
) -> AutomlResult:
    """Sweep, log, register and (if better or forced) promote; see the module docstring.

    The time budget counts from the call, so preparing the folds spends it too; what comes
    after the sweep (logging, registering, the model card) is a few seconds to a minute.
    """
    started = time.monotonic()
    settings = settings or AutomlSettings()
    frame = prepare_readings(
        readings, settings.target, settings.time_column, settings.series_column
    )
    window, horizon = cfg.forecast.window_days, settings.horizon_days
    folds = rolling_origin_folds(frame, settings.cv_folds, horizon, window)
    candidates = select_candidates(settings.candidates or None, **settings.lstm_options)
    name, alias = cfg.mlflow.models.automl, cfg.mlflow.alias
    configure_mlflow(cfg)
    with mlflow.start_run(run_name=f"automl-{time.strftime('%Y%m%d-%H%M%S')}") as run:
        mlflow.set_tag("pitstop.model_kind", "automl")
        mlflow.log_params(_run_params(settings, frame, folds, window, [c.name for c in candidates]))

        def logged(result: CandidateResult) -> None:
            _log_child(result)
            if on_candidate is not None:
                on_candidate(result)

        sweep = run_sweep(
            candidates,
            folds,
            time_budget_s=settings.time_budget_s,
            metric_threshold=settings.metric_threshold,
            started=started,
            seed=settings.seed,
            on_fold=on_fold,
            on_candidate=logged,
        )
        board = leaderboard(sweep)
        mlflow.log_text(board.to_csv(index=False), "leaderboard.csv")
        mlflow.log_figure(leaderboard_figure(board, settings.metric_threshold), "leaderboard.png")
        best = sweep.best()
        last = folds[-1]
        assert best.last_model is not None and best.last_forecast is not None  # ranked => set
        holdout = {f"holdout_{k}": v for k, v in score_fold(last, best.last_forecast).items()}
        metrics = {
            **holdout,
            **{f"best_cv_{k}": v for k, v in best.mean_metrics().items()},
            "sweep_seconds": sweep.seconds,
            "candidates_ranked": float(sum(r.ranked for r in sweep.results)),
        }
        mlflow.log_metrics(metrics)
        mlflow.set_tags(
            {"pitstop.best_candidate": best.name, "pitstop.stopped_reason": sweep.stopped_reason}
        )
        mlflow.log_figure(
            predicted_vs_true_figure(last.actual, best.last_forecast, best.name),
            "best_predicted_vs_true.png",
        )
        mlflow.log_figure(
            residuals_figure(last.actual, best.last_forecast, best.name), "best_residuals.png"
        )
        log_forecaster(best.last_model, ARTIFACT_NAME)
        version = register_version(
            run.info.run_id,
            ARTIFACT_NAME,
            name,
            tags={
                "model_kind": "automl",
                "candidate": best.name,
                "data_source": settings.data_source[:200],
            },
        )
        champion_version, champion_metrics = _champion_metrics(name, alias, last)
        promoted = promote_if_better(
            name,
            version,
            HOLDOUT_METRIC,
            metrics[HOLDOUT_METRIC],
            champion_metrics.get(HOLDOUT_METRIC),
            force=settings.force,
            alias=alias,
        )
        if settings.force:
            mlflow.set_tag("pitstop.forced", "true")
        _document(
            cfg,
            best,
            sweep.results,
            name,
            version,
            run.info.run_id,
            frame,
            last,
            holdout,
            settings.data_source,
        )
    seconds = time.monotonic() - started
    log.info(
        "AutoML run %s: %s v%s (%s), promoted=%s, %.1fs",
        run.info.run_id,
        name,
        version,
        best.name,
        promoted,
        seconds,
    )
    return AutomlResult(
        run_id=run.info.run_id,
        model_name=name,
        version=version,
        promoted=promoted,
        best=best.name,
        leaderboard=board,
        stopped_reason=sweep.stopped_reason,
        metrics=metrics,
        champion_version=champion_version,
        champion_metrics=champion_metrics,
        seconds=seconds,
    )


def _run_params(
    settings: AutomlSettings,
    frame: pd.DataFrame,
    folds: list[CvFold],
    window: int,
    candidates: list[str],
) -> dict[str, Any]:
    return {
        "data_source": settings.data_source[:250],
        "target": settings.target,
        "time_column": settings.time_column,
        "series_column": settings.series_column,
        "horizon_days": settings.horizon_days,
        "window_days": window,
        "cv_folds": settings.cv_folds,
        "cv_origins": ",".join(str(f.origin.date()) for f in folds),
        "primary_metric": "normalized_root_mean_squared_error",
        "metric_threshold": settings.metric_threshold,
        "time_budget_s": settings.time_budget_s,
        "candidates": ",".join(candidates)[:250],
        "readings": len(frame),
        "batteries": frame["battery_id"].nunique(),
        "first_date": str(pd.to_datetime(frame["date"]).min().date()),
        "last_date": str(pd.to_datetime(frame["date"]).max().date()),
        "seed": settings.seed,
    }


def _log_child(result: CandidateResult) -> None:
    """One nested run per candidate: parameters, per-fold and mean metrics, timings, status."""
    with mlflow.start_run(run_name=result.name, nested=True):
        mlflow.log_params(result_params(result))
        mlflow.set_tags(
            {"pitstop.candidate_status": result.status, "pitstop.reason": result.reason}
        )
        for fold, scores in enumerate(result.fold_metrics, start=1):
            mlflow.log_metrics({f"fold_{k}": v for k, v in scores.items()}, step=fold)
            mlflow.log_metrics({f"fold{fold}_{k}": scores[k] for k in METRICS})
        if result.fold_metrics:
            mlflow.log_metrics({f"cv_{k}": v for k, v in result.mean_metrics().items()})
        mlflow.log_metrics(
            {
                "fit_seconds": result.fit_seconds,
                "predict_seconds": result.predict_seconds,
                "folds_done": float(len(result.fold_metrics)),
            }
        )
        if result.windows:
            mlflow.log_metric("predict_s_per_1k", result.predict_s_per_1k)


def _champion_metrics(name: str, alias: str, last: CvFold) -> tuple[str | None, dict[str, float]]:
    """The current champion's metrics on this sweep's last fold (it may predate this data)."""
    if not has_alias(name, alias):
        return None, {}
    version, uri = resolve_alias(name, alias)
    try:
        champion = load_forecaster(uri, torch_threads=None)
        scores = score_fold(last, champion.predict(model_inputs(last)))
    except Exception as exc:  # a broken champion must not block a healthy challenger
        log.warning("Could not score champion %s v%s on the last fold: %s", name, version, exc)
        return version, {}
    return version, {f"holdout_{k}": v for k, v in scores.items()}


def _document(
    cfg: PitstopConfig,
    best: CandidateResult,
    results: list[CandidateResult],
    name: str,
    version: str,
    run_id: str,
    frame: pd.DataFrame,
    last: CvFold,
    holdout: dict[str, float],
    data_source: str,
) -> None:
    """Model card and explanation of the registered best; a failure here only warns."""
    model = best.last_model
    assert model is not None
    try:
        from models.reporting.model_card import document_forecaster

        dates = pd.to_datetime(frame["date"])
        after = (dates > last.origin) & (dates <= last.origin + pd.Timedelta(days=last.horizon))
        per_window = best.predict_seconds / best.windows if best.windows else 0.0
        rows = int(np.clip(_EXPLAIN_SECONDS / (16 * per_window or 1e-9), 50, 300))
        baselines = {
            r.name.replace("_", " "): r.fold_metrics[-1]
            for r in results
            if r.candidate.baseline and r.ranked and r.name != "seasonal_naive"
        }
        document_forecaster(
            predict=lambda rows_: model.forecast(
                coerce_model_input(rows_, array_columns=model.extra_inputs)
            ),
            model_name=name,
            version=version,
            run_id=run_id,
            description=(
                f"The best of an AutoML sweep: {best.name} ({best.candidate.library}), "
                f"{best.candidate.description}."
            ),
            train=last.history,
            holdout=frame[after.to_numpy()],
            metrics={k.removeprefix("holdout_"): v for k, v in holdout.items()},
            baselines=baselines,
            data_source=data_source,
            window_days=cfg.forecast.window_days,
            horizon_days=last.horizon,
            alert_within_days=cfg.forecast.alert_within_days,
            max_rows=rows,
            extra_inputs=model.extra_inputs,
        )
    except Exception as exc:  # the version is registered: a missing card must not undo that
        log.warning("Could not write the model card of %s v%s: %s", name, version, exc)
        mlflow.set_tag("pitstop.model_card", f"failed: {exc}"[:250])


def fold_forecasts(model: Any, fold: CvFold) -> np.ndarray:
    """A fitted contract model's forecast of a fold's inputs (for reports and benchmarks)."""
    rows = coerce_model_input(model_inputs(fold), array_columns=model.extra_inputs)
    return np.asarray(model.forecast(rows), dtype=np.float64)
