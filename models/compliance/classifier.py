"""The compliance text classifier: a tokenizer built for workshop notes and a small CNN.

Each word is looked up in a vocabulary learned from the training notes *and* broken into
hashed character n-grams (fastText-style), so "cond." lands near "condition", casing does
not matter and an unseen spelling still means something. Numbers are not words: each one
becomes digit features (how many digits, and the last four digits by position), so the
network can learn that a manufacture year is before 1995 from the digits themselves.

The network embeds each distinct token of a batch once, runs two convolutions over the
sequence (a token sees four neighbours either side: enough for "manufactured in approx.
1993") and max-pools over time, so a violation anywhere in the note can fire.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
import unicodedata
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)

PAD, UNK, NUM = 0, 1, 2
SPECIAL_TOKENS = ("<pad>", "<unk>", "<num>")
NUM_FEATURES = 1 + 7 + 40 + 1  # is-number, digit count 1..7+, last 4 digits one-hot, log size
MAX_NOTE_TEXT_BYTES = 10_000
THRESHOLD = 0.5

WEIGHTS_FILE = "weights.pt"
SPEC_FILE = "spec.json"
TOKENIZER_FILE = "tokenizer.json"

# Numbers keep their grouping characters ("84,210") so they stay one token.
_TOKEN = re.compile(r"\d+(?:[.,]\d+)*|[^\W\d_]+")
_CACHE_LIMIT = 200_000


class ComplianceModelError(ValueError):
    """Input or settings the compliance classifier cannot work with."""


def note_text_problem(text: object) -> str | None:
    """Why `text` cannot be classified (empty, over 10 kB, not plain text), or None."""
    if not isinstance(text, str):
        return f"note text must be a string, got {type(text).__name__}"
    if not text.strip():
        return "note text is empty"
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > MAX_NOTE_TEXT_BYTES:
        return f"note text too long: {size} bytes > {MAX_NOTE_TEXT_BYTES}"
    for char in text:
        if char in "\t\n\r":
            continue
        # Control, surrogate, private-use or unassigned characters, or U+FFFD left by a
        # bad decode: binary data dressed as a string, not a technician's note.
        if char == "\ufffd" or unicodedata.category(char) in ("Cc", "Cs", "Co", "Cn"):
            return "note text is not plain text (control or invalid characters)"
    if not any(char.isalpha() for char in text):
        return "note text has no words"
    return None


@dataclass
class Encoded:
    """Token ids of a batch of notes, with each distinct token ("type") described once.

    `index` is (notes, positions) into the type table (0 = padding); type row i has a word
    id, up to `max_ngrams` hashed n-gram ids (0 = none) and the number features.
    """

    index: np.ndarray
    type_words: np.ndarray
    type_ngrams: np.ndarray
    type_numbers: np.ndarray

    def __len__(self) -> int:
        return len(self.index)

    @property
    def lengths(self) -> np.ndarray:
        """Tokens per note."""
        return (self.index != 0).sum(axis=1)

    def subset(self, rows: np.ndarray) -> Encoded:
        """The notes `rows`, with a type table holding only the types they use."""
        index = self.index[rows]
        width = max(1, int((index != 0).sum(axis=1).max(initial=0)))
        index = index[:, :width]
        used, inverse = np.unique(index, return_inverse=True)
        if used[0] != 0:  # keep padding as type 0 even in a batch without padding
            used = np.concatenate([[0], used])
            inverse = inverse + 1
        return Encoded(
            index=inverse.reshape(index.shape).astype(np.int64),
            type_words=self.type_words[used],
            type_ngrams=self.type_ngrams[used],
            type_numbers=self.type_numbers[used],
        )

    def tensors(self) -> tuple[torch.Tensor, ...]:
        """The arrays as torch tensors, in the order ComplianceNet.forward takes them."""
        return (
            torch.from_numpy(self.index),
            torch.from_numpy(self.type_words),
            torch.from_numpy(self.type_ngrams),
            torch.from_numpy(self.type_numbers),
        )


class Tokenizer:
    """Words -> vocabulary ids + hashed character n-grams; numbers -> digit features."""

    def __init__(
        self,
        vocab: Sequence[str],
        buckets: int = 8192,
        ngram_min: int = 3,
        ngram_max: int = 4,
        max_ngrams: int = 24,
        max_tokens: int = 256,
    ) -> None:
        if list(vocab[: len(SPECIAL_TOKENS)]) != list(SPECIAL_TOKENS):
            raise ComplianceModelError("A vocabulary must start with <pad>, <unk>, <num>.")
        self.vocab = list(vocab)
        self.ids = {word: i for i, word in enumerate(self.vocab)}
        self.buckets, self.max_ngrams, self.max_tokens = buckets, max_ngrams, max_tokens
        self.ngram_min, self.ngram_max = ngram_min, ngram_max
        self._cache: dict[str, tuple[int, np.ndarray, np.ndarray]] = {}

    @classmethod
    def fit(cls, texts: Iterable[str], min_count: int = 2, **options: int) -> Tokenizer:
        """Learn the vocabulary: words seen at least `min_count` times (numbers excluded)."""
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(t for t in tokenize(text) if not t[0].isdigit())
        words = sorted(w for w, n in counts.items() if n >= min_count)
        return cls([*SPECIAL_TOKENS, *words], **options)

    def to_json(self) -> str:
        """The tokenizer as JSON (saved beside the weights)."""
        return json.dumps(
            {
                "vocab": self.vocab,
                "buckets": self.buckets,
                "ngram_min": self.ngram_min,
                "ngram_max": self.ngram_max,
                "max_ngrams": self.max_ngrams,
                "max_tokens": self.max_tokens,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Tokenizer:
        """Rebuild a tokenizer saved with `to_json`."""
        data = json.loads(text)
        return cls(data.pop("vocab"), **data)

    def describe(self, token: str) -> tuple[int, np.ndarray, np.ndarray]:
        """(word id, n-gram ids, number features) of one token; cached, tokens repeat a lot."""
        cached = self._cache.get(token)
        if cached is not None:
            return cached
        numbers = np.zeros(NUM_FEATURES, dtype=np.float32)
        ngrams = np.zeros(self.max_ngrams, dtype=np.int64)
        if token[0].isdigit():
            word = NUM
            numbers[:] = number_features(token)
        else:
            word = self.ids.get(token, UNK)
            grams = char_ngrams(token, self.ngram_min, self.ngram_max)[: self.max_ngrams]
            for i, gram in enumerate(grams):
                ngrams[i] = 1 + zlib.crc32(gram.encode("utf-8")) % self.buckets
        described = (word, ngrams, numbers)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[token] = described
        return described

    def encode(self, texts: Sequence[str]) -> Encoded:
        """Encode notes (truncated to `max_tokens` tokens) into one padded batch."""
        types: dict[str, int] = {}
        rows = []
        for text in texts:
            tokens = tokenize(text)[: self.max_tokens]
            rows.append([types.setdefault(t, len(types) + 1) for t in tokens])
        width = max([1, *map(len, rows)])
        index = np.zeros((len(rows), width), dtype=np.int64)
        for i, row in enumerate(rows):
            index[i, : len(row)] = row
        words = np.zeros(len(types) + 1, dtype=np.int64)
        ngrams = np.zeros((len(types) + 1, self.max_ngrams), dtype=np.int64)
        numbers = np.zeros((len(types) + 1, NUM_FEATURES), dtype=np.float32)
        for token, i in types.items():
            words[i], ngrams[i], numbers[i] = self.describe(token)
        return Encoded(index, words, ngrams, numbers)


def tokenize(text: str) -> list[str]:
    """Lower-cased words and numbers; punctuation only separates ("mfd.1993" -> mfd, 1993)."""
    return _TOKEN.findall(text.lower())


def char_ngrams(word: str, low: int, high: int) -> list[str]:
    """Character n-grams of `<word>` (boundaries marked), shortest first, plus the word."""
    marked = f"<{word}>"
    grams = [marked[i : i + n] for n in range(low, high + 1) for i in range(len(marked) - n + 1)]
    return [marked, *grams]


def number_features(token: str) -> np.ndarray:
    """Digit features of a number token: flag, digit count, last four digits, log size."""
    digits = "".join(ch for ch in token if ch.isdigit())
    features = np.zeros(NUM_FEATURES, dtype=np.float32)
    features[0] = 1.0
    features[1 + min(len(digits), 7) - 1] = 1.0
    for position, digit in enumerate(digits[-4:].rjust(4, "0")):
        features[8 + position * 10 + int(digit)] = 1.0
    features[48] = math.log10(1 + int(digits[-12:])) / 6.0
    return features


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
    loss_fn = nn.BCEWithLogitsLoss()
    history: list[EpochStats] = []
    best_state, best_loss = None, math.inf
    for epoch in range(1, epochs + 1):
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
            target = torch.from_numpy(y_train[rows])
            logits = model(*batch.tensors())
            loss = loss_fn(logits, target)
            optimiser.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimiser.step()
            scheduler.step()
            total_loss += loss.item() * len(rows)
            correct += int(((logits.detach() > 0).float() == target).sum())
            if on_batch is not None:
                on_batch(epoch, step)
        val_probs = predict_encoded(model, val)
        val_loss = log_loss(y_val, val_probs)
        stats = EpochStats(
            epoch=epoch,
            train_loss=total_loss / len(train),
            train_accuracy=correct / len(train),
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
