"""Notes typed in a hurry: the variety is there, the label still follows the drawn facts, and
misspellings are split so held-out ones never reach training."""

from __future__ import annotations

import random
import re

import pandas as pd
import pytest

from models.compliance.years import read_manufacture_year
from simulator.note_style import (
    SPELLINGS,
    misspell,
    negation,
    spelling_group,
    typo_variants,
    year_form,
)
from simulator.notes import (
    BAD_CONDITIONS,
    BAD_MATERIALS,
    CUTOFF_YEAR,
    TRAIN_SHAPES,
    notes_dataset,
)

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def messy():
    return notes_dataset(4_000, seed=11, shapes="all", messy=1.0)


def test_labels_follow_the_drawn_facts_not_the_text(messy) -> None:
    for row in messy.itertuples():
        materials = [m for m in row.materials.split(";") if m]
        expected = (
            (not pd.isna(row.year) and row.year < CUTOFF_YEAR)
            or row.condition in BAD_CONDITIONS
            or any(m in BAD_MATERIALS for m in materials)
        )
        assert row.non_compliant == expected, row.text
        assert row.material == (
            next((m for m in materials if m in BAD_MATERIALS), materials[0] if materials else None)
        )
    assert messy["messy"].all()
    assert 0.35 < messy["non_compliant"].mean() < 0.7


def test_messy_notes_have_the_variety_of_real_ones(messy) -> None:
    texts = messy["text"]
    assert texts.str.contains(r"['’]\d\d\b").mean() > 0.05  # '94
    assert texts.str.contains(r"(?i)\b(?:early|late|the) (?:\d0s|[a-z]+ties)\b").any()
    assert texts.str.contains(r"\b\d\d/(?:19|20)\d\d\b").any()  # 06/1994
    assert (messy["materials"].str.count(";") == 1).mean() > 0.2  # two materials
    assert texts.str.contains(r"(?i)\b(?:w/|with) ").any()
    assert texts.str.contains(r"(?i)\b(?:no|not|non)[ -](?:plastic|iron|cast iron|nylon)").any()
    assert texts.str.contains(r"(?i)customer waiting|loaner car|coffee machine").any()
    assert texts.str.contains(r"(?i)\bPN \d+-\d+|\bjob \d+-\d+").any()
    assert texts.str.isupper().any() and texts.str.islower().any()
    assert 0.01 < messy["year"].isna().mean() < 0.1  # "no date stamp"
    words = set(re.findall(r"[a-z]+", " ".join(texts).lower()))
    misspelled = {v for w in ("condition", "manufactured", "plastic") for v in typo_variants(w)}
    assert len(words & misspelled) > 10


def test_tidy_and_messy_mix_by_share() -> None:
    mixed = notes_dataset(2_000, seed=3, shapes="train", messy=0.6)
    assert 0.55 < mixed["messy"].mean() < 0.65
    tidy = notes_dataset(500, seed=3, shapes="train")
    assert not tidy["messy"].any() and tidy["year"].notna().all()
    assert all(str(y) in t for y, t in zip(tidy["year"], tidy["text"], strict=True))


def test_shapes_can_be_a_chosen_subset() -> None:
    chosen = TRAIN_SHAPES[2::5]
    frame = notes_dataset(300, seed=2, shapes=chosen, messy=0.5)
    assert set(frame["shape"]) <= set(range(len(chosen)))
    with pytest.raises(ValueError, match="at least one shape"):
        notes_dataset(5, seed=1, shapes=())
    with pytest.raises(ValueError, match="messy"):
        notes_dataset(5, seed=1, messy=1.5)


def test_misspellings_stay_in_their_split() -> None:
    rng = random.Random(5)
    text = "Plastic housing manufactured around 1990, condition excellent, stainless bolts"
    for split in ("train", "val", "heldout"):
        for _ in range(200):
            written = misspell(text, rng, split, rate=0.5)
            for original, word in zip(text.split(), written.split(), strict=True):
                if original != word:
                    clean = re.sub(r"\W", "", original).lower()
                    changed = re.sub(r"\W", "", word).lower()
                    assert spelling_group(clean, changed) in SPELLINGS[split]
    assert not SPELLINGS["train"] & (SPELLINGS["val"] | SPELLINGS["heldout"])
    assert "plastik" not in typo_variants("good") and "good" not in typo_variants("good")
    assert {"gud", "fiar"} <= set(typo_variants("good")) | set(typo_variants("fair"))
    assert "poor" not in typo_variants("door")  # never a word that means something else


def test_written_years_stay_on_their_side_of_the_cutoff() -> None:
    rng = random.Random(1)
    for year in range(1960, 2025):
        for _ in range(20):
            written = year_form(year, rng, cued=False)
            reading = read_manufacture_year(f"steel pump {written} good")
            assert reading is not None, written
            assert (reading.year < CUTOFF_YEAR) == (year < CUTOFF_YEAR), (year, written)
            cued = year_form(year, rng, cued=True)
            reading = read_manufacture_year(f"steel pump mfd {cued} good")
            assert reading is not None and (reading.year < CUTOFF_YEAR) == (year < CUTOFF_YEAR)


def test_negations_never_contradict_the_materials() -> None:
    rng = random.Random(2)
    assert negation(("plastic", "iron", "cast iron", "nylon"), rng) is None
    for _ in range(100):
        said = negation(("cast iron",), rng)
        assert said is not None and "iron" not in said
