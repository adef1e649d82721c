"""Train the compliance classifier, track it in MLflow, register it, promote it only if better.

The caller hands in the labelled notes (`NoteSets`): training and validation notes, and
evaluation (held-out) notes that every run -- and the current champion, re-scored here -- is
judged on. `apps.training_data.compliance_notes` draws them from the simulator's notes
generator, the held-out ones in sentence shapes training never sees, with a fixed seed. The
champion alias moves when the new version has a lower held-out
log loss (a proper score: it rewards confident right answers and punishes confident
wrong ones), when there is no champion yet, or when forced.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from core.config import PitstopConfig
from core.errors import PitstopError
from models.reporting.training_plots import compliance_training_figure
from models.training.template import TrainingPlan, run_training

log = logging.getLogger(__name__)

PRIMARY_METRIC = "eval_loss"


class ComplianceTrainingError(PitstopError):
    """Training settings that cannot work."""


@dataclass(frozen=True)
class NoteSets:
    """Labelled notes (columns `text`, `non_compliant`) to train on, validate on and judge by.

    `params` says how they were drawn; it is logged with the run.
    """

    train: pd.DataFrame
    val: pd.DataFrame
    holdout: pd.DataFrame
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ComplianceTrainResult:
    """What a training run produced and whether it became the champion."""

    run_id: str
    model_name: str
    version: str | None
    promoted: bool
    metrics: dict[str, float]
    champion_version: str | None = None
    champion_metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    history: pd.DataFrame = field(default_factory=pd.DataFrame)


def train_compliance(
    cfg: PitstopConfig,
    notes: NoteSets,
    *,
    epochs: int = 5,
    seed: int = 0,
    force: bool = False,
    batch_size: int = 128,
    learning_rate: float = 3e-3,
    threads: int | None = None,
    progress: bool = False,
    register: bool = True,
) -> ComplianceTrainResult:
    """Train, log, register and (if better or forced) promote one classifier version.

    `seed` initialises the network. `threads` (default: up to 2) sets torch's threads
    for the run only; `progress` shows a rich bar per epoch.
    """
    import torch

    if epochs < 1 or min(len(notes.train), len(notes.val), len(notes.holdout)) < 1:
        raise ComplianceTrainingError("epochs and every data set size must be at least 1.")
    started = time.perf_counter()
    settings = {
        "epochs": epochs,
        "seed": seed,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
    }
    job = _ClassifierJob(cfg, notes, settings, progress)
    previous_threads = torch.get_num_threads()
    # Training is the one place where more than one thread pays; the box is shared.
    torch.set_num_threads(threads or min(2, os.cpu_count() or 1))
    try:
        outcome = run_training(cfg, job.plan(), force=force, register=register, started=started)
    finally:
        torch.set_num_threads(previous_threads)
    log.info("Held-out accuracy %.4f", outcome.metrics["eval_accuracy"])
    return ComplianceTrainResult(
        run_id=outcome.run_id,
        model_name=outcome.model_name,
        version=outcome.version,
        promoted=outcome.promoted,
        metrics=outcome.metrics,
        champion_version=outcome.champion_version,
        champion_metrics=outcome.champion_metrics,
        seconds=outcome.seconds,
        history=pd.DataFrame([asdict(s) for s in outcome.fitted.history]),
    )


@dataclass(frozen=True)
class _ClassifierJob:
    """The classifier's steps of the training template, on one set of notes."""

    cfg: PitstopConfig
    notes: NoteSets
    settings: dict[str, Any]  # epochs, seed, batch_size, learning_rate
    progress: bool

    def plan(self) -> TrainingPlan[Any]:
        notes = self.notes
        return TrainingPlan(
            name="compliance",
            kind="compliance-cnn",
            model_name=self.cfg.mlflow.models.compliance,
            alias=self.cfg.mlflow.alias,
            primary_metric=PRIMARY_METRIC,
            params={
                **self.settings,
                "train_notes": len(notes.train),
                "val_notes": len(notes.val),
                "holdout_notes": len(notes.holdout),
                **notes.params,
            },
            fit=self.fit,
            evaluate=self.evaluate,
            log_model=self.log_model,
            score_champion=self.score_champion,
            lower_is_better=True,
            version_tags={"model_kind": "compliance-cnn"},
        )

    def fit(self) -> Any:
        from models.compliance.classifier import fit_classifier

        train, val, s = self.notes.train, self.notes.val, self.settings
        with _epoch_progress(self.progress, s["epochs"], len(train), s["batch_size"]) as on_batch:
            return fit_classifier(
                train["text"].tolist(),
                train["non_compliant"].tolist(),
                val["text"].tolist(),
                val["non_compliant"].tolist(),
                **s,
                on_batch=on_batch,
                on_epoch=_log_epoch,
            )

    def evaluate(self, fit: Any) -> dict[str, float]:
        from models.compliance.classifier import classification_metrics, predict_proba

        mlflow.log_params({"vocabulary": len(fit.tokenizer.vocab), **asdict(fit.model.spec)})
        val, holdout = self.notes.val, self.notes.holdout
        val_probs = predict_proba(fit.model, fit.tokenizer, val["text"].tolist())
        val_metrics = classification_metrics(val["non_compliant"], val_probs)
        probs = predict_proba(fit.model, fit.tokenizer, holdout["text"].tolist())
        eval_metrics = classification_metrics(holdout["non_compliant"], probs)
        metrics = {f"eval_{k}": v for k, v in eval_metrics.items()}
        metrics.update({f"val_{k}": v for k, v in val_metrics.items() if k != "loss"})
        metrics["fit_seconds"] = fit.seconds
        _log_history(pd.DataFrame([asdict(s) for s in fit.history]))
        return metrics

    def log_model(self, fit: Any, artifact: str) -> None:
        from models.compliance.pyfunc import log_compliance_model

        with tempfile.TemporaryDirectory() as workdir:
            log_compliance_model(fit.model, fit.tokenizer, workdir, name=artifact)

    def score_champion(self, uri: str) -> dict[str, float]:
        """The champion re-scored on this run's held-out notes."""
        from models.compliance.classifier import classification_metrics
        from models.compliance.pyfunc import load_compliance_classifier

        holdout = self.notes.holdout
        champion = load_compliance_classifier(uri, torch_threads=None)
        probs = champion.predict_proba(holdout["text"].tolist())
        metrics = classification_metrics(holdout["non_compliant"], np.asarray(probs))
        return {f"eval_{k}": v for k, v in metrics.items()}


