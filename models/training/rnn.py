"""Train the LSTM forecaster, track it in MLflow, register it, and promote it only if better.

One run logs: parameters, train/validation loss per epoch, a loss-curve PNG, holdout
metrics (and those of the weekly baseline the LSTM corrects, to show what it adds), the
pyfunc with signature and input example. The new version takes the champion alias only
when it beats the current champion on the same holdout, or when forced.

When the training readings carry health signals (each set on at least half the readings),
their day-by-day histories are extra LSTM inputs, unless `health_signals=False`.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import torch

from core.config import PitstopConfig
from models.forecasting.data import split_holdout
from models.forecasting.features import build_training_windows, health_channels
from models.forecasting.lstm import FitResult, fit_lstm, predict_lstm
from models.forecasting.lstm_windows import LstmSpec, encode_windows
from models.forecasting.metrics import evaluate_holdout
from models.forecasting.pyfunc import load_forecaster, log_lstm_model
from models.registry import configure_mlflow, has_alias, resolve_alias
from models.reporting.live_metrics import daily_cycles_profile
from models.reporting.model_card import document_forecaster
from models.reporting.training_plots import lstm_loss_figure
from models.training.template import TrainingPlan, run_training

log = logging.getLogger(__name__)

PRIMARY_METRIC = "holdout_nrmse"


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced and whether it became the champion."""

    run_id: str
    model_name: str
    version: str
    promoted: bool
    metrics: dict[str, float]
    champion_version: str | None = None
    champion_metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    extra_channels: tuple[str, ...] = ()


def train_rnn(
    cfg: PitstopConfig,
    readings: pd.DataFrame,
    *,
    epochs: int = 20,
    batch_size: int = 256,
    seed: int = 0,
    force: bool = False,
    learning_rate: float = 3e-3,
    max_windows: int | None = 12_000,
    time_budget_s: float | None = 90.0,
    patience: int = 4,
    val_fraction: float = 0.15,
    threads: int | None = None,
    data_source: str = "in-memory readings",
    cv_folds: int = 0,
    health_signals: bool = True,
) -> TrainResult:
    """Train, log, register and (if better or forced) promote one LSTM version.

    `max_windows` and `time_budget_s` bound the fit so the default demo fleet trains in
    under two minutes on two cores; `threads` (default 1) sets torch's threads for the
    fit only. `cv_folds` > 0 also logs the AutoML sweep's cross-validation metrics
    (`cv_nrmse`, ...) for these settings, refitting once per fold, so the two compare.
    `health_signals` (default on) feeds the readings' health signal histories to the network
    when they are present (see `models.forecasting.features.health_channels`).
    """
    started = time.perf_counter()
    window, horizon = cfg.forecast.window_days, cfg.forecast.horizon_days
    train, holdout = split_holdout(readings, horizon)
    channels = health_channels(train) if health_signals else ()
    log.info("Health signal inputs: %s", ", ".join(channels) or "none")
    job = _LstmJob(
        cfg,
        readings,
        train,
        holdout,
        LstmSpec(window_days=window, horizon_days=horizon, extra_channels=channels),
        fit_options={
            "epochs": epochs,
            "batch_size": batch_size,
            "learning_rate": learning_rate,
            "max_windows": max_windows,
            "time_budget_s": time_budget_s,
            "patience": patience,
            "val_fraction": val_fraction,
        },
        seed=seed,
        threads=threads,
        cv_folds=cv_folds,
        health_signals=health_signals,
        data_source=data_source,
    )
    outcome = run_training(cfg, job.plan(), force=force, started=started)
    return TrainResult(
        run_id=outcome.run_id,
        model_name=outcome.model_name,
        version=str(outcome.version),
        promoted=outcome.promoted,
        metrics=outcome.metrics,
        champion_version=outcome.champion_version,
        champion_metrics=outcome.champion_metrics,
        seconds=outcome.seconds,
        extra_channels=outcome.fitted.spec.extra_channels,
    )


