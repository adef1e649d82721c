"""Technicians' component notes with their true compliance label, written many ways.

The regulation (DESIGN.md): a component manufactured before 1995, or in fair or poor
condition, or made with plastic or iron, is out of compliance. A note states the
manufacture year and usually the condition and the material, in one of many sentence
shapes, with abbreviations ("mfd 1993", "cond.", "approx"), random casing and punctuation,
and distractors (mileage, work orders, inspection years). A note that leaves the condition
or the material out is judged on what it states.

Sentence shapes are split in two: training sees only `TRAIN_SHAPES`; `HELDOUT_SHAPES` are
kept for testing, so a model is measured on phrasings it never saw. Everything is pure and
seeded: the same seed gives the same notes.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from core.contract import SCHEMA_VERSION

CUTOFF_YEAR = 1995  # manufactured before this year: non-compliant
FIRST_YEAR, LAST_YEAR = 1960, 2024

Shapes = Literal["train", "heldout", "all"]

# Canonical component name (the message's `component` field) -> ways technicians write it.
COMPONENTS: dict[str, tuple[str, ...]] = {
    "brake caliper": ("brake caliper", "brk caliper", "caliper", "front brake caliper"),
    "alternator": ("alternator", "alt.", "alternator unit"),
    "starter motor": ("starter motor", "starter", "strtr motor"),
    "water pump": ("water pump", "coolant pump", "wtr pump"),
    "fuel pump": ("fuel pump", "fuel pmp", "in-tank fuel pump"),
    "radiator": ("radiator", "rad", "radiator core"),
    "exhaust manifold": ("exhaust manifold", "exh. manifold", "exhaust mnfld"),
    "control arm": ("control arm", "lower control arm", "ctrl arm", "wishbone"),
    "wheel hub": ("wheel hub", "hub assembly", "hub assy"),
    "engine mount": ("engine mount", "eng. mount", "motor mount"),
    "steering rack": ("steering rack", "steering rack assy", "str rack"),
    "oil pan": ("oil pan", "sump", "oil sump"),
    "seat frame": ("seat frame", "driver seat frame"),
    "door hinge": ("door hinge", "hinge", "rear door hinge"),
    "bumper bracket": ("bumper bracket", "bumper mount", "bmpr bracket"),
    "fuel tank": ("fuel tank", "gas tank", "tank"),
    "intake manifold": ("intake manifold", "intake mnfld"),
    "drive shaft": ("drive shaft", "driveshaft", "prop shaft"),
    "battery tray": ("battery tray", "batt tray"),
    "heat shield": ("heat shield", "heatshield"),
    "coil spring": ("coil spring", "suspension spring", "spring"),
    "wheel rim": ("wheel rim", "rim", "alloy wheel rim"),
}

# Material -> surface forms. Non-compliant materials: plastic and iron (any kind).
GOOD_MATERIALS: tuple[str, ...] = (
    "steel", "stainless steel", "stainless", "galvanised steel", "galvanized steel",
    "forged steel", "aluminium", "aluminum", "alu", "alum.", "aluminium alloy", "titanium",
    "carbon fibre", "carbon fiber", "cfrp", "copper", "brass", "bronze", "magnesium",
    "magnesium alloy", "rubber", "reinforced rubber", "ceramic",
)  # fmt: skip
BAD_MATERIALS: tuple[str, ...] = (
    "plastic", "abs plastic", "hard plastic", "moulded plastic", "molded plastic",
    "plastic composite", "iron", "cast iron", "cast-iron", "wrought iron", "ductile iron",
    "grey iron", "gray iron",
)  # fmt: skip
# Condition words. Non-compliant conditions: fair and poor.
GOOD_CONDITIONS: tuple[str, ...] = (
    "good", "very good", "excellent", "exc.", "like new", "like-new", "new", "as-new",
    "mint", "great", "gd",
)  # fmt: skip
BAD_CONDITIONS: tuple[str, ...] = (
    "fair", "poor", "very poor", "v. poor", "only fair", "fair to poor", "rather poor",
    "fair-ish",
)  # fmt: skip

YEAR_PHRASES: tuple[str, ...] = (
    "manufactured in {y}", "manufactured {y}", "mfd {y}", "mfd. {y}", "mfg {y}", "mfg. {y}",
    "mfr date {y}", "built in {y}", "built {y}", "made in {y}", "produced in {y}",
    "production year {y}", "prod. yr {y}", "yr {y}", "yr: {y}", "year {y}", "year: {y}",
    "dated {y}", "dating from {y}", "from {y}", "circa {y}", "ca. {y}", "c. {y}",
    "approx. {y}", "approx {y}", "manufactured approx. {y}", "made around {y}",
    "manufactured around {y}", "{y} build", "{y}-built", "built circa {y}",
    "date of manufacture {y}", "dom {y}", "MY{y}", "model year {y}",
)  # fmt: skip
CONDITION_PHRASES: tuple[str, ...] = (
    "in {c} condition", "{c} condition", "condition {c}", "condition: {c}", "cond. {c}",
    "cond {c}", "cond: {c}", "{c} cond.", "{c} cond", "rated {c}", "condition rated {c}",
    "state: {c}", "in {c} shape", "{c} overall", "overall {c}", "looks {c}",
    "assessed as {c}",
)  # fmt: skip
MATERIAL_PHRASES: tuple[str, ...] = (
    "{m}", "made of {m}", "made from {m}", "{m} construction", "material: {m}",
    "material {m}", "mat. {m}", "mat: {m}", "constructed of {m}", "{m} body",
    "built from {m}", "all {m}", "{m} housing", "solid {m}",
)  # fmt: skip
COMPONENT_PHRASES: tuple[str, ...] = ("{p}", "{p}", "{p}", "the {p}", "{p} unit", "{p} part")

# Slots: {P}/{Y}/{C}/{M} are phrases (component, year, condition, material), {p}/{y}/{c}/{m}
# the bare values. A shape without a condition or material slot leaves that fact unstated.
TRAIN_SHAPES: tuple[str, ...] = (
    "{M} {p} {Y} {C}.",
    "{P}: {m}, {Y}, {C}.",
    "{P} - {M} - {Y} - {C}",
    "{P}. {M}. {Y}. {C}.",
    "{Y} {m} {p}, {C}.",
    "{y} {m} {p} {C}",
    "{p} / {m} / {y} / {c}",
    "{p} ({m}), {Y}, {C}",
    "Checked {p}: {C}, {M}, {Y}.",
    "Inspected the {p}, {Y}, {M}, {C}.",
    "{p} {Y}. Material {m}. {C}.",
    "{C} {p} of {m}, {Y}.",
    "{p} made of {m}, {Y}, currently {c}.",
    "{m} {p}, {C}; {Y}",
    "{P} is {m} and {C}, {Y}.",
    "Found {P} {M} {Y}, {C}.",
    "{p}: {C}. {Y}. {M}.",
    "{Y}, {M}, {C} - {p}",
    "{c} {m} {p} ({y})",
    "{p} [{m}] [{y}] [{c}]",
    "Removed {p} for inspection - {M}, {Y}, {C}.",
    "Tech note: {p} - {m} - {C} - {Y}",
    "{P} appears {c}; {Y}; {M}",
    "The {p} is {m}, {Y}, {C}.",
    "{y} {p}, {m}, {c}",
    "{p} {m} {y} {c}",
    "{p}, {m}, {y}",
    "{M} {p}, {Y}.",
    "{p} {Y}, {C}.",
    "{P} {C}, {Y}",
)
HELDOUT_SHAPES: tuple[str, ...] = (
    "Component: {p} | Material: {m} | Year: {y} | Condition: {c}",
    "{C}. {Y}. {M}. That was the {p}.",
    "Customer asked about the {p}; it is {m}, {C}, {Y}.",
    "{y}; {c}; {m}; {p}",
    "Looked at {p} - {m}, {c}, {Y}",
    "Note: {Y} {p} ({m}), {C}",
    "{M}, {C} {p}, {Y}.",
    "On lift: {p}. {Y} part, {m}, {c}.",
    "{p} => {m} / {Y} / {C}",
    "{Y} and {C}: {M} {p}",
    "{P}: {Y}; {M}.",
)

DISTRACTORS: tuple[str, ...] = (
    "odometer {km} km", "{km} km on the clock", "mileage {mi} mi", "customer reports a rattle",
    "no leaks found", "torque checked to {nm} Nm", "bay {bay}", "work order WO-{wo}",
    "ref #{ref}", "ref {ref}", "inspected {iy}", "last serviced {iy}", "last service in {iy}",
    "next check in {mo} months", "photos attached", "tech {initials}", "approx {h} h labour",
    "part no. {pn}", "owner informed", "parts on order", "cleaned and lubricated",
    "recheck at next visit", "re-torqued bolts", "ambient {temp} C",
)  # fmt: skip


@dataclass(frozen=True)
class NoteFacts:
    """What a note states; `None` means the note leaves that fact out."""

    component: str
    year: int
    condition: str | None
    material: str | None

    @property
    def non_compliant(self) -> bool:
        """The regulation, applied to the stated facts."""
        return (
            self.year < CUTOFF_YEAR
            or self.condition in BAD_CONDITIONS
            or self.material in BAD_MATERIALS
        )


def is_non_compliant(year: int, condition: str | None, material: str | None) -> bool:
    """True when a component breaks the regulation (before 1995, fair/poor, plastic/iron)."""
    return NoteFacts("", year, condition, material).non_compliant


def shapes_of(shapes: Shapes) -> tuple[str, ...]:
    """The sentence shapes of a split: 'train', 'heldout' or 'all'."""
    if shapes == "train":
        return TRAIN_SHAPES
    if shapes == "heldout":
        return HELDOUT_SHAPES
    if shapes == "all":
        return TRAIN_SHAPES + HELDOUT_SHAPES
    raise ValueError(f"shapes must be 'train', 'heldout' or 'all', not {shapes!r}")


class _NoteWriter:
    """Draws facts and writes them as text; all randomness comes from one seeded Random."""

    def __init__(self, rng: random.Random, shapes: tuple[str, ...], violation_rate: float):
        self.rng, self.shapes, self.violation_rate = rng, shapes, violation_rate

    def facts(self, component: str | None = None) -> NoteFacts:
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
        bad_material = rng.random() < self.violation_rate
        material = rng.choice(BAD_MATERIALS if bad_material else GOOD_MATERIALS)
        return NoteFacts(component, year, condition, material)

    def write(self, facts: NoteFacts) -> tuple[str, NoteFacts, int]:
        """(text, the facts the text states, index of its shape)."""
        rng = self.rng
        index = rng.randrange(len(self.shapes))
        shape = self.shapes[index]
        stated = NoteFacts(
            facts.component,
            facts.year,
            facts.condition if ("{C}" in shape or "{c}" in shape) else None,
            facts.material if ("{M}" in shape or "{m}" in shape) else None,
        )
        part = rng.choice(COMPONENTS[facts.component])
        slots = {
            "p": part,
            "y": str(facts.year),
            "c": facts.condition or "",
            "m": facts.material or "",
            "P": rng.choice(COMPONENT_PHRASES).format(p=part),
            "Y": rng.choice(YEAR_PHRASES).format(y=facts.year),
            "C": rng.choice(CONDITION_PHRASES).format(c=facts.condition or ""),
            "M": rng.choice(MATERIAL_PHRASES).format(m=facts.material or ""),
        }
        text = shape.format(**slots)
        text = self._add_distractors(text, facts.year)
        return self._restyle(text), stated, index

    def _add_distractors(self, text: str, year: int) -> str:
        rng = self.rng
        for _ in range(rng.choices((0, 1, 2), weights=(0.45, 0.4, 0.15))[0]):
            phrase = rng.choice(DISTRACTORS).format(
                km=self._number(),
                mi=self._code(1_000, 180_000),
                nm=rng.randint(20, 250),
                bay=rng.randint(1, 12),
                wo=self._code(10_000, 99_999),
                ref=self._code(100, 99_999),
                # Service happens after manufacture, never before.
                iy=rng.randint(max(year, 2005), LAST_YEAR),
                mo=rng.choice((3, 6, 12, 18)),
                initials=rng.choice(("JS", "A.K.", "mb", "R. Diaz", "T.O.")),
                h=rng.choice(("0.5", "1", "1.5", "2", "3")),
                pn=f"{rng.choice('ABKXZ')}{self._code(1000, 99999)}",
                temp=rng.randint(-10, 35),
            )
            sep = rng.choice((". ", ", ", "; ", " - "))
            if rng.random() < 0.7:
                text = f"{text.rstrip('.!')}{sep}{phrase}"
            else:
                text = f"{phrase}{sep}{text}"
        return text

    def _number(self) -> str:
        value = self._code(2_000, 350_000)
        return f"{value:,}" if self.rng.random() < 0.4 else str(value)

    def _code(self, low: int, high: int) -> int:
        # A third of reference numbers and mileages look like years ("ref 1983"): only the
        # words around a number say whether it is the manufacture year.
        if self.rng.random() < 0.35:
            return self.rng.randint(FIRST_YEAR - 60, LAST_YEAR)
        return self.rng.randint(low, high)

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
    n: int, seed: int, shapes: Shapes = "train", violation_rate: float = 0.2
) -> pd.DataFrame:
    """`n` labelled notes for training and testing, written only in the given shapes.

    Columns: text, non_compliant, shape (index into the split's shapes), component, year,
    condition and material (None when the note leaves it out). Each of the three
    violations occurs with `violation_rate`, so 0.2 gives about half non-compliant notes.
    """
    if n < 0:
        raise ValueError(f"n must be at least 0, got {n}")
    writer = _NoteWriter(random.Random(seed), shapes_of(shapes), violation_rate)
    rows = []
    for _ in range(n):
        text, stated, index = writer.write(writer.facts())
        rows.append(
            {
                "text": text,
                "non_compliant": stated.non_compliant,
                "shape": index,
                "component": stated.component,
                "year": stated.year,
                "condition": stated.condition,
                "material": stated.material,
            }
        )
    columns = ["text", "non_compliant", "shape", "component", "year", "condition", "material"]
    return pd.DataFrame(rows, columns=columns)


def generate_notes(
    car_ids: list[str],
    start_date: dt.date | str,
    days: int,
    seed: int,
    notes_per_car_per_year: float = 2.0,
    violation_rate: float = 0.1,
) -> Iterator[dict]:
    """Notes for a fleet over `days` days, in `written_at` order, one day at a time.

    Each is a component-notes contract message (schema version 1) plus the truth key
    `non_compliant`, which the simulator strips before sending. Memory stays flat: only one
    day's notes exist at a time.
    """
    if days < 0 or notes_per_car_per_year < 0:
        raise ValueError("days and notes_per_car_per_year must not be negative")
    if not car_ids:
        return
    start = dt.date.fromisoformat(start_date) if isinstance(start_date, str) else start_date
    counts = np.random.default_rng(seed)
    writer = _NoteWriter(random.Random(f"notes-{seed}"), shapes_of("all"), violation_rate)
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
            facts = writer.facts()
            text, stated, _ = writer.write(facts)
            written = dt.datetime.combine(day, dt.time(), dt.timezone.utc) + dt.timedelta(
                seconds=int(second)
            )
            yield {
                "schema_version": SCHEMA_VERSION,
                "note_id": f"N{seed}-{serial:08d}",
                "car_id": str(car_ids[int(car)]),
                "component": stated.component,
                "text": text,
                "written_at": written.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "non_compliant": stated.non_compliant,
            }
