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
    SweepResult,
    leaderboard,
    prepare_readings,
    result_params,
    run_sweep,
)
from models.forecasting.candidates import log_forecaster, select_candidates
from models.forecasting.cv import METRICS, CvFold, model_inputs, rolling_origin_folds, score_fold
from models.forecasting.pyfunc import coerce_model_input, load_forecaster
from models.reporting.automl_plots import (
    leaderboard_figure,
    predicted_vs_true_figure,
    residuals_figure,
)
from models.reporting.live_metrics import daily_cycles_profile
from models.training.template import TrainingPlan, run_training

log = logging.getLogger(__name__)

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
    started, counted = time.monotonic(), time.perf_counter()
    settings = settings or AutomlSettings()
    frame = prepare_readings(
        readings, settings.target, settings.time_column, settings.series_column
    )
    window = cfg.forecast.window_days
    folds = rolling_origin_folds(frame, settings.cv_folds, settings.horizon_days, window)
    candidates = select_candidates(settings.candidates or None, **settings.lstm_options)
    job = _SweepJob(cfg, settings, frame, folds, candidates, started, on_fold, on_candidate)
    outcome = run_training(cfg, job.plan(), force=settings.force, started=counted)
    sweep = outcome.fitted
    log.info("AutoML best: %s (%s)", sweep.best().name, sweep.stopped_reason)
    return AutomlResult(
        run_id=outcome.run_id,
        model_name=outcome.model_name,
        version=str(outcome.version),
        promoted=outcome.promoted,
        best=sweep.best().name,
        leaderboard=leaderboard(sweep),
        stopped_reason=sweep.stopped_reason,
        metrics=outcome.metrics,
        champion_version=outcome.champion_version,
        champion_metrics=outcome.champion_metrics,
        seconds=outcome.seconds,
    )


@dataclass(frozen=True)
class _SweepJob:
    """The AutoML sweep's steps of the training template: the best candidate of the sweep is
    what is registered, judged on the last fold."""

    cfg: PitstopConfig
    settings: AutomlSettings
    frame: pd.DataFrame
    folds: list[CvFold]
    candidates: list[Any]
    started: float  # time.monotonic() at the call: the time budget counts from it
    on_fold: Callable[[CandidateResult, int], None] | None
    on_candidate: Callable[[CandidateResult], None] | None

    def plan(self) -> TrainingPlan[SweepResult]:
        settings = self.settings
        window = self.cfg.forecast.window_days
        names = [c.name for c in self.candidates]
        return TrainingPlan(
            name="automl",
            kind="automl",
            model_name=self.cfg.mlflow.models.automl,
            alias=self.cfg.mlflow.alias,
            primary_metric=HOLDOUT_METRIC,
            params=_run_params(settings, self.frame, self.folds, window, names),
            fit=self.fit,
            evaluate=self.evaluate,
            log_model=lambda sweep, artifact: log_forecaster(sweep.best().last_model, artifact),
            score_champion=self.score_champion,
            version_tags={"model_kind": "automl", "data_source": settings.data_source[:200]},
            document=self.document,
            inputs_profile=daily_cycles_profile(self.frame),
        )

    def fit(self) -> SweepResult:
        def logged(result: CandidateResult) -> None:
            _log_child(result)
            if self.on_candidate is not None:
                self.on_candidate(result)

        return run_sweep(
            self.candidates,
            self.folds,
            time_budget_s=self.settings.time_budget_s,
            metric_threshold=self.settings.metric_threshold,
            started=self.started,
            seed=self.settings.seed,
            on_fold=self.on_fold,
            on_candidate=logged,
        )

    def evaluate(self, sweep: SweepResult) -> dict[str, float]:
        """The best candidate's last-fold ("holdout") metrics; the leaderboard and the best's
        plots go into the run beside them."""
        board = leaderboard(sweep)
        mlflow.log_text(board.to_csv(index=False), "leaderboard.csv")
        threshold = self.settings.metric_threshold
        mlflow.log_figure(leaderboard_figure(board, threshold), "leaderboard.png")
        best, last = sweep.best(), self.folds[-1]
        assert best.last_model is not None and best.last_forecast is not None  # ranked => set
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
        return {
            **{f"holdout_{k}": v for k, v in score_fold(last, best.last_forecast).items()},
            **{f"best_cv_{k}": v for k, v in best.mean_metrics().items()},
            "sweep_seconds": sweep.seconds,
            "candidates_ranked": float(sum(r.ranked for r in sweep.results)),
        }

    def score_champion(self, uri: str) -> dict[str, float]:
        """The current champion on this sweep's last fold (it may predate this data)."""
        last = self.folds[-1]
        champion = load_forecaster(uri, torch_threads=None)
        scores = score_fold(last, champion.predict(model_inputs(last)))
        return {f"holdout_{k}": v for k, v in scores.items()}

    def document(self, sweep: SweepResult, version: str, run_id: str, metrics: dict) -> None:
        """Model card and explanation of the registered best."""
        from models.reporting.model_card import document_forecaster

        best, last, frame = sweep.best(), self.folds[-1], self.frame
        model = best.last_model
        assert model is not None
        dates = pd.to_datetime(frame["date"])
        after = (dates > last.origin) & (dates <= last.origin + pd.Timedelta(days=last.horizon))
        per_window = best.predict_seconds / best.windows if best.windows else 0.0
        rows = int(np.clip(_EXPLAIN_SECONDS / (16 * per_window or 1e-9), 50, 300))
        baselines = {
            r.name.replace("_", " "): r.fold_metrics[-1]
            for r in sweep.results
            if r.candidate.baseline and r.ranked and r.name != "seasonal_naive"
        }
        document_forecaster(
            predict=lambda rows_: model.forecast(
                coerce_model_input(rows_, array_columns=model.extra_inputs)
            ),
            model_name=self.cfg.mlflow.models.automl,
            version=version,
            run_id=run_id,
            description=(
                f"The best of an AutoML sweep: {best.name} ({best.candidate.library}), "
                f"{best.candidate.description}."
            ),
            train=last.history,
            holdout=frame[after.to_numpy()],
            metrics={k.removeprefix("holdout_"): v for k, v in metrics.items() if "holdout_" in k},
            baselines=baselines,
            data_source=self.settings.data_source,
            window_days=self.cfg.forecast.window_days,
            horizon_days=last.horizon,
            alert_within_days=self.cfg.forecast.alert_within_days,
            max_rows=rows,
            extra_inputs=model.extra_inputs,
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


def fold_forecasts(model: Any, fold: CvFold) -> np.ndarray:
    """A fitted contract model's forecast of a fold's inputs (for reports and benchmarks)."""
    rows = coerce_model_input(model_inputs(fold), array_columns=model.extra_inputs)
    return np.asarray(model.forecast(rows), dtype=np.float64)