@dataclass(frozen=True)
class _LstmJob:
    """The LSTM's steps of the training template, over one split of the readings."""

    cfg: PitstopConfig
    readings: pd.DataFrame
    train: pd.DataFrame
    holdout: pd.DataFrame
    spec: LstmSpec
    fit_options: dict[str, Any]
    seed: int
    threads: int | None
    cv_folds: int
    health_signals: bool
    data_source: str

    def plan(self) -> TrainingPlan[FitResult]:
        return TrainingPlan(
            name="rnn",
            kind="lstm",
            model_name=self.cfg.mlflow.models.rnn,
            alias=self.cfg.mlflow.alias,
            primary_metric=PRIMARY_METRIC,
            params=self.params(),
            fit=self.fit,
            evaluate=self.evaluate,
            log_model=self.log_model,
            score_champion=self.score_champion,
            version_tags={"model_kind": "lstm", "data_source": self.data_source[:200]},
            document=self.document,
            inputs_profile=daily_cycles_profile(self.train),
        )

    def params(self) -> dict[str, Any]:
        readings, spec = self.readings, self.spec
        return {
            "data_source": self.data_source,
            "readings": len(readings),
            "batteries": readings["battery_id"].nunique(),
            "first_date": str(readings["date"].min()),
            "last_date": str(readings["date"].max()),
            "holdout_days": spec.horizon_days,
            "window_days": spec.window_days,
            "horizon_days": spec.horizon_days,
            "hidden_size": spec.hidden_size,
            "num_layers": spec.num_layers,
            **self.fit_options,
            "seed": self.seed,
            "health_signals": self.health_signals,
            # The LSTM's extra inputs; "none" when off or the readings lack them.
            "extra_channels": ",".join(spec.extra_channels) or "none",
        }

    def fit(self) -> FitResult:
        windows, futures = build_training_windows(
            self.train, self.spec.window_days, self.spec.horizon_days
        )
        previous = torch.get_num_threads()
        # One thread by default: on 2 cores shared with a broker or another job, 2 threads ran
        # 6x slower than 1 (threads spin waiting for each other); idle, 2 gained only 1.6x.
        torch.set_num_threads(self.threads or 1)
        try:
            result = fit_lstm(windows, futures, self.spec, seed=self.seed, **self.fit_options)
        finally:
            torch.set_num_threads(previous)
        _log_fit(result)
        return result

    def evaluate(self, fit: FitResult) -> dict[str, float]:
        window, horizon = self.spec.window_days, self.spec.horizon_days
        metrics = _holdout_metrics(fit, self.train, self.holdout, window, horizon)
        if self.cv_folds:
            options = {**self.fit_options, "health_signals": self.health_signals}
            metrics.update(
                _cv_metrics(self.readings, self.cv_folds, window, horizon, self.seed, options)
            )
        return metrics

    def log_model(self, fit: FitResult, artifact: str) -> None:
        with tempfile.TemporaryDirectory() as workdir:
            log_lstm_model(fit.model, fit.spec, workdir, name=artifact)

    def score_champion(self, uri: str) -> dict[str, float]:
        champion = load_forecaster(uri, torch_threads=None)
        window, horizon = self.spec.window_days, self.spec.horizon_days
        scores = evaluate_holdout(champion.predict, self.train, self.holdout, window, horizon)
        return {f"holdout_{k}": v for k, v in scores.items()}

    def document(self, fit: FitResult, version: str, run_id: str, metrics: dict) -> None:
        """Explain the new version and log its model card."""
        document_forecaster(
            predict=lambda frame: predict_lstm(fit.model, fit.spec, frame),
            model_name=self.cfg.mlflow.models.rnn,
            version=version,
            run_id=run_id,
            description=(
                f"One LSTM network shared by all batteries ({fit.spec.num_layers} layers of "
                f"{fit.spec.hidden_size}), correcting a weekly-pattern baseline."
            ),
            train=self.train,
            holdout=self.holdout,
            metrics=_prefixed(metrics, "holdout_"),
            baselines={"weekly baseline": _prefixed(metrics, "baseline_")},
            data_source=self.data_source,
            window_days=self.cfg.forecast.window_days,
            horizon_days=self.cfg.forecast.horizon_days,
            alert_within_days=self.cfg.forecast.alert_within_days,
            extra_inputs=fit.spec.extra_channels,
        )


