"""The compliance model's tokenizer: vocabulary words, hashed character n-grams, digit features.

Each word is looked up in a vocabulary learned from the training notes *and* broken into
hashed character n-grams (fastText-style), so "cond." lands near "condition", casing does
not matter and an unseen spelling still means something. Numbers are not words: each one
becomes digit features (how many digits, and the last four digits by position), so the
network can learn that a manufacture year is before 1995 from the digits themselves.
"""

from __future__ import annotations

import json
import math
import re
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from models.compliance.text import ComplianceModelError

PAD, UNK, NUM = 0, 1, 2
SPECIAL_TOKENS = ("<pad>", "<unk>", "<num>")
NUM_FEATURES = 1 + 7 + 40 + 1  # is-number, digit count 1..7+, last 4 digits one-hot, log size

# Numbers keep their grouping characters ("84,210") so they stay one token.
_TOKEN = re.compile(r"\d+(?:[.,]\d+)*|[^\W\d_]+")
_CACHE_LIMIT = 200_000


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