def _log_epoch(stats: Any) -> None:
    mlflow.log_metrics(
        {
            "train_loss": stats.train_loss,
            "train_accuracy": stats.train_accuracy,
            "val_loss": stats.val_loss,
            "val_accuracy": stats.val_accuracy,
            "lr": stats.lr,
        },
        step=stats.epoch,
    )


def _log_history(history: pd.DataFrame) -> None:
    with tempfile.TemporaryDirectory() as workdir:
        folder = Path(workdir)
        history.to_csv(folder / "training_history.csv", index=False)
        (folder / "training_history.json").write_text(
            json.dumps(history.to_dict("records"), indent=2), encoding="utf-8"
        )
        mlflow.log_artifact(str(folder / "training_history.csv"))
        mlflow.log_artifact(str(folder / "training_history.json"))
    mlflow.log_figure(compliance_training_figure(history), "training_results.png")


@contextmanager
def _epoch_progress(enabled: bool, epochs: int, notes: int, batch_size: int) -> Iterator[Any]:
    """A rich bar per epoch (advanced per batch), or no callback at all."""
    if not enabled:
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    steps = -(-notes // batch_size)
    tasks: dict[int, Any] = {}
    with Progress(
        TextColumn("[bold]epoch {task.fields[epoch]}/{task.fields[epochs]}[/bold]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("batches"),
        TimeElapsedColumn(),
    ) as bar:

        def on_batch(epoch: int, step: int) -> None:
            if epoch not in tasks:
                tasks[epoch] = bar.add_task("fit", total=steps, epoch=epoch, epochs=epochs)
            bar.update(tasks[epoch], completed=step)

        yield on_batch
