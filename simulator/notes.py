"""Technicians' component notes with their true compliance label, written many ways.

The regulation (DESIGN.md): a component manufactured before 1995, or in fair or poor
condition, or made with plastic or iron, is out of compliance. Facts are drawn first (year,
condition, one or two materials) and the label is computed from them, never from the text;
then the facts are written in one of many sentence shapes, with abbreviations, casing and
distractors (mileage, work orders, inspection years). A note that leaves the condition or
the material out is judged on what it states.

A share `messy` of the notes is written the way people type in a hurry (`note_style`):
misspellings, shorthand years ('94, "mfd 94", 06/1994, "early nineties"), a component of
two materials ("steel housing w/ plastic clips"), negations ("no plastic parts"), more
unrelated numbers and sentences, and now and then no year at all ("no date stamp").

Sentence shapes are split (`TRAIN_SHAPES`, `HELDOUT_SHAPES`) and so are misspellings
(`note_style.SPELLINGS`), so a model is measured on phrasings and spellings it never saw.
Everything is pure and seeded: the same seed gives the same notes.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from core.contract import SCHEMA_VERSION
from simulator.note_style import (
    FIRST_YEAR,
    LAST_YEAR,
    NO_YEAR_PHRASES,
    NO_YEAR_VALUES,
    Spellings,
    combined_materials,
    distractor_values,
    draw_material,
    misspell,
    negation,
    year_form,
)
from simulator.note_words import (
    BAD_CONDITIONS,
    BAD_MATERIALS,
    COMPONENT_PHRASES,
    COMPONENTS,
    CONDITION_PHRASES,
    CUED_YEAR_PHRASES,
    DISTRACTORS,
    GOOD_CONDITIONS,
    GOOD_MATERIALS,
    HELDOUT_SHAPES,
    MATERIAL_PHRASES,
    MESSY_DISTRACTORS,
    TRAIN_SHAPES,
    YEAR_PHRASES,
)

__all__ = [
    "BAD_CONDITIONS",
    "BAD_MATERIALS",
    "COMPONENTS",
    "CUTOFF_YEAR",
    "GOOD_CONDITIONS",
    "GOOD_MATERIALS",
    "HELDOUT_SHAPES",
    "TRAIN_SHAPES",
    "NoteFacts",
    "generate_notes",
    "is_non_compliant",
    "notes_dataset",
    "shapes_of",
]

CUTOFF_YEAR = 1995  # manufactured before this year: non-compliant

Shapes = Literal["train", "heldout", "all"]
COLUMNS = [
    "text", "non_compliant", "shape", "component", "year", "condition", "material",
    "materials", "messy",
]  # fmt: skip


@dataclass(frozen=True)
class NoteFacts:
    """What a note states; `None` (or no materials) means the note leaves that fact out."""

    component: str
    year: int | None
    condition: str | None
    materials: tuple[str, ...] = ()

    @property
    def material(self) -> str | None:
        """The material that decides: the first non-compliant one, else the first one."""
        bad = [m for m in self.materials if m in BAD_MATERIALS]
        return bad[0] if bad else (self.materials[0] if self.materials else None)

    @property
    def non_compliant(self) -> bool:
        """The regulation, applied to the stated facts."""
        return (
            (self.year is not None and self.year < CUTOFF_YEAR)
            or self.condition in BAD_CONDITIONS
            or any(m in BAD_MATERIALS for m in self.materials)
        )


def is_non_compliant(
    year: int | None, condition: str | None, material: str | Sequence[str] | None
) -> bool:
    """True when a component breaks the regulation (before 1995, fair/poor, plastic/iron)."""
    materials = (material,) if isinstance(material, str) else tuple(material or ())
    return NoteFacts("", year, condition, materials).non_compliant


def shapes_of(shapes: Shapes | Sequence[str]) -> tuple[str, ...]:
    """The sentence shapes of a split ('train', 'heldout' or 'all'), or the shapes given."""
    if not isinstance(shapes, str):
        if not shapes:
            raise ValueError("shapes must name a split or hold at least one shape")
        return tuple(shapes)
    if shapes == "train":
        return TRAIN_SHAPES
    if shapes == "heldout":
        return HELDOUT_SHAPES
    if shapes == "all":
        return TRAIN_SHAPES + HELDOUT_SHAPES
    raise ValueError(f"shapes must be 'train', 'heldout' or 'all', not {shapes!r}")


@dataclass(frozen=True)
class _Note:
    text: str
    stated: NoteFacts
    shape: int
    messy: bool


class _NoteWriter:
    """Draws facts and writes them as text; all randomness comes from one seeded Random."""

    def __init__(
        self,
        rng: random.Random,
        shapes: tuple[str, ...],
        violation_rate: float,
        messy: float = 0.0,
        spellings: Spellings = "all",
    ) -> None:
        self.rng, self.shapes, self.violation_rate = rng, shapes, violation_rate
        self.messy, self.spellings = messy, spellings

    def note(self, component: str | None = None) -> _Note:
        """One note: facts drawn, then written tidily or messily."""
        messy = self.messy > 0 and self.rng.random() < self.messy
        return self.write(self.facts(component, messy), messy)

    def facts(self, component: str | None = None, messy: bool = False) -> NoteFacts:
        rng = self.rng
        component = component or rng.choice(tuple(COMPONENTS))
        old = rng.random() < self.violation_rate
        # A third of the years sit next to the cutoff, where a sloppy model would slip.
        if old:
            year = rng.randint(1990, 1994) if rng.random() < 0.35 else rng.randint(FIRST_YEAR, 1994)
        else:
            year = rng.randint(1995, 1999) if rng.random() < 0.35 else rng.randint(1995, LAST_YEAR)
        bad_condition = rng.random() < self.violation_rate
        condition = rng.choice(BAD_CONDITIONS if bad_condition else GOOD_CONDITIONS)
        materials = (draw_material(rng, self.violation_rate),)
        if messy:
            if rng.random() < 0.3:
                materials += (draw_material(rng, self.violation_rate),)
            if rng.random() < 0.04:
                return NoteFacts(component, None, condition, materials)
        return NoteFacts(component, year, condition, materials)

    def write(self, facts: NoteFacts, messy: bool = False) -> _Note:
        """The note's text, the facts it states and the index of its shape."""
        rng = self.rng
        index = rng.randrange(len(self.shapes))
        shape = self.shapes[index]
        stated = NoteFacts(
            facts.component,
            facts.year,
            facts.condition if ("{C}" in shape or "{c}" in shape) else None,
            facts.materials if ("{M}" in shape or "{m}" in shape) else (),
        )
        part = rng.choice(COMPONENTS[facts.component])
        material = facts.materials[0] if facts.materials else ""
        if len(facts.materials) > 1:
            material = combined_materials(facts.materials[0], facts.materials[1], rng)
        year, year_phrase = self._year(facts.year, messy)
        slots = {
            "p": part,
            "y": year,
            "c": facts.condition or "",
            "m": material,
            "P": rng.choice(COMPONENT_PHRASES).format(p=part),
            "Y": year_phrase,
            "C": rng.choice(CONDITION_PHRASES).format(c=facts.condition or ""),
            "M": rng.choice(MATERIAL_PHRASES).format(m=material),
            "x": self._distractor(facts.year, messy),
        }
        text = shape.format(**slots)
        if messy and rng.random() < 0.2:
            said = negation(stated.materials, rng)
            text = self._join(text, said) if said else text
        text = self._add_distractors(text, facts.year, messy)
        if messy:
            text = misspell(text, rng, self.spellings)
        return _Note(self._restyle(text), stated, index, messy)

    def _year(self, year: int | None, messy: bool) -> tuple[str, str]:
        """(the bare year, a year phrase) as this note writes them."""
        rng = self.rng
        if year is None:
            return rng.choice(NO_YEAR_VALUES), rng.choice(NO_YEAR_PHRASES)
        phrase = rng.choice(YEAR_PHRASES)
        if not messy or rng.random() < 0.5:
            return str(year), phrase.format(y=year)
        cued = phrase in CUED_YEAR_PHRASES
        written = year_form(year, rng, cued)
        if phrase.startswith("MY") and not written.isdigit():
            written = f"{year % 100:02d}"  # "MY94"; "MYearly 90s" is no one's shorthand
        return year_form(year, rng, cued=False), phrase.format(y=written)

    def _distractor(self, year: int | None, messy: bool) -> str:
        rng = self.rng
        pool = DISTRACTORS + MESSY_DISTRACTORS if messy else DISTRACTORS
        return rng.choice(pool).format(**distractor_values(rng, year))

    def _join(self, text: str, phrase: str) -> str:
        sep = self.rng.choice((". ", ", ", "; ", " - "))
        if self.rng.random() < 0.7:
            return f"{text.rstrip('.!')}{sep}{phrase}"
        return f"{phrase}{sep}{text}"

    def _add_distractors(self, text: str, year: int | None, messy: bool) -> str:
        weights = (0.3, 0.4, 0.3) if messy else (0.45, 0.4, 0.15)
        for _ in range(self.rng.choices((0, 1, 2), weights=weights)[0]):
            text = self._join(text, self._distractor(year, messy))
        return text

    def _restyle(self, text: str) -> str:
        rng = self.rng
        if rng.random() < 0.1:
            text = text.replace(",", "")
        if rng.random() < 0.05:
            text = text.replace(" ", "  ", 1)
        if rng.random() < 0.3:
            text = text.rstrip(".")
        elif rng.random() < 0.1:
            text = text.rstrip(".") + "!"
        style = rng.random()
        if style < 0.5:
            return text[:1].upper() + text[1:]
        if style < 0.75:
            return text.lower()
        if style < 0.87:
            return text.upper()
        if style < 0.93:
            return text.title()
        return text


