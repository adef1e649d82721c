"""Negated words: their scope, and the two views the text model reads."""

from __future__ import annotations

import pytest

from models.compliance.negation import drop_negated, mark_negated

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "marked"),
    [
        ("no plastic parts, steel", "no no_plastic no_parts, steel"),
        ("not cast iron; hinge", "not no_cast no_iron; hinge"),
        ("plastic-free", "no_plastic-free"),
        ("cast iron free", "cast no_iron free"),
        ("non-iron", "non-no_iron"),
        ("no rust, plastic tray", "no no_rust, plastic tray"),  # a comma ends the scope
        ("steel - no issues - 2004", "steel - no no_issues - 2004"),
        ("without plastic and iron clips", "without no_plastic and iron clips"),
        ("no 1993 plastic", "no 1993 plastic"),  # a number ends it too
        ("NO NYLON PARTS - COND FAIR", "NO no_NYLON no_PARTS - COND FAIR"),
        ("plastic tray, good", "plastic tray, good"),
    ],
)
def test_negation_scope(text: str, marked: str) -> None:
    assert mark_negated(text) == marked


def test_dropped_words_leave_the_rest() -> None:
    assert drop_negated("steel pump, no plastic housing on this model") == (
        "steel pump, no   on this model"
    )
