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
from models.forecasting.lstm import FitResult, LstmSpec, encode_windows, fit_lstm, predict_lstm
from models.forecasting.metrics import evaluate_holdout
from models.forecasting.pyfunc import load_forecaster, log_lstm_model
from models.registry import (
    configure_mlflow,
    has_alias,
    promote_if_better,
    register_version,
    resolve_alias,
)
from models.reporting.model_card import document_forecaster

log = logging.getLogger(__name__)

ARTIFACT_NAME = "model"
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
    name, alias = cfg.mlflow.models.rnn, cfg.mlflow.alias
    train, holdout = split_holdout(readings, horizon)
    windows, futures = build_training_windows(train, window, horizon)
    channels = health_channels(train) if health_signals else ()
    log.info("Health signal inputs: %s", ", ".join(channels) or "none")
    spec = LstmSpec(window_days=window, horizon_days=horizon, extra_channels=channels)
    configure_mlflow(cfg)
    with mlflow.start_run(run_name=f"rnn-{time.strftime('%Y%m%d-%H%M%S')}") as run:
        mlflow.set_tag("pitstop.model_kind", "lstm")
        mlflow.log_params(
            {
                "data_source": data_source,
                "readings": len(readings),
                "batteries": readings["battery_id"].nunique(),
                "first_date": str(readings["date"].min()),
                "last_date": str(readings["date"].max()),
                "holdout_days": horizon,
                "window_days": window,
                "horizon_days": horizon,
                "hidden_size": spec.hidden_size,
                "num_layers": spec.num_layers,
                "epochs": epochs,
                "batch_size": batch_size,
                "learning_rate": learning_rate,
                "max_windows": max_windows,
                "time_budget_s": time_budget_s,
                "patience": patience,
                "val_fraction": val_fraction,
                "seed": seed,
                "health_signals": health_signals,
                # The LSTM's extra inputs; "none" when off or the readings lack them.
                "extra_channels": ",".join(channels) or "none",
            }
        )
        fit = _fit(
            windows,
            futures,
            spec,
            threads,
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            val_fraction=val_fraction,
            patience=patience,
            max_windows=max_windows,
            time_budget_s=time_budget_s,
            seed=seed,
        )
        _log_fit(fit)
        metrics = _holdout_metrics(fit, train, holdout, window, horizon)
        if cv_folds:
            cv_options = {
                "epochs": epochs,
                "batch_size": batch_size,
                "learning_rate": learning_rate,
                "max_windows": max_windows,
                "patience": patience,
                "val_fraction": val_fraction,
                "time_budget_s": time_budget_s,
                "health_signals": health_signals,
            }
            metrics.update(_cv_metrics(readings, cv_folds, window, horizon, seed, cv_options))
        mlflow.log_metrics(metrics)
        with tempfile.TemporaryDirectory() as workdir:
            log_lstm_model(fit.model, fit.spec, workdir, name=ARTIFACT_NAME)
        version = register_version(
            run.info.run_id,
            ARTIFACT_NAME,
            name,
            tags={"model_kind": "lstm", "data_source": data_source[:200]},
        )
        champion_version, champion_metrics = _champion_metrics(name, alias, train, holdout, cfg)
        for key, value in champion_metrics.items():
            mlflow.log_metric(f"champion_{key}", value)
        promoted = promote_if_better(
            name,
            version,
            PRIMARY_METRIC,
            metrics[PRIMARY_METRIC],
            champion_metrics.get(PRIMARY_METRIC),
            force=force,
            alias=alias,
        )
        _document(cfg, fit, name, version, run.info.run_id, train, holdout, metrics, data_source)
    seconds = time.perf_counter() - started
    log.info(
        "Run %s: %s v%s, promoted=%s, %.1fs", run.info.run_id, name, version, promoted, seconds
    )
    return TrainResult(
        run_id=run.info.run_id,
        model_name=name,
        version=version,
        promoted=promoted,
        metrics=metrics,
        champion_version=champion_version,
        champion_metrics=champion_metrics,
        seconds=seconds,
        extra_channels=fit.spec.extra_channels,
    )


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


