"""How people type notes in a hurry: misspellings, shorthand years, several materials in one
note, negations and unrelated numbers and chatter.

Misspellings are single edits of a word (a letter dropped, doubled, swapped with its
neighbour or a vowel changed) plus a few real-world ones for short words ("gud", "fiar").
Every (word, misspelling) pair belongs to one spelling group by its hash, so a test can use
misspellings that training never saw: `SPELLINGS` maps a split to its groups. All randomness
comes from the `random.Random` passed in: the same seed writes the same notes.
"""

from __future__ import annotations

import random
import re
import zlib
from typing import Literal

from simulator.note_words import (
    ASIDES,
    BAD_CONDITIONS,
    BAD_MATERIALS,
    BODY_WORDS,
    GOOD_CONDITIONS,
    GOOD_MATERIALS,
    NEGATABLE_MATERIALS,
    OTHER_FIXES,
    OTHER_PARTS,
    OTHER_WEAR,
    SUB_PARTS,
)

Spellings = Literal["train", "val", "heldout", "all"]
# Spelling group (hash of word and misspelling, mod 10) -> split; disjoint by construction.
SPELLINGS: dict[str, frozenset[int]] = {
    "train": frozenset(range(6)),
    "val": frozenset({6, 7}),
    "heldout": frozenset({8, 9}),
    "all": frozenset(range(10)),
}
_SHORT_MISSPELLINGS: dict[str, tuple[str, ...]] = {
    "good": ("gud", "goood", "godd", "goid"),
    "fair": ("fiar", "fairr", "faor", "fsir"),
    "poor": ("poore", "pooor", "poot", "piir"),
    "iron": ("irn", "iorn", "irom", "ironn"),
    "worn": ("wrn", "wornn", "eorn"),
    "steel": ("steal", "stel", "steeel", "stell"),
    "new": ("nwe", "neww"),
    "cond": ("cnd", "comd"),
    "built": ("bilt", "buit", "biult"),
    "made": ("mde", "maed"),
}
_VOWELS = "aeiou"
_WORD = re.compile(r"[A-Za-z]+")
# Words a misspelling must never turn into: they mean something else in a note.
_PROTECTED = frozenset(
    word
    for phrase in (*GOOD_MATERIALS, *BAD_MATERIALS, *GOOD_CONDITIONS, *BAD_CONDITIONS)
    for word in _WORD.findall(phrase.lower())
) | {"not", "no", "non", "free", "fail", "pool", "door", "fir", "far", "ion", "icon"}
_MONTHS = (
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
)  # fmt: skip
_DECADE_WORDS = {1960: "sixties", 1970: "seventies", 1980: "eighties", 1990: "nineties"}
NO_YEAR_PHRASES: tuple[str, ...] = (
    "no date stamp", "year unknown", "date stamp unreadable", "mfd ?", "yr n/a",
    "no year visible",
)  # fmt: skip
NO_YEAR_VALUES: tuple[str, ...] = ("n/a", "?", "unknown yr", "no date")
FIRST_YEAR, LAST_YEAR = 1960, 2024  # years of manufacture the simulator draws


def spelling_group(word: str, variant: str) -> int:
    """The spelling group (0-9) of one misspelling of `word`."""
    return zlib.crc32(f"{word}>{variant}".encode()) % 10


def typo_variants(word: str) -> list[str]:
    """Every misspelling of `word` this simulator writes, sorted (lower case)."""
    word = word.lower()
    found = set(_SHORT_MISSPELLINGS.get(word, ()))
    if len(word) >= 5:
        for i in range(1, len(word)):
            found.add(word[:i] + word[i + 1 :])  # dropped
            found.add(word[:i] + word[i] + word[i:])  # doubled
            if i + 1 < len(word):
                found.add(word[:i] + word[i + 1] + word[i] + word[i + 2 :])  # swapped
            if word[i] in _VOWELS:
                found.update(word[:i] + v + word[i + 1 :] for v in _VOWELS)  # vowel changed
    found.discard(word)
    return sorted(v for v in found if v not in _PROTECTED)


def misspell(text: str, rng: random.Random, spellings: Spellings, rate: float = 0.12) -> str:
    """`text` with some words (at most two) misspelled, using only the split's misspellings."""
    groups = SPELLINGS[spellings]
    pieces, last, done = [], 0, 0
    for match in _WORD.finditer(text):
        word = match.group(0)
        if done == 2 or rng.random() >= rate:
            continue
        options = [v for v in typo_variants(word) if spelling_group(word.lower(), v) in groups]
        if not options:
            continue
        variant = rng.choice(options)
        if word.isupper() and len(word) > 1:
            variant = variant.upper()
        elif word[0].isupper():
            variant = variant.capitalize()
        pieces.append(text[last : match.start()] + variant)
        last, done = match.end(), done + 1
    return "".join(pieces) + text[last:]


