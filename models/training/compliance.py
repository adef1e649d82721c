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

log = logging.getLogger(__name__)

ARTIFACT_NAME = "model"
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
    for the fit only; `progress` shows a rich bar per epoch.
    """
    import torch

    from models.compliance.classifier import classification_metrics, fit_classifier, predict_proba
    from models.compliance.pyfunc import log_compliance_model
    from models.registry import configure_mlflow, promote_if_better, register_version

    if epochs < 1 or min(len(notes.train), len(notes.val), len(notes.holdout)) < 1:
        raise ComplianceTrainingError("epochs and every data set size must be at least 1.")
    started = time.perf_counter()
    name, alias = cfg.mlflow.models.compliance, cfg.mlflow.alias
    train, val, holdout = notes.train, notes.val, notes.holdout
    configure_mlflow(cfg)
    previous_threads = torch.get_num_threads()
    # Training is the one place where more than one thread pays; the box is shared.
    torch.set_num_threads(threads or min(2, os.cpu_count() or 1))
    try:
        with mlflow.start_run(run_name=f"compliance-{time.strftime('%Y%m%d-%H%M%S')}") as run:
            mlflow.set_tag("pitstop.model_kind", "compliance-cnn")
            mlflow.log_params(
                {
                    "epochs": epochs,
                    "seed": seed,
                    "batch_size": batch_size,
                    "learning_rate": learning_rate,
                    "train_notes": len(train),
                    "val_notes": len(val),
                    "holdout_notes": len(holdout),
                    **notes.params,
                }
            )
            with _epoch_progress(progress, epochs, len(train), batch_size) as on_batch:
                fit = fit_classifier(
                    train["text"].tolist(),
                    train["non_compliant"].tolist(),
                    val["text"].tolist(),
                    val["non_compliant"].tolist(),
                    epochs=epochs,
                    batch_size=batch_size,
                    learning_rate=learning_rate,
                    seed=seed,
                    on_batch=on_batch,
                    on_epoch=_log_epoch,
                )
            history = pd.DataFrame([asdict(s) for s in fit.history])
            mlflow.log_params({"vocabulary": len(fit.tokenizer.vocab), **asdict(fit.model.spec)})
            val_probs = predict_proba(fit.model, fit.tokenizer, val["text"].tolist())
            val_metrics = classification_metrics(val["non_compliant"], val_probs)
            probs = predict_proba(fit.model, fit.tokenizer, holdout["text"].tolist())
            eval_metrics = classification_metrics(holdout["non_compliant"], probs)
            metrics = {f"eval_{k}": v for k, v in eval_metrics.items()}
            metrics.update({f"val_{k}": v for k, v in val_metrics.items() if k != "loss"})
            metrics["fit_seconds"] = fit.seconds
            mlflow.log_metrics(metrics)
            _log_history(history)
            with tempfile.TemporaryDirectory() as workdir:
                log_compliance_model(fit.model, fit.tokenizer, workdir, name=ARTIFACT_NAME)
            version, promoted, champion_version, champion_metrics = None, False, None, {}
            if register:
                version = register_version(
                    run.info.run_id, ARTIFACT_NAME, name, tags={"model_kind": "compliance-cnn"}
                )
                champion_version, champion_metrics = _champion_metrics(name, alias, holdout)
                promoted = promote_if_better(
                    name,
                    version,
                    PRIMARY_METRIC,
                    metrics[PRIMARY_METRIC],
                    champion_metrics.get(PRIMARY_METRIC),
                    lower_is_better=True,
                    force=force,
                    alias=alias,
                )
    finally:
        torch.set_num_threads(previous_threads)
    seconds = time.perf_counter() - started
    log.info(
        "Run %s: %s v%s, held-out accuracy %.4f, promoted=%s, %.1fs",
        run.info.run_id,
        name,
        version,
        metrics["eval_accuracy"],
        promoted,
        seconds,
    )
    return ComplianceTrainResult(
        run_id=run.info.run_id,
        model_name=name,
        version=version,
        promoted=promoted,
        metrics=metrics,
        champion_version=champion_version,
        champion_metrics=champion_metrics,
        seconds=seconds,
        history=history,
    )


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
    mlflow.log_figure(training_figure(history), "training_results.png")


def training_figure(history: pd.DataFrame) -> Any:
    """Accuracy and loss per epoch, training and validation, side by side."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    from matplotlib import pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, (acc, loss) = plt.subplots(1, 2, figsize=(10, 3.8), dpi=110)
    epochs = history["epoch"]
    acc.plot(epochs, history["train_accuracy"], marker="o", label="training")
    acc.plot(epochs, history["val_accuracy"], marker="o", label="validation")
    acc.set_title("Accuracy")
    loss.plot(epochs, history["train_loss"], marker="o", label="training")
    loss.plot(epochs, history["val_loss"], marker="o", label="validation")
    loss.set_yscale("log")  # losses fall by orders of magnitude
    loss.set_title("Loss (binary cross-entropy)")
    for ax in (acc, loss):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle("Component-compliance classifier")
    fig.tight_layout()
    plt.close(fig)
    return fig


def _champion_metrics(
    name: str, alias: str, holdout: pd.DataFrame
) -> tuple[str | None, dict[str, float]]:
    """The current champion's metrics on this run's held-out notes (re-scored now)."""
    from models.compliance.classifier import classification_metrics
    from models.compliance.pyfunc import load_compliance_classifier
    from models.registry import has_alias, resolve_alias

    if not has_alias(name, alias):
        return None, {}
    version, uri = resolve_alias(name, alias)
    try:
        champion = load_compliance_classifier(uri, torch_threads=None)
        probs = champion.predict_proba(holdout["text"].tolist())
        metrics = classification_metrics(holdout["non_compliant"], np.asarray(probs))
    except Exception as exc:  # a broken champion must not block a healthy challenger
        log.warning("Could not score champion %s v%s on the held-out notes: %s", name, version, exc)
        return version, {}
    return version, {f"eval_{k}": v for k, v in metrics.items()}


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