def _fit(
    windows: pd.DataFrame,
    futures: np.ndarray,
    spec: LstmSpec,
    threads: int | None,
    **options: Any,
) -> FitResult:
    previous = torch.get_num_threads()
    # One thread by default: on 2 cores shared with a broker or another job, 2 threads ran
    # 6x slower than 1 (threads spin waiting for each other); idle, 2 gained only 1.6x.
    torch.set_num_threads(threads or 1)
    try:
        return fit_lstm(windows, futures, spec, **options)
    finally:
        torch.set_num_threads(previous)


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
    mlflow.log_figure(_loss_figure(fit), "loss_curve.png")


def _loss_figure(fit: FitResult) -> Any:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=110)
    epochs = range(1, len(fit.train_loss) + 1)
    ax.plot(epochs, fit.train_loss, marker="o", label="train")
    ax.plot(epochs, fit.val_loss, marker="o", label="validation (held-out batteries)")
    baseline_label = "validation, weekly baseline alone"
    ax.axhline(fit.baseline_val_loss, color="tab:orange", linestyle=":", label=baseline_label)
    ax.axvline(fit.best_epoch, color="grey", linestyle="--", label=f"best epoch {fit.best_epoch}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("MSE of scaled daily cycles")
    ax.set_title("LSTM loss per epoch")
    ax.legend(fontsize="small")
    fig.tight_layout()
    plt.close(fig)
    return fig


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


def _document(
    cfg: PitstopConfig,
    fit: FitResult,
    name: str,
    version: str,
    run_id: str,
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    metrics: dict[str, float],
    data_source: str,
) -> None:
    """Explain the new version and log its model card; a failure here only warns."""
    try:
        document_forecaster(
            predict=lambda frame: predict_lstm(fit.model, fit.spec, frame),
            model_name=name,
            version=version,
            run_id=run_id,
            description=(
                f"One LSTM network shared by all batteries ({fit.spec.num_layers} layers of "
                f"{fit.spec.hidden_size}), correcting a weekly-pattern baseline."
            ),
            train=train,
            holdout=holdout,
            metrics={k.removeprefix("holdout_"): v for k, v in metrics.items() if "holdout_" in k},
            baselines={
                "weekly baseline": {
                    k.removeprefix("baseline_"): v for k, v in metrics.items() if "baseline_" in k
                }
            },
            data_source=data_source,
            window_days=cfg.forecast.window_days,
            horizon_days=cfg.forecast.horizon_days,
            alert_within_days=cfg.forecast.alert_within_days,
            extra_inputs=fit.spec.extra_channels,
        )
    except Exception as exc:  # the version is registered: a missing card must not undo that
        log.warning("Could not write the model card of %s v%s: %s", name, version, exc)
        mlflow.set_tag("pitstop.model_card", f"failed: {exc}"[:250])


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


def _champion_metrics(
    name: str, alias: str, train: pd.DataFrame, holdout: pd.DataFrame, cfg: PitstopConfig
) -> tuple[str | None, dict[str, float]]:
    """The current champion's metrics on this run's holdout (it may predate this data)."""
    if not has_alias(name, alias):
        return None, {}
    version, uri = resolve_alias(name, alias)
    try:
        champion = load_forecaster(uri, torch_threads=None)
        metrics = evaluate_holdout(
            champion.predict,
            train,
            holdout,
            cfg.forecast.window_days,
            cfg.forecast.horizon_days,
        )
    except Exception as exc:  # a broken champion must not block a healthy challenger
        log.warning("Could not score champion %s v%s on the holdout: %s", name, version, exc)
        return version, {}
    return version, {f"holdout_{k}": v for k, v in metrics.items()}
