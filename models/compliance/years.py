"""The manufacture year a note states, read the way technicians write it.

A text model of character n-grams learns "1993" only for the years it has seen, while the
regulation compares the year with a cutoff. So the year is read explicitly here and handed
to the text model as numbers it can compare (`year_features`): "mfd 1993", "'94",
"MY94", "yr 97", "DOM 03/1992", "1993-built", "early nineties", "late 80s".

Notes hold other numbers too: mileage, part, job and invoice numbers, dates of inspection
and service, torque and voltages. A year counts when the words next to it say it is the
manufacture year ("mfd", "built", "made in", "circa", ...), or when nothing says it is
something else ("steel pump 2004 good"); a year after "inspected", "serviced", "rebuilt",
"ref", "part no", "#" or glued to a code ("WO-1993", "1994-22") never counts. Pure: no
model, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from models.compliance.spelling import within_one_edit

FIRST_YEAR, LAST_YEAR = 1900, 2039
PIVOT = 30  # two-digit years: 00-29 are 20xx, 30-99 are 19xx
# The year features: one "before t" flag per threshold, so a linear model can learn any
# cutoff in this range from labelled notes, plus a flag for notes that state no year.
THRESHOLDS = tuple(range(1950, 2031))
N_FEATURES = len(THRESHOLDS) + 2

_WINDOW = 3  # words before a year that may say what it is

# Words (or their beginnings) that say the next number is the manufacture year; misspelled
# forms keep their first letters ("manufacured", "manuf.", "mnf") or are one edit away
# from a longer cue word ("manefactured", "buelt").
_MADE_PREFIXES = (
    "manu", "manf", "mnf", "mfd", "mfg", "mfr", "fabr", "buil", "bult", "prod", "vint",
    "dated", "dating", "circa", "approx", "aprox", "year",
)  # fmt: skip
_MADE_WORDS = frozenset(
    {
        "made", "mde", "maed", "mad", "bilt", "dom", "my", "yr", "yrs", "y", "ca", "c", "from",
        "around", "about", "abt", "orig", "original", "oem",
    }
)  # fmt: skip
_MADE_LONG = ("manufactured", "manufacture", "production", "produced", "built", "build")
# Words that say the next number is something else.
_OTHER_PREFIXES = (
    "insp", "svc", "check", "chk", "replac", "repl", "install", "inst", "fitt", "rebuil",
    "rebuild", "reman", "overh", "refurb", "repair", "odo", "mileag", "invoic", "ticket",
    "order", "warrant", "recall", "visit", "updat", "test", "seen", "job", "serial", "batch",
    "phone", "tel", "purch", "bought", "sold", "regist",
)  # fmt: skip
_OTHER_WORDS = frozenset(
    {
        "inv", "ref", "part", "pn", "p", "wo", "no", "nr", "num", "number", "code", "last",
        "next", "since", "due", "until", "vin", "reg", "sn", "lot", "acct", "ro", "po", "id",
        "tag", "rev", "service", "serviced", "servicing", "svcd", "mileage", "miles",
    }
)  # fmt: skip
_OTHER_LONG = (
    "inspected", "inspection", "serviced", "replaced", "installed", "rebuilt", "odometer",
    "mileage", "invoice", "warranty", "refurbished", "overhauled", "repaired", "checked",
)  # fmt: skip
# A unit after a number: it is a measurement, not a year.
_UNITS = frozenset(
    {
        "km", "kms", "mi", "mile", "miles", "k", "nm", "n", "v", "volt", "volts", "a", "amp",
        "amps", "psi", "bar", "mm", "cm", "kg", "lb", "lbs", "h", "hr", "hrs", "hour", "hours",
        "rpm", "c", "f", "kw", "hp", "l", "ml", "x",
    }
)  # fmt: skip
_MADE_AFTER = ("build", "built", "manu", "mfd", "made", "vint", "model", "prod")

_DECADE_WORDS = {
    "twenties": 1920, "thirties": 1930, "forties": 1940, "fifties": 1950, "sixties": 1960,
    "seventies": 1970, "eighties": 1980, "nineties": 1990,
}  # fmt: skip
_PART_OF_DECADE = {"early": 2, "mid": 5, "late": 8}
_BARE_DECADE = re.compile(r"\d0s")
_WORD_AFTER = re.compile(r"[^\W\d_]+")

_SCAN = re.compile(
    r"""
    (?P<decade>(?:\b(?P<part>early|mid|late)[\s-]*)?(?:the\s+)?
        (?:(?<!\d)(?P<dnum>(?:19|20)?[0-9]0|['’‘`´][0-9]0)'?s\b
        |(?P<dword>twenties|thirties|forties|fifties|sixties|seventies|eighties|nineties)\b))
    |(?P<iso>(?P<iy>(?:19|20)\d{2})-[01]?\d(?:-[0-3]?\d)?(?![\d-]))
    |(?P<dmy>(?<![\d.])(?:[0-3]?\d[./-])?[01]?\d[./-](?P<dy>(?:19|20)\d{2})(?![\d]))
    |(?P<apos>['’‘`´](?P<ay>\d{2})(?![\d]))
    |(?P<num>\d+(?:[.,]\d+)*)
    |(?P<word>[^\W\d_]+)
    |(?P<stop>[.,;!?|()\[\]\n])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class YearReading:
    """The manufacture year a note states, and whether a word said so (`cued`)."""

    year: int
    cued: bool
    text: str  # the characters it was read from


@dataclass(frozen=True)
class _Token:
    kind: str  # decade, date, apos, num, word, stop
    text: str
    start: int
    end: int
    year: int | None = None


def _two_digit_year(digits: str) -> int:
    value = int(digits)
    return 2000 + value if value < PIVOT else 1900 + value


def _tokens(text: str) -> list[_Token]:
    tokens = []
    for match in _SCAN.finditer(text.lower()):
        kind = match.lastgroup or ""
        start, end = match.span()
        year = None
        if match.group("decade"):
            kind, year = "decade", _decade_year(match)
        elif match.group("iso"):
            kind, year = "date", int(match.group("iy"))
        elif match.group("dmy"):
            kind, year = "date", int(match.group("dy"))
        elif match.group("apos"):
            kind, year = "apos", _two_digit_year(match.group("ay"))
        tokens.append(_Token(kind, match.group(0), start, end, year))
    return tokens


def _decade_year(match: re.Match[str]) -> int:
    if match.group("dword"):
        decade = _DECADE_WORDS[match.group("dword")]
    else:
        digits = match.group("dnum").lstrip("'’‘`´")
        decade = int(digits) if len(digits) == 4 else _two_digit_year(digits)
    return decade + _PART_OF_DECADE.get(match.group("part") or "", 5)


@lru_cache(maxsize=16_384)
def _is_made(word: str) -> bool:
    if word in _MADE_WORDS or word.startswith(_MADE_PREFIXES):
        return True
    return len(word) >= 5 and any(within_one_edit(word, cue) for cue in _MADE_LONG)


@lru_cache(maxsize=16_384)
def _is_other(word: str) -> bool:
    if word in _OTHER_WORDS or word.startswith(_OTHER_PREFIXES):
        return True
    return len(word) >= 6 and any(within_one_edit(word, cue) for cue in _OTHER_LONG)


def _context_before(tokens: Sequence[_Token], index: int) -> str | None:
    """'made' or 'other' from the nearest telling word before tokens[index], else None.

    Looks back at most `_WINDOW` words, not past another number (a word before it is about
    that one) nor the end of a clause (a comma, a full stop, ...); the dot of an
    abbreviation ("mfd.", "c.", "part no.") does not end one.
    """
    seen = 0
    for back in range(index - 1, -1, -1):
        token = tokens[back]
        if seen == _WINDOW:
            return None
        if token.kind == "stop":
            previous = tokens[back - 1] if back else None
            abbreviation = (
                token.text == "."
                and previous is not None
                and previous.kind == "word"
                and (_is_made(previous.text) or _is_other(previous.text))
            )
            if abbreviation:
                continue
            return None
        if token.kind != "word":
            return None
        if _is_other(token.text):
            return "other"
        if _is_made(token.text):
            return "made"
        seen += 1
    return None


def _glued_to_code(text: str, token: _Token, before: _Token | None) -> bool:
    """A number written as part of a code: '#1991', 'WO-1993', 'A1993', '1994-22', '1993B'.

    'MY1994' and '1993-built' are years: the letters glued to them say so.
    """
    lower = text.lower()
    prev_char = lower[token.start - 1] if token.start > 0 else " "
    next_char = lower[token.end] if token.end < len(lower) else " "
    if prev_char == "#" or next_char.isalnum():
        return True
    if next_char == "-":
        glued = _WORD_AFTER.match(lower, token.end + 1)
        return glued is None or not _is_made(glued.group(0))
    if prev_char.isalpha() or prev_char == "-":
        return before is None or before.kind != "word" or not _is_made(before.text)
    return False


def _follows(text: str, tokens: Sequence[_Token], index: int) -> str | None:
    """'made' for '1993 build', 'other' for '1994 km' (a unit right after, no comma)."""
    if index + 1 >= len(tokens) or tokens[index + 1].kind != "word":
        return None
    token, word = tokens[index], tokens[index + 1]
    if word.text in _UNITS and not text[token.end : word.start].strip():
        return "other"
    if word.text.startswith(_MADE_AFTER):
        return "made"
    return None


def read_manufacture_year(text: str) -> YearReading | None:
    """The manufacture year `text` states, or None when it states none.

    Of several candidates the first one a word marks as the manufacture year wins, else the
    first one nothing marks as something else.
    """
    tokens = _tokens(text)
    best: YearReading | None = None
    for index, token in enumerate(tokens):
        year = _candidate_year(tokens, index)
        if year is None:
            continue
        before = _context_before(tokens, index)
        after = _follows(text, tokens, index)
        previous = tokens[index - 1] if index else None
        if before == "other" or after == "other":
            continue
        if token.kind == "num" and _glued_to_code(text, token, previous):
            continue
        cued = before == "made" or after == "made"
        bare = token.kind == "num" and len(token.text) == 2 or _BARE_DECADE.fullmatch(token.text)
        if bare and not cued:
            # "steel 94 good", "idle 30s": bare two digits need a word saying "year".
            continue
        reading = YearReading(year, cued, token.text)
        if cued:
            return reading
        if best is None:
            best = reading
    return best


def _candidate_year(tokens: Sequence[_Token], index: int) -> int | None:
    token = tokens[index]
    if token.year is not None:
        return token.year
    if token.kind != "num" or not token.text.isdigit():
        return None
    if len(token.text) == 4 and FIRST_YEAR <= int(token.text) <= LAST_YEAR:
        return int(token.text)
    if len(token.text) == 2:
        return _two_digit_year(token.text)
    return None


def year_features(texts: Iterable[str]) -> np.ndarray:
    """(notes, N_FEATURES) float32: "year before t" for each threshold t, then "a word said it
    is the manufacture year", then "no year stated"."""
    texts = list(texts)
    out = np.zeros((len(texts), N_FEATURES), dtype=np.float32)
    thresholds = np.asarray(THRESHOLDS)
    for row, text in enumerate(texts):
        reading = read_manufacture_year(text)
        if reading is None:
            out[row, -1] = 1.0
            continue
        out[row, : len(THRESHOLDS)] = reading.year < thresholds
        out[row, -2] = float(reading.cued)
    return out