def notes_dataset(
    n: int,
    seed: int,
    shapes: Shapes | Sequence[str] = "train",
    violation_rate: float = 0.2,
    *,
    messy: float = 0.0,
    spellings: Spellings = "all",
) -> pd.DataFrame:
    """`n` labelled notes for training and testing, written only in the given shapes.

    `messy` is the share of notes typed in a hurry, misspelled only with the `spellings`
    split's misspellings. Columns: text, non_compliant, shape (index into the shapes),
    component, year (missing when unstated), condition and material (None when the note
    leaves it out; material is the one that decides), materials (all, `;`-separated) and
    messy. Each of the three violations occurs with `violation_rate`, so 0.2 gives about
    half non-compliant notes.
    """
    if n < 0:
        raise ValueError(f"n must be at least 0, got {n}")
    if not 0.0 <= messy <= 1.0:
        raise ValueError(f"messy must be a share between 0 and 1, got {messy}")
    writer = _NoteWriter(random.Random(seed), shapes_of(shapes), violation_rate, messy, spellings)
    rows = []
    for _ in range(n):
        note = writer.note()
        stated = note.stated
        rows.append(
            (
                note.text,
                stated.non_compliant,
                note.shape,
                stated.component,
                stated.year,
                stated.condition,
                stated.material,
                ";".join(stated.materials),
                note.messy,
            )
        )
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame["year"] = frame["year"].astype("Int64")
    return frame


