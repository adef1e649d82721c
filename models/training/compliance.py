"""Train the compliance classifier, track it in MLflow, register it, promote it only if better.

The caller hands in the labelled notes (`NoteSets`): training and validation notes, held-out
notes that every run -- and the current champion, re-scored here -- is judged on, and
optional evaluation-only sets (hand-written notes, say) that are scored and reported but
never used to fit, choose or promote. `apps.training_data` draws them from the user's file
or the simulator's notes generator.

Candidates compete on the validation notes (`CANDIDATES`): the network (a CNN over tokens,
`models.compliance.classifier`) and a strong simple baseline (character and word n-gram
TF-IDF + logistic regression), with and without the explicitly read manufacture year. Every
candidate is logged; the one with the lowest validation log loss is registered. The
champion alias moves when the new version has a lower held-out log loss (a proper score: it
rewards confident right answers and punishes confident wrong ones), when there is no
champion yet, or when forced.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Iterator, Sequence
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
CHOICE_METRIC = "val_loss"
# name -> what it is; the order breaks exact ties (simplest first).
CANDIDATES: dict[str, str] = {
    "tfidf_year": (
        "TF-IDF char+word n-grams of the spelling-corrected text + manufacture-year features, "
        "logistic regression"
    ),
    "tfidf": "TF-IDF char+word n-grams, logistic regression",
    "network": "CNN over words, character n-grams and digits",
}


class ComplianceTrainingError(PitstopError):
    """Training settings that cannot work."""


@dataclass(frozen=True)
class NoteSets:
    """Labelled notes (columns `text`, `non_compliant`) to train on, validate on and judge by.

    `extra` holds evaluation-only sets by name. `params` says how the notes were drawn; it
    is logged with the run.
    """

    train: pd.DataFrame
    val: pd.DataFrame
    holdout: pd.DataFrame
    params: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, pd.DataFrame] = field(default_factory=dict)
    source: str = "the simulator"


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
    chosen: str = ""
    candidates: pd.DataFrame = field(default_factory=pd.DataFrame)


@dataclass
class ComplianceFit:
    """Every fitted candidate, its validation metrics and the one chosen."""

    classifiers: dict[str, Any]
    val_metrics: dict[str, dict[str, float]]
    chosen: str

    @property
    def classifier(self) -> Any:
        """The chosen candidate (a `models.compliance.kinds.TextClassifier`)."""
        return self.classifiers[self.chosen]


def choose_candidate(val_metrics: dict[str, dict[str, float]]) -> str:
    """The candidate with the lowest validation log loss; then higher validation accuracy,
    then the simpler one (`CANDIDATES` order) breaks ties."""
    if not val_metrics:
        raise ComplianceTrainingError("No candidate was trained.")
    order = {name: i for i, name in enumerate(CANDIDATES)}
    return min(
        val_metrics,
        key=lambda n: (
            val_metrics[n]["loss"],
            -val_metrics[n]["accuracy"],
            order.get(n, len(order)),
        ),
    )


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
    candidates: Sequence[str] = tuple(CANDIDATES),
) -> ComplianceTrainResult:
    """Train every candidate, log them, register the best on validation and (if better than
    the champion on the holdout, or forced) promote it.

    `seed` initialises the network. `threads` (default: up to 2) sets torch's threads for
    the run only; `progress` shows a rich bar per network epoch.
    """
    import torch

    if epochs < 1 or min(len(notes.train), len(notes.val), len(notes.holdout)) < 1:
        raise ComplianceTrainingError("epochs and every data set size must be at least 1.")
    unknown = [c for c in candidates if c not in CANDIDATES]
    if unknown or not candidates:
        raise ComplianceTrainingError(
            f"Unknown candidate {unknown[0] if unknown else '(none)'}; "
            f"choose from {', '.join(CANDIDATES)}."
        )
    started = time.perf_counter()
    settings = {
        "epochs": epochs,
        "seed": seed,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
    }
    job = _ClassifierJob(cfg, notes, settings, progress, tuple(candidates))
    previous_threads = torch.get_num_threads()
    # Training is the one place where more than one thread pays; the box is shared.
    torch.set_num_threads(threads or min(2, os.cpu_count() or 1))
    try:
        outcome = run_training(cfg, job.plan(), force=force, register=register, started=started)
    finally:
        torch.set_num_threads(previous_threads)
    fit: ComplianceFit = outcome.fitted
    log.info("Chose %s; held-out accuracy %.4f", fit.chosen, outcome.metrics["eval_accuracy"])
    network = fit.classifiers.get("network")
    return ComplianceTrainResult(
        run_id=outcome.run_id,
        model_name=outcome.model_name,
        version=outcome.version,
        promoted=outcome.promoted,
        metrics=outcome.metrics,
        champion_version=outcome.champion_version,
        champion_metrics=outcome.champion_metrics,
        seconds=outcome.seconds,
        history=pd.DataFrame([asdict(s) for s in network.history]) if network else pd.DataFrame(),
        chosen=fit.chosen,
        candidates=candidate_table(outcome.metrics, fit),
    )


def candidate_table(metrics: dict[str, float], fit: ComplianceFit) -> pd.DataFrame:
    """One row per candidate: validation, holdout and extra-set figures (its `<name>.*`
    metrics), fit time, and whether it was chosen."""
    rows = []
    for name in fit.classifiers:
        row: dict[str, Any] = {"candidate": name, "chosen": name == fit.chosen}
        for key, value in metrics.items():
            if key.startswith(f"{name}."):
                row[key[len(name) + 1 :]] = value
        rows.append(row)
    return pd.DataFrame(rows)


def metric_prefix(name: str) -> str:
    """A set's name as a metric prefix: lower case letters, digits and underscores."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "extra"


