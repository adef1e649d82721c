"""Misspellings read as the known word one edit away, and known words left alone."""

from __future__ import annotations

import pytest

from models.compliance.spelling import SpellingCorrector, within_one_edit

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("a", "b", "close"),
    [
        ("fiar", "fair", True),  # neighbours swapped
        ("ironn", "iron", True),  # a letter doubled
        ("cricked", "cracked", True),  # a letter changed
        ("plastc", "plastic", True),  # a letter dropped
        ("fair", "fair", True),
        ("fiar", "fur", False),  # two edits
        ("good", "gold", True),
        ("poor", "door", True),
        ("abc", "cba", False),
        ("steel", "st", False),
    ],
)
def test_within_one_edit(a: str, b: str, close: bool) -> None:
    assert within_one_edit(a, b) is close and within_one_edit(b, a) is close


def test_unknown_words_read_as_the_most_used_known_word() -> None:
    corrector = SpellingCorrector.fit(
        ["fair condition", "door hinge", "poor condition", "plastic clips"] * 3
        + ["four bolts"] * 5,
        min_count=3,
    )
    assert corrector.correct_text("Door hinge, FIAR condtion") == "door hinge, fair condition"
    assert corrector.correct("door") == "door"  # a known word is never rewritten
    assert corrector.correct("pour") == "four"  # poor and four are both one edit away
    assert SpellingCorrector(corrector.counts, min_length=5).correct("fiar") == "fiar"
    assert corrector.correct("fir") == "fir"  # too short to guess
    assert corrector.correct("zzzz") == "zzzz"
    assert SpellingCorrector.fit(["rare word"], min_count=3).counts == {}