def generate_notes(
    car_ids: list[str],
    start_date: dt.date | str,
    days: int,
    seed: int,
    notes_per_car_per_year: float = 2.0,
    violation_rate: float = 0.1,
    messy: float = 0.0,
) -> Iterator[dict]:
    """Notes for a fleet over `days` days, in `written_at` order, one day at a time.

    Each is a component-notes contract message (schema version 1) plus the truth key
    `non_compliant`, which the simulator strips before sending; `messy` is the share typed
    in a hurry (every shape and misspelling may occur). Memory stays flat: only one day's
    notes exist at a time.
    """
    if days < 0 or notes_per_car_per_year < 0:
        raise ValueError("days and notes_per_car_per_year must not be negative")
    if not car_ids:
        return
    start = dt.date.fromisoformat(start_date) if isinstance(start_date, str) else start_date
    counts = np.random.default_rng(seed)
    writer = _NoteWriter(random.Random(f"notes-{seed}"), shapes_of("all"), violation_rate, messy)
    per_day = len(car_ids) * notes_per_car_per_year / 365.0
    serial = 0
    for offset in range(days):
        day = start + dt.timedelta(days=offset)
        n = int(counts.poisson(per_day))
        if n == 0:
            continue
        cars = counts.integers(0, len(car_ids), size=n)
        seconds = np.sort(counts.integers(7 * 3600, 19 * 3600, size=n))  # workshop hours
        for car, second in zip(cars, seconds, strict=True):
            serial += 1
            note = writer.note()
            written = dt.datetime.combine(day, dt.time(), dt.timezone.utc) + dt.timedelta(
                seconds=int(second)
            )
            yield {
                "schema_version": SCHEMA_VERSION,
                "note_id": f"N{seed}-{serial:08d}",
                "car_id": str(car_ids[int(car)]),
                "component": note.stated.component,
                "text": note.text,
                "written_at": written.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "non_compliant": note.stated.non_compliant,
            }
