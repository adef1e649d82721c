"""The compliance text classifier: a small CNN over the notes' tokens
(`models.compliance.tokenizer`), its training, scoring, metrics and files.

The network embeds each distinct token of a batch once, runs two convolutions over the
sequence (a token sees four neighbours either side: enough for "manufactured in approx.
1993") and max-pools over time, so a violation anywhere in the note can fire.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.compliance.text import ComplianceModelError
from models.compliance.tokenizer import NUM, NUM_FEATURES, PAD, UNK, Encoded, Tokenizer

log = logging.getLogger(__name__)

THRESHOLD = 0.5
WEIGHTS_FILE = "weights.pt"
SPEC_FILE = "spec.json"
TOKENIZER_FILE = "tokenizer.json"


@dataclass(frozen=True)
class ComplianceSpec:
    """Network sizes; saved beside the weights so the model rebuilds itself."""

    vocab_size: int
    buckets: int = 8192
    dim: int = 48
    channels: int = 96
    dropout: float = 0.1

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ComplianceSpec:
        return cls(**json.loads(text))


class ComplianceNet(nn.Module):
    """Token embeddings (word + n-grams + digits) -> 2 convolutions -> max-pool -> logit."""

    def __init__(self, spec: ComplianceSpec) -> None:
        super().__init__()
        self.spec = spec
        self.words = nn.Embedding(spec.vocab_size, spec.dim, padding_idx=PAD)
        self.ngrams = nn.Embedding(spec.buckets + 1, spec.dim, padding_idx=0)
        self.numbers = nn.Sequential(
            nn.Linear(NUM_FEATURES, 64), nn.GELU(), nn.Linear(64, spec.dim)
        )
        self.norm = nn.LayerNorm(spec.dim)
        self.conv1 = nn.Conv1d(spec.dim, spec.channels, kernel_size=5, padding=2)
        self.conv2 = nn.Conv1d(spec.channels, spec.channels, kernel_size=3, padding=2, dilation=2)
        self.head = nn.Sequential(
            nn.Dropout(spec.dropout),
            nn.Linear(spec.channels, spec.channels // 2),
            nn.GELU(),
            nn.Linear(spec.channels // 2, 1),
        )

    def embed_types(
        self, words: torch.Tensor, ngrams: torch.Tensor, numbers: torch.Tensor
    ) -> torch.Tensor:
        """One vector per distinct token of the batch."""
        present = (ngrams != 0).sum(dim=1, keepdim=True).clamp(min=1)
        grams = self.ngrams(ngrams).sum(dim=1) / present
        is_number = numbers[:, :1]
        return self.norm(self.words(words) + grams + self.numbers(numbers) * is_number)

    def forward(
        self,
        index: torch.Tensor,
        words: torch.Tensor,
        ngrams: torch.Tensor,
        numbers: torch.Tensor,
    ) -> torch.Tensor:
        """Logits of non-compliance, one per note."""
        mask = (index != 0).unsqueeze(1).float()  # (notes, 1, positions)
        tokens = self.embed_types(words, ngrams, numbers)[index].transpose(1, 2)
        # Zero padding after every layer: a note scores the same whatever its batch.
        hidden = nn.functional.gelu(self.conv1(tokens * mask)) * mask
        hidden = nn.functional.gelu(self.conv2(hidden)) * mask
        pooled = hidden.masked_fill(mask == 0, float("-inf")).amax(dim=2)
        return self.head(pooled).squeeze(1)


@dataclass
class EpochStats:
    """One epoch of training: losses, accuracies and the learning rate at its end."""

    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    lr: float
    seconds: float


@dataclass
class FitResult:
    """A trained classifier, its tokenizer and how training went."""

    model: ComplianceNet
    tokenizer: Tokenizer
    history: list[EpochStats]
    seconds: float


def fit_classifier(
    train_texts: Sequence[str],
    train_labels: Sequence[bool],
    val_texts: Sequence[str],
    val_labels: Sequence[bool],
    *,
    epochs: int = 6,
    batch_size: int = 128,
    learning_rate: float = 3e-3,
    word_dropout: float = 0.15,
    seed: int = 0,
    on_batch: Callable[[int, int], None] | None = None,
    on_epoch: Callable[[EpochStats], None] | None = None,
) -> FitResult:
    """Train a classifier from scratch (tokenizer included); returns the best epoch's weights.

    `word_dropout` hides this share of vocabulary words each step, leaving only their
    n-grams, so the network learns to read spellings it has not seen. `on_batch(epoch, step)`
    and `on_epoch(stats)` report progress.
    """
    if epochs < 1 or batch_size < 1:
        raise ComplianceModelError("epochs and batch_size must be at least 1.")
    if len(train_texts) != len(train_labels) or len(val_texts) != len(val_labels):
        raise ComplianceModelError("Every note needs exactly one label.")
    if not len(train_texts) or not len(val_texts):
        raise ComplianceModelError("Training and validation notes must not be empty.")
    started = time.perf_counter()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    tokenizer = Tokenizer.fit(train_texts)
    model = ComplianceNet(ComplianceSpec(vocab_size=len(tokenizer.vocab)))
    train, val = tokenizer.encode(train_texts), tokenizer.encode(val_texts)
    y_train = np.asarray(train_labels, dtype=np.float32)
    y_val = np.asarray(val_labels, dtype=np.float32)
    steps = math.ceil(len(train) / batch_size)
    optimiser = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=1e-4)
    # One cycle: warm up, then anneal to ~0 so the last epoch settles the sharp year cutoff.
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=learning_rate, total_steps=epochs * steps, pct_start=0.15
    )
    history: list[EpochStats] = []
    best_state, best_loss = None, math.inf
    for epoch in range(1, epochs + 1):
        train_loss, train_accuracy = _train_epoch(
            model,
            optimiser,
            scheduler,
            train,
            y_train,
            batch_size,
            word_dropout,
            rng,
            lambda step, epoch=epoch: on_batch(epoch, step) if on_batch else None,
        )
        val_probs = predict_encoded(model, val)
        val_loss = log_loss(y_val, val_probs)
        stats = EpochStats(
            epoch=epoch,
            train_loss=train_loss,
            train_accuracy=train_accuracy,
            val_loss=val_loss,
            val_accuracy=float(((val_probs >= THRESHOLD) == (y_val > 0.5)).mean()),
            lr=float(scheduler.get_last_lr()[0]),
            seconds=time.perf_counter() - started,
        )
        history.append(stats)
        log.info(
            "epoch %d: train loss %.4f acc %.4f, val loss %.4f acc %.4f (%.1fs)",
            epoch,
            stats.train_loss,
            stats.train_accuracy,
            stats.val_loss,
            stats.val_accuracy,
            stats.seconds,
        )
        if on_epoch is not None:
            on_epoch(stats)
        if val_loss <= best_loss:
            best_loss = val_loss
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    model.eval()
    return FitResult(model, tokenizer, history, time.perf_counter() - started)


def _train_epoch(
    model: ComplianceNet,
    optimiser: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    train: Encoded,
    labels: np.ndarray,
    batch_size: int,
    word_dropout: float,
    rng: np.random.Generator,
    on_step: Callable[[int], None],
) -> tuple[float, float]:
    """One shuffled pass over the training notes; their mean loss and accuracy.

    `word_dropout` hides this share of vocabulary words each step, leaving only their
    n-grams, so the network learns to read spellings it has not seen.
    """
    loss_fn = nn.BCEWithLogitsLoss()
    model.train()
    total_loss, correct = 0.0, 0
    order = rng.permutation(len(train))
    for step, start in enumerate(range(0, len(order), batch_size), 1):
        rows = order[start : start + batch_size]
        batch = train.subset(rows)
        words = batch.type_words.copy()
        hidden = (rng.random(len(words)) < word_dropout) & (words > NUM)
        words[hidden] = UNK
        batch.type_words = words
        target = torch.from_numpy(labels[rows])
        logits = model(*batch.tensors())
        loss = loss_fn(logits, target)
        optimiser.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        scheduler.step()
        total_loss += loss.item() * len(rows)
        correct += int(((logits.detach() > 0).float() == target).sum())
        on_step(step)
    return total_loss / len(train), correct / len(train)


def predict_encoded(model: ComplianceNet, encoded: Encoded, batch_size: int = 1024) -> np.ndarray:
    """Probabilities of non-compliance for encoded notes, shortest notes batched together."""
    model.eval()
    out = np.empty(len(encoded), dtype=np.float64)
    order = np.argsort(encoded.lengths, kind="stable")
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            logits = model(*encoded.subset(rows).tensors())
            out[rows] = torch.sigmoid(logits.double()).numpy()
    return out


def predict_proba(
    model: ComplianceNet, tokenizer: Tokenizer, texts: Sequence[str], batch_size: int = 1024
) -> np.ndarray:
    """Probability that each note describes a non-compliant component."""
    if len(texts) == 0:
        return np.zeros(0, dtype=np.float64)
    return predict_encoded(model, tokenizer.encode(texts), batch_size)


def log_loss(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean binary cross-entropy (scikit-learn's), probabilities clipped to [1e-7, 1 - 1e-7]
    so one confidently wrong note costs at most ~16, not ~36."""
    from sklearn.metrics import log_loss as cross_entropy

    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-7, 1 - 1e-7)
    return float(cross_entropy(np.asarray(labels, dtype=np.float64), p, labels=[0.0, 1.0]))


