"""Words a note negates: "no plastic parts", "not cast iron", "non-iron", "plastic-free".

A bag of n-grams counts "plastic" in "no plastic housing" as it counts it in "plastic
housing". As in NegEx and sentiment analysis, a negation's scope is the few words after
"no", "not", "non" or "without" (or the word before "free"), ended early by punctuation, a
number or a conjunction; the text model then sees those words apart (`mark_negated`) or not
at all (`drop_negated`). Pure.
"""

from __future__ import annotations

import re

NEGATORS = frozenset({"no", "not", "non", "without", "nil", "never"})
SCOPE = 2  # words after a negator
_ENDS_SCOPE = frozenset({"and", "but", "with", "w", "though", "although", "except"})
_WORD = re.compile(r"[^\W\d_]+")
_BREAK = re.compile(r"[,.;:|()!?\[\]\n\d]|\s-\s|\s-$|^-\s")


def negated_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of every negated word of `text`, in order."""
    words = list(_WORD.finditer(text))
    lower = [m.group(0).lower() for m in words]
    negated: set[int] = set()
    for i, word in enumerate(lower):
        if word in NEGATORS:
            for j in range(i + 1, min(i + 1 + SCOPE, len(words))):
                if _BREAK.search(text[words[j - 1].end() : words[j].start()]):
                    break
                if lower[j] in _ENDS_SCOPE or lower[j] in NEGATORS:
                    break
                negated.add(j)
        elif word == "free" and i > 0:
            gap = text[words[i - 1].end() : words[i].start()]
            if gap in ("-", " ") and lower[i - 1] not in NEGATORS:
                negated.add(i - 1)
    return [words[k].span() for k in sorted(negated)]


def _rewrite(text: str, replace: str) -> str:
    pieces, last = [], 0
    for start, end in negated_spans(text):
        word = text[start:end]
        pieces.append(text[last:start] + replace.format(word=word))
        last = end
    return "".join(pieces) + text[last:]


def mark_negated(text: str) -> str:
    """Negated words written `no_<word>`: "no plastic parts" -> "no no_plastic no_parts"."""
    return _rewrite(text, "no_{word}")


def drop_negated(text: str) -> str:
    """Negated words left out: "no plastic parts, steel" -> "no  , steel"."""
    return _rewrite(text, "")