def score_sets(classifier: Any, sets: dict[str, pd.DataFrame]) -> dict[str, float]:
    """`<set>_<metric>` of one classifier on each labelled set."""
    from models.compliance.classifier import classification_metrics

    metrics = {}
    for name, frame in sets.items():
        probs = classifier.predict_proba(frame["text"].tolist())
        scored = classification_metrics(frame["non_compliant"], probs)
        metrics.update({f"{name}_{k}": v for k, v in scored.items()})
    return metrics


@dataclass(frozen=True)
class _ClassifierJob:
    """The compliance steps of the training template, on one set of notes."""

    cfg: PitstopConfig
    notes: NoteSets
    settings: dict[str, Any]  # epochs, seed, batch_size, learning_rate
    progress: bool
    candidates: tuple[str, ...]

    def plan(self) -> TrainingPlan[ComplianceFit]:
        notes = self.notes
        return TrainingPlan(
            name="compliance",
            kind="compliance",
            model_name=self.cfg.mlflow.models.compliance,
            alias=self.cfg.mlflow.alias,
            primary_metric=PRIMARY_METRIC,
            params={
                **self.settings,
                "candidates": ",".join(self.candidates),
                "data_source": notes.source,
                "train_notes": len(notes.train),
                "val_notes": len(notes.val),
                "holdout_notes": len(notes.holdout),
                **{f"{metric_prefix(k)}_notes": len(v) for k, v in notes.extra.items()},
                **notes.params,
            },
            fit=self.fit,
            evaluate=self.evaluate,
            log_model=self.log_model,
            score_champion=self.score_champion,
            lower_is_better=True,
            document=self.document,
        )

    def fit(self) -> ComplianceFit:
        from models.compliance.baseline import PLAIN, NgramSettings, fit_ngram_classifier
        from models.compliance.classifier import classification_metrics

        train, val = self.notes.train, self.notes.val
        classifiers: dict[str, Any] = {}
        for name in self.candidates:
            if name == "network":
                classifiers[name] = self._fit_network()
                continue
            classifiers[name] = fit_ngram_classifier(
                train["text"].tolist(),
                train["non_compliant"].tolist(),
                NgramSettings() if name == "tfidf_year" else PLAIN,
                name=name,
            )
        val_metrics = {
            name: classification_metrics(
                val["non_compliant"], clf.predict_proba(val["text"].tolist())
            )
            for name, clf in classifiers.items()
        }
        chosen = choose_candidate(val_metrics)
        mlflow.set_tags({"pitstop.compliance_candidate": chosen})
        log.info("Candidates on validation: %s; chose %s", _summary(val_metrics), chosen)
        return ComplianceFit(classifiers, val_metrics, chosen)

    def _fit_network(self) -> Any:
        from models.compliance.classifier import fit_classifier
        from models.compliance.kinds import NetworkClassifier

        train, val, s = self.notes.train, self.notes.val, self.settings
        with _epoch_progress(self.progress, s["epochs"], len(train), s["batch_size"]) as on_batch:
            fit = fit_classifier(
                train["text"].tolist(),
                train["non_compliant"].tolist(),
                val["text"].tolist(),
                val["non_compliant"].tolist(),
                **s,
                on_batch=on_batch,
                on_epoch=_log_epoch,
            )
        mlflow.log_params({"vocabulary": len(fit.tokenizer.vocab), **asdict(fit.model.spec)})
        _log_history(pd.DataFrame([asdict(s) for s in fit.history]))
        return NetworkClassifier(fit.model, fit.tokenizer, fit.history, fit.seconds)

    def evaluate(self, fit: ComplianceFit) -> dict[str, float]:
        """Every candidate as `<name>.<set>_<metric>`; the chosen one also unprefixed
        (`eval_*` on the holdout, `<set>_*` on the extra sets, `fit_seconds`)."""
        notes = self.notes
        extra = {metric_prefix(k): v for k, v in notes.extra.items()}
        metrics: dict[str, float] = {}
        for name, classifier in fit.classifiers.items():
            scored = score_sets(classifier, {"val": notes.val, "eval": notes.holdout, **extra})
            metrics.update({f"{name}.{k}": v for k, v in scored.items()})
            metrics[f"{name}.fit_seconds"] = classifier.seconds
        prefix = f"{fit.chosen}."
        for key, value in list(metrics.items()):
            # Validation figures of the chosen one stay prefixed: the network's per-epoch
            # curve owns `val_loss` and `val_accuracy`.
            if key.startswith(prefix) and not key.startswith(f"{prefix}val_"):
                metrics[key[len(prefix) :]] = value
        _log_candidates(candidate_table(metrics, fit))
        return metrics

    def log_model(self, fit: ComplianceFit, artifact: str) -> None:
        from models.compliance.pyfunc import log_compliance_model

        with tempfile.TemporaryDirectory() as workdir:
            log_compliance_model(fit.classifier, workdir, name=artifact)

    def score_champion(self, uri: str) -> dict[str, float]:
        """The champion re-scored on this run's held-out notes."""
        from models.compliance.classifier import classification_metrics
        from models.compliance.pyfunc import load_compliance_classifier

        holdout = self.notes.holdout
        champion = load_compliance_classifier(uri, torch_threads=None)
        probs = champion.predict_proba(holdout["text"].tolist())
        metrics = classification_metrics(holdout["non_compliant"], np.asarray(probs))
        return {f"eval_{k}": v for k, v in metrics.items()}

    def document(
        self, fit: ComplianceFit, version: str, run_id: str, metrics: dict[str, float]
    ) -> None:
        from models.reporting.compliance_card import log_compliance_card

        log_compliance_card(
            model_name=self.cfg.mlflow.models.compliance,
            version=version,
            run_id=run_id,
            fit=fit,
            notes=self.notes,
            metrics=metrics,
            candidates=CANDIDATES,
        )


def _summary(val_metrics: dict[str, dict[str, float]]) -> str:
    return ", ".join(
        f"{n} loss {m['loss']:.4f} acc {m['accuracy']:.4f}" for n, m in val_metrics.items()
    )


def _log_candidates(table: pd.DataFrame) -> None:
    with tempfile.TemporaryDirectory() as workdir:
        path = Path(workdir) / "candidates.csv"
        table.to_csv(path, index=False)
        mlflow.log_artifact(str(path))


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
