"""One interface over the kinds of compliance model: each fitted one scores note texts and
saves itself into a folder; `load_text_classifier` tells the kinds apart by that folder.

Kinds: "network" (the CNN of `classifier`) and "ngram" (the TF-IDF + logistic regression
baseline of `baseline`). A folder without a `kind.json` is a network saved before there were
two kinds, so every registered version keeps loading.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from models.compliance.baseline import KIND_FILE, load_ngram_classifier
from models.compliance.text import ComplianceModelError


class TextClassifier(Protocol):
    """A fitted compliance model: note texts in, probability of non-compliance out."""

    kind: str
    name: str
    seconds: float

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Probability that each note describes a non-compliant component."""
        ...

    def save(self, folder: str | Path) -> Path:
        """Write everything needed to rebuild it into `folder`; returns the folder."""
        ...


@dataclass
class NetworkClassifier:
    """The CNN with its tokenizer and training history (`classifier.fit_classifier`)."""

    model: Any
    tokenizer: Any
    history: list[Any] = field(default_factory=list)
    seconds: float = 0.0
    name: str = "cnn"

    kind = "network"

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Probability that each note describes a non-compliant component."""
        from models.compliance.classifier import predict_proba

        return predict_proba(self.model, self.tokenizer, list(texts))

    def save(self, folder: str | Path) -> Path:
        """Weights, spec and tokenizer (`classifier.save_classifier`) and the kind."""
        from models.compliance.classifier import save_classifier

        path = save_classifier(self.model, self.tokenizer, folder)
        (path / KIND_FILE).write_text(
            json.dumps({"kind": self.kind, "name": self.name}), encoding="utf-8"
        )
        return path


def load_text_classifier(folder: str | Path) -> TextClassifier:
    """Rebuild whichever kind of classifier `folder` holds."""
    path = Path(folder)
    meta_file = path / KIND_FILE
    kind = "network"
    if meta_file.is_file():
        kind = json.loads(meta_file.read_text(encoding="utf-8")).get("kind", "")
    if kind == "ngram":
        return load_ngram_classifier(path)
    if kind == "network":
        from models.compliance.classifier import load_classifier

        model, tokenizer = load_classifier(path)
        return NetworkClassifier(model, tokenizer)
    raise ComplianceModelError(f"{path} holds a compliance model of unknown kind {kind!r}.")