def year_form(year: int, rng: random.Random, cued: bool) -> str:
    """One way of writing `year`: '94, 06/1994, Jun 1994, early 90s, or 94 after a cue word.

    A decade is written only when the whole span it names is on one side of 1995, so the
    note still says whether the component is older than the cutoff.
    """
    yy = f"{year % 100:02d}"
    month = rng.randint(1, 12)
    forms = [f"'{yy}", f"’{yy}", f"{month:02d}/{year}", f"{year}-{month:02d}",
             f"{_MONTHS[month - 1]} {year}", f"{_MONTHS[month - 1]} '{yy}"]  # fmt: skip
    if cued:
        forms += [yy, yy]
    decade, within = year - year % 10, year % 10
    short = f"{decade % 100:02d}s"
    if within <= 3:
        forms += [f"early {short}", f"early {_DECADE_WORDS.get(decade, short)}"]
    elif within >= 7:
        forms += [f"late {short}", f"late {_DECADE_WORDS.get(decade, short)}"]
    if decade != 1990:
        forms += [f"the {short}", f"{decade}s", f"mid-{short}" if 4 <= within <= 6 else f"'{short}"]
        if cued:
            forms.append(short)  # "mfd 80s"; a bare "80s" could be seconds
    return rng.choice(forms)


def draw_material(rng: random.Random, violation_rate: float) -> str:
    """One material: a non-compliant one with probability `violation_rate`."""
    return rng.choice(BAD_MATERIALS if rng.random() < violation_rate else GOOD_MATERIALS)


def combined_materials(first: str, second: str, rng: random.Random) -> str:
    """Two materials of one component as a technician writes them."""
    sub, body = rng.choice(SUB_PARTS), rng.choice(BODY_WORDS)
    return rng.choice(
        (
            f"{first} {body} w/ {second} {sub}",
            f"{first} {body} with {second} {sub}",
            f"{first}/{second}",
            f"{first} + {second}",
            f"{first} and {second}",
            f"{first} {body}, {second} {sub}",
        )
    )


def negation(materials: tuple[str, ...], rng: random.Random) -> str | None:
    """A phrase saying what the component is not made of ("no plastic parts"), or None when
    every negatable material would contradict the note."""
    stated = " ".join(materials).lower()
    options = [m for m in NEGATABLE_MATERIALS if m not in stated and stated not in m]
    options = [m for m in options if not any(w in stated for w in m.split())]
    if not options:
        return None
    word = rng.choice(options)
    return rng.choice(
        (f"no {word} parts", f"not {word}", f"{word}-free", f"non-{word}", f"no {word} used")
    )


def code_number(rng: random.Random, low: int, high: int) -> int:
    """A reference number or mileage; a third of them look like years ("ref 1983"), so only
    the words around a number say whether it is the manufacture year."""
    if rng.random() < 0.35:
        return rng.randint(FIRST_YEAR - 60, LAST_YEAR)
    return rng.randint(low, high)


def distractor_values(rng: random.Random, year: int | None) -> dict[str, object]:
    """Values for the unrelated-phrase templates (`note_words.DISTRACTORS`, ...)."""
    km = code_number(rng, 2_000, 350_000)
    return {
        "km": f"{km:,}" if rng.random() < 0.4 else str(km),
        "mi": code_number(rng, 1_000, 180_000),
        "nm": rng.randint(20, 250),
        "bay": rng.randint(1, 12),
        "wo": code_number(rng, 10_000, 99_999),
        "ref": code_number(rng, 100, 99_999),
        # Service happens after manufacture, never before.
        "iy": rng.randint(max(year or 2005, 2005), LAST_YEAR),
        "mo": rng.choice((3, 6, 12, 18)),
        "initials": rng.choice(("JS", "A.K.", "mb", "R. Diaz", "T.O.")),
        "h": rng.choice(("0.5", "1", "1.5", "2", "3")),
        "pn": f"{rng.choice('ABKXZ')}{code_number(rng, 1000, 99999)}",
        "temp": rng.randint(-10, 35),
        "day": rng.randint(1, 28),
        "month": rng.randint(1, 12),
        "code": code_number(rng, 100, 99_999),
        "small": rng.randint(10, 999),
        "short": rng.randint(10, 299),
        "psi": rng.randint(26, 44),
        "volts": rng.choice(("12.1", "12.4", "12.6", "13.8", "14.2")),
        "speed": rng.choice((30, 50, 60, 70, 80, 90, 100, 120)),
        "other": rng.choice(OTHER_PARTS),
        "wear": rng.choice(OTHER_WEAR),
        "fix": rng.choice(OTHER_FIXES),
        "aside": rng.choice(ASIDES),
        "bad": rng.choice(("plastic", "cast iron", "nylon", "iron")),
    }
