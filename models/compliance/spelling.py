"""Misspellings read as the word meant: an unknown word one edit away from a known one
("fiar" -> "fair", "cricked" -> "cracked", "ironn" -> "iron") is read as that word.

Character n-grams already bring a misspelling close to its word when the word is long
("manufacured"); a short word with two letters swapped shares almost none of them, yet it
is one edit away. Known words are the ones the training notes use (`SpellingCorrector.fit`),
so the corrector learns a workshop's vocabulary and never rewrites a word it knows.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from functools import lru_cache

_WORD = re.compile(r"[^\W\d_]+")


@lru_cache(maxsize=65_536)
def within_one_edit(a: str, b: str) -> bool:
    """Whether `a` becomes `b` by at most one edit: a letter dropped, added, changed, or two
    neighbours swapped (optimal string alignment distance <= 1)."""
    if a == b:
        return True
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
        if len(diff) == 1:
            return True
        i = diff[0]
        return len(diff) == 2 and diff[1] == i + 1 and a[i] == b[i + 1] and a[i + 1] == b[i]
    short, long = (a, b) if len(a) < len(b) else (b, a)
    i = next((k for k in range(len(short)) if short[k] != long[k]), len(short))
    return short[i:] == long[i + 1 :]


def _deletes(word: str) -> set[str]:
    return {word[:i] + word[i + 1 :] for i in range(len(word))} | {word}


class SpellingCorrector:
    """Reads unknown words of `min_length` letters or more as the most frequent known word
    one edit away, if there is one (a SymSpell-style index of single deletions)."""

    def __init__(self, counts: dict[str, int], min_length: int = 4) -> None:
        self.counts, self.min_length = dict(counts), min_length
        self._index: dict[str, list[str]] = defaultdict(list)
        for word in sorted(self.counts):
            for key in _deletes(word):
                self._index[key].append(word)
        self._cache: dict[str, str] = {}

    @classmethod
    def fit(
        cls, texts: Iterable[str], min_count: int = 3, min_length: int = 4
    ) -> SpellingCorrector:
        """Known words: those the texts (lower-cased) use at least `min_count` times."""
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(_WORD.findall(text.lower()))
        return cls({w: n for w, n in counts.items() if n >= min_count}, min_length)

    def correct(self, word: str) -> str:
        """The known word meant by `word` (lower case), or `word` itself."""
        if word in self.counts or len(word) < self.min_length:
            return word
        found = self._cache.get(word)
        if found is None:
            candidates = {w for key in _deletes(word) for w in self._index.get(key, ())}
            close = [w for w in candidates if within_one_edit(word, w)]
            found = max(close, key=lambda w: (self.counts[w], w)) if close else word
            if len(self._cache) < 200_000:
                self._cache[word] = found
        return found

    def correct_text(self, text: str) -> str:
        """`text` lower-cased, every unknown word read as the known word it is one edit from."""
        return _WORD.sub(lambda m: self.correct(m.group(0)), text.lower())