def classification_metrics(labels: Sequence[bool], probs: np.ndarray) -> dict[str, float]:
    """Loss, accuracy, and precision/recall/F1 of each class (compliant, non_compliant).

    scikit-learn's metrics; a precision or recall with nothing to divide by is NaN, an F1
    without a single hit is 0.
    """
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    y = np.asarray(labels, dtype=bool)
    p = np.asarray(probs, dtype=np.float64)
    if len(y) != len(p) or not len(y):
        raise ComplianceModelError("Metrics need one probability per label, and some labels.")
    predicted = p >= THRESHOLD
    metrics = {"loss": log_loss(y, p), "accuracy": float(accuracy_score(y, predicted))}
    classes = (("non_compliant", True), ("compliant", False))
    precision, recall, f1, _ = precision_recall_fscore_support(
        y, predicted, labels=[positive for _, positive in classes], zero_division=np.nan
    )
    for i, (name, _) in enumerate(classes):
        metrics[f"precision_{name}"] = float(precision[i])
        metrics[f"recall_{name}"] = float(recall[i])
        metrics[f"f1_{name}"] = float(np.nan_to_num(f1[i], nan=0.0))
    return metrics


def save_classifier(model: ComplianceNet, tokenizer: Tokenizer, folder: str | Path) -> Path:
    """Write weights, spec and tokenizer into `folder` (created); returns the folder."""
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path / WEIGHTS_FILE)
    (path / SPEC_FILE).write_text(model.spec.to_json(), encoding="utf-8")
    (path / TOKENIZER_FILE).write_text(tokenizer.to_json(), encoding="utf-8")
    return path


def load_classifier(folder: str | Path) -> tuple[ComplianceNet, Tokenizer]:
    """Rebuild a classifier saved by `save_classifier`, in eval mode."""
    path = Path(folder)
    missing = [f for f in (SPEC_FILE, WEIGHTS_FILE, TOKENIZER_FILE) if not (path / f).is_file()]
    if missing:
        raise ComplianceModelError(f"{path} holds no saved classifier (missing {missing[0]}).")
    spec = ComplianceSpec.from_json((path / SPEC_FILE).read_text(encoding="utf-8"))
    model = ComplianceNet(spec)
    model.load_state_dict(torch.load(path / WEIGHTS_FILE, map_location="cpu", weights_only=True))
    model.eval()
    tokenizer = Tokenizer.from_json((path / TOKENIZER_FILE).read_text(encoding="utf-8"))
    return model, tokenizer
