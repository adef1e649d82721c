"""Component-notes generator: contract messages, true labels, determinism, shape split."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re

import pytest

from core.validation import check_note
from simulator.notes import (
    BAD_CONDITIONS,
    BAD_MATERIALS,
    CUTOFF_YEAR,
    GOOD_CONDITIONS,
    GOOD_MATERIALS,
    HELDOUT_SHAPES,
    TRAIN_SHAPES,
    generate_notes,
    is_non_compliant,
    notes_dataset,
    shapes_of,
)

pytestmark = pytest.mark.unit

CARS = [f"C{i:05d}" for i in range(1, 41)]


def test_notes_are_contract_messages_in_time_order() -> None:
    notes = list(generate_notes(CARS, dt.date(2024, 1, 1), 120, seed=3, notes_per_car_per_year=6))
    assert 40 < len(notes) < 160  # ~40 cars x 6/year x 120 days
    for note in notes:
        message = {k: v for k, v in note.items() if k != "non_compliant"}
        checked = check_note(json.dumps(message))
        assert checked.ok, checked.reason
        assert note["car_id"] in CARS and isinstance(note["non_compliant"], bool)
        assert note["written_at"].endswith("Z")
    stamps = [n["written_at"] for n in notes]
    assert stamps == sorted(stamps)
    assert len({n["note_id"] for n in notes}) == len(notes)
    assert "2024-01-01" <= stamps[0] and stamps[-1] < "2024-04-30"


def test_same_seed_same_notes_other_seed_other_notes() -> None:
    first = list(generate_notes(CARS, "2024-01-01", 60, seed=5, notes_per_car_per_year=8))
    again = list(generate_notes(CARS, "2024-01-01", 60, seed=5, notes_per_car_per_year=8))
    other = list(generate_notes(CARS, "2024-01-01", 60, seed=6, notes_per_car_per_year=8))
    assert first == again
    assert [n["text"] for n in first] != [n["text"] for n in other]
    assert notes_dataset(50, 9).equals(notes_dataset(50, 9))


def test_generation_streams_lazily() -> None:
    many = generate_notes([f"C{i}" for i in range(100_000)], "2024-01-01", 10_000, seed=1)
    assert len(list(itertools.islice(many, 5))) == 5  # no year-sized list built up front


def test_regulation_boundaries() -> None:
    assert is_non_compliant(CUTOFF_YEAR - 1, "good", "steel")
    assert not is_non_compliant(CUTOFF_YEAR, "good", "steel")
    assert is_non_compliant(2010, "fair", "steel") and is_non_compliant(2010, "poor", "steel")
    assert is_non_compliant(2010, "good", "plastic") and is_non_compliant(2010, "good", "cast iron")
    assert not is_non_compliant(2010, None, None)  # unstated facts do not count against it


def test_labels_follow_the_stated_facts() -> None:
    frame = notes_dataset(3_000, seed=2, shapes="all")
    for row in frame.itertuples():
        expected = (
            row.year < CUTOFF_YEAR
            or row.condition in BAD_CONDITIONS
            or row.material in BAD_MATERIALS
        )
        assert row.non_compliant == expected
        assert str(row.year) in row.text
        if row.condition is not None:
            assert row.condition in GOOD_CONDITIONS + BAD_CONDITIONS
    assert 0.35 < frame["non_compliant"].mean() < 0.65
    # The cutoff is exercised on both sides.
    assert {1994, 1995} <= set(frame["year"])
    assert frame["condition"].isna().any() and frame["material"].isna().any()


def test_heldout_shapes_never_appear_in_training() -> None:
    assert not set(TRAIN_SHAPES) & set(HELDOUT_SHAPES)
    assert shapes_of("all") == TRAIN_SHAPES + HELDOUT_SHAPES
    heldout = notes_dataset(400, seed=4, shapes="heldout")
    assert set(heldout["shape"]) <= set(range(len(HELDOUT_SHAPES)))
    pipes = notes_dataset(2_000, seed=4, shapes="train")["text"].str.contains(r"\|")
    assert not pipes.any()  # the "Component: ... | Material: ..." form is held out
    assert heldout["text"].str.contains(r"\|").any()


def test_notes_are_written_many_ways() -> None:
    texts = notes_dataset(2_000, seed=8, shapes="all")["text"]
    assert texts.str.isupper().any() and texts.str.islower().any()
    assert texts.str.contains(r"\bmfd\b", case=False).any()
    assert texts.str.contains(r"\bcond\.", case=False).any()
    assert texts.str.contains(r"\bapprox", case=False).any()
    assert texts.str.contains(r"\d{1,3},\d{3}").any()  # mileage and other distractor numbers
    assert len({re.sub(r"\W", "", t.lower())[:12] for t in texts}) > 500


def test_every_material_and_condition_is_used() -> None:
    frame = notes_dataset(5_000, seed=1, shapes="all")
    assert set(frame["material"].dropna()) == set(GOOD_MATERIALS + BAD_MATERIALS)
    assert set(frame["condition"].dropna()) == set(GOOD_CONDITIONS + BAD_CONDITIONS)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="shapes"):
        notes_dataset(5, seed=1, shapes="test")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n must be"):
        notes_dataset(-1, seed=1)
    with pytest.raises(ValueError, match="must not be negative"):
        list(generate_notes(CARS, "2024-01-01", -1, seed=1))
    assert list(generate_notes([], "2024-01-01", 30, seed=1)) == []
