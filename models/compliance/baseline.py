"""The strong simple baseline: character and word n-gram TF-IDF + logistic regression
(scikit-learn), and the same with the manufacture year read explicitly (`years`) and
misspellings read as the word meant (`spelling`).

Character n-grams within words make a long misspelling ("plastik", "conditon") share most
of its features with the right spelling; word unigrams and bigrams see a few words of
context. The enhanced pipeline reads misspellings as the known word meant, keeps negated
words ("no plastic parts", `negation`) out of the character n-grams and marks them for the
word n-grams, and masks digits ("mfd 1993" -> "mfd 0000"), so the text model learns what a
number *is* from the words around it while the year features say how old the component
is: one "before t" flag per threshold t, from which logistic regression learns the cutoff.

Saved with skops (safe loading: only the types listed in `TRUSTED_TYPES` are rebuilt).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline

from models.compliance.negation import drop_negated, mark_negated
from models.compliance.spelling import SpellingCorrector
from models.compliance.text import ComplianceModelError
from models.compliance.years import N_FEATURES, THRESHOLDS, year_features

PIPELINE_FILE = "pipeline.skops"
KIND_FILE = "kind.json"
# What the saved pipeline may contain beyond scikit-learn's own types.
TRUSTED_TYPES = (
    "models.compliance.baseline.SpellingNormaliser",
    "models.compliance.baseline.YearFeatures",
    "models.compliance.baseline.char_view",
    "models.compliance.baseline.normalise_text",
    "models.compliance.baseline.word_view",
)
_DIGIT = re.compile(r"\d")


def normalise_text(text: str) -> str:
    """Lower case with every digit masked as 0: numbers keep their shape, not their value."""
    return _DIGIT.sub("0", text.lower())


def char_view(text: str) -> str:
    """What the character n-grams read: `normalise_text` without the negated words ("no
    plastic parts" must not count as plastic)."""
    return normalise_text(drop_negated(text))


def word_view(text: str) -> str:
    """What the word n-grams read: `normalise_text` with negated words marked (`no_plastic`)."""
    return normalise_text(mark_negated(text))


class SpellingNormaliser(TransformerMixin, BaseEstimator):
    """Texts lower-cased with each unknown word read as the known word one edit away
    (`spelling.SpellingCorrector`); the known words are learned from the training notes."""

    def __init__(self, min_count: int = 3, min_length: int = 5) -> None:
        self.min_count = min_count
        self.min_length = min_length

    def fit(self, texts: Sequence[str], y: Any = None) -> SpellingNormaliser:
        """Learn the known words and how often each is used."""
        corrector = SpellingCorrector.fit(texts, self.min_count, self.min_length)
        self.vocabulary_ = corrector.counts
        return self

    def transform(self, texts: Sequence[str]) -> list[str]:
        """The corrected texts."""
        corrector = self._corrector()
        return [corrector.correct_text(text) for text in texts]

    def _corrector(self) -> SpellingCorrector:
        # Built on first use and never saved: it is an index of `vocabulary_`.
        corrector = self.__dict__.get("_built")
        if corrector is None:
            corrector = SpellingCorrector(self.vocabulary_, self.min_length)
            self.__dict__["_built"] = corrector
        return corrector

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_built", None)
        return state


class YearFeatures(TransformerMixin, BaseEstimator):
    """The manufacture-year features of each note (`years.year_features`), times `scale`."""

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale

    def fit(self, texts: Sequence[str], y: Any = None) -> YearFeatures:
        """Nothing to learn: the features are read, not fitted."""
        return self

    def transform(self, texts: Sequence[str]) -> sparse.csr_matrix:
        """(notes, N_FEATURES) sparse matrix."""
        return sparse.csr_matrix(year_features(texts) * np.float32(self.scale))

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """`year<t` per threshold, then `year_cued` and `no_year`."""
        names = [f"year<{t}" for t in THRESHOLDS] + ["year_cued", "no_year"]
        assert len(names) == N_FEATURES
        return np.asarray(names, dtype=object)


@dataclass(frozen=True)
class NgramSettings:
    """Sizes of the baseline. `year_scale` 0 leaves the year features out (and the digits
    in); `spelling` reads misspellings as the known word meant."""

    char_ngrams: tuple[int, int] = (2, 5)
    word_ngrams: tuple[int, int] = (1, 2)
    min_df: int = 2
    c: float = 10.0  # inverse regularisation strength of the logistic regression
    year_scale: float = 1.0
    spelling: bool = True


PLAIN = NgramSettings(year_scale=0.0, spelling=False)  # the textbook baseline


def build_pipeline(settings: NgramSettings = NgramSettings()) -> Pipeline:
    """An unfitted pipeline: note texts -> (spelling) -> TF-IDF (+ year features) ->
    logistic regression."""
    # The textbook baseline reads the text as it is; the other masks digits and negations.
    enhanced = settings.year_scale > 0
    parts: list[tuple[str, Any]] = [
        (
            "chars",
            TfidfVectorizer(
                analyzer="char_wb",
                ngram_range=settings.char_ngrams,
                preprocessor=char_view if enhanced else None,
                min_df=settings.min_df,
                sublinear_tf=True,
                dtype=np.float32,
            ),
        ),
        (
            "words",
            TfidfVectorizer(
                analyzer="word",
                ngram_range=settings.word_ngrams,
                preprocessor=word_view if enhanced else None,
                token_pattern=r"(?u)\b\w+\b",
                min_df=settings.min_df,
                sublinear_tf=True,
                dtype=np.float32,
            ),
        ),
    ]
    if settings.year_scale > 0:
        parts.append(("year", YearFeatures(scale=settings.year_scale)))
    model = LogisticRegression(C=settings.c, max_iter=5_000, solver="liblinear")
    steps: list[tuple[str, Any]] = [("features", FeatureUnion(parts)), ("model", model)]
    if settings.spelling:
        steps.insert(0, ("spelling", SpellingNormaliser()))
    return Pipeline(steps)


@dataclass
class NgramClassifier:
    """A fitted baseline pipeline: note texts in, probability of non-compliance out."""

    pipeline: Pipeline
    name: str = "tfidf"
    seconds: float = 0.0

    kind = "ngram"

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Probability that each note describes a non-compliant component."""
        if len(texts) == 0:
            return np.zeros(0, dtype=np.float64)
        return self.pipeline.predict_proba(list(texts))[:, 1].astype(np.float64)

    def save(self, folder: str | Path) -> Path:
        """Write the pipeline (skops) and its kind into `folder` (created)."""
        import skops.io

        path = Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        skops.io.dump(self.pipeline, path / PIPELINE_FILE)
        (path / KIND_FILE).write_text(
            json.dumps({"kind": self.kind, "name": self.name}), encoding="utf-8"
        )
        return path


def fit_ngram_classifier(
    texts: Sequence[str],
    labels: Sequence[bool],
    settings: NgramSettings = NgramSettings(),
    name: str = "tfidf",
) -> NgramClassifier:
    """Fit the baseline on labelled notes (both classes needed)."""
    y = np.asarray(labels, dtype=bool)
    if len(texts) != len(y) or not len(y):
        raise ComplianceModelError("Every note needs exactly one label, and some notes.")
    if y.all() or not y.any():
        raise ComplianceModelError("Training notes must hold both compliant and non-compliant.")
    started = time.perf_counter()
    pipeline = build_pipeline(settings).fit(list(texts), y)
    return NgramClassifier(pipeline, name=name, seconds=time.perf_counter() - started)


def load_ngram_classifier(folder: str | Path) -> NgramClassifier:
    """Rebuild a baseline saved by `NgramClassifier.save`, trusting only known types."""
    import skops.io

    path = Path(folder) / PIPELINE_FILE
    if not path.is_file():
        raise ComplianceModelError(f"{path.parent} holds no saved baseline (missing {path.name}).")
    unknown = set(skops.io.get_untrusted_types(file=path)) - set(TRUSTED_TYPES)
    if unknown:
        raise ComplianceModelError(
            f"{path} holds types Pitstop does not load ({', '.join(sorted(unknown))})."
        )
    pipeline = skops.io.load(path, trusted=list(TRUSTED_TYPES))
    meta = json.loads((Path(folder) / KIND_FILE).read_text(encoding="utf-8"))
    return NgramClassifier(pipeline, name=meta.get("name", "tfidf"))