def _prefixed(metrics: dict[str, float], prefix: str) -> dict[str, float]:
    return {k.removeprefix(prefix): v for k, v in metrics.items() if k.startswith(prefix)}


def ensure_champion(
    cfg: PitstopConfig, readings_loader: Callable[[], pd.DataFrame], **train_options: Any
) -> TrainResult | None:
    """Train and promote a first LSTM only when no version of it holds the champion alias."""
    configure_mlflow(cfg)
    name, alias = cfg.mlflow.models.rnn, cfg.mlflow.alias
    if has_alias(name, alias):
        version, _ = resolve_alias(name, alias)
        log.info("%s already has a %s (version %s); not training", name, alias, version)
        return None
    return train_rnn(cfg, readings_loader(), **train_options)


def _log_fit(fit: FitResult) -> None:
    for epoch, (train_loss, val_loss) in enumerate(
        zip(fit.train_loss, fit.val_loss, strict=True), start=1
    ):
        mlflow.log_metrics({"train_loss": train_loss, "val_loss": val_loss}, step=epoch)
    mlflow.log_metrics(
        {
            "best_epoch": fit.best_epoch,
            "baseline_val_loss": fit.baseline_val_loss,
            "epochs_run": len(fit.train_loss),
            "fit_seconds": fit.seconds,
            "train_windows": fit.train_windows,
            "val_windows": fit.val_windows,
        }
    )
    mlflow.set_tag("pitstop.stopped_early", str(fit.stopped_early).lower())
    mlflow.log_figure(lstm_loss_figure(fit), "loss_curve.png")


def _holdout_metrics(
    fit: FitResult, train: pd.DataFrame, holdout: pd.DataFrame, window: int, horizon: int
) -> dict[str, float]:
    def baseline(frame: pd.DataFrame) -> np.ndarray:
        _, base, scale = encode_windows(frame, fit.spec)
        return base * scale[:, None]

    model = evaluate_holdout(
        lambda frame: predict_lstm(fit.model, fit.spec, frame), train, holdout, window, horizon
    )
    weekly = evaluate_holdout(baseline, train, holdout, window, horizon)
    metrics = {f"holdout_{k}": v for k, v in model.items()}
    metrics.update({f"baseline_{k}": v for k, v in weekly.items()})
    log.info(
        "Holdout NRMSE %.4f (weekly baseline %.4f), MAE %.4f",
        metrics["holdout_nrmse"],
        metrics["baseline_nrmse"],
        metrics["holdout_mae"],
    )
    return metrics


def _cv_metrics(
    readings: pd.DataFrame,
    folds: int,
    window: int,
    horizon: int,
    seed: int,
    options: dict[str, Any],
) -> dict[str, float]:
    """Mean metrics over the AutoML sweep's rolling-origin folds, refitting on each fold."""
    from models.forecasting.automl import evaluate_candidate
    from models.forecasting.candidates import lstm_candidate
    from models.forecasting.cv import rolling_origin_folds

    cv_folds = rolling_origin_folds(readings, folds, horizon, window)
    result = evaluate_candidate(lstm_candidate(**options), cv_folds, seed=seed)
    if not result.ranked:
        log.warning("Cross-validation of the LSTM did not finish: %s", result.reason)
        return {}
    return {f"cv_{k}": v for k, v in result.mean_metrics().items()}
