"""What the training commands train on: the lake's telemetry, a file, or a simulated fleet.

The application layer wires the simulator to training, so `models` never imports the
simulator: simulated readings and labelled notes are made here and handed in as frames.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from core.config import PitstopConfig
from models.forecasting.data import DataError, SampleBounds, contract_readings, load_readings

if TYPE_CHECKING:
    from models.compliance.data import LabelledNotes
    from models.training.compliance import ComplianceTrainResult, NoteSets

# Fewer batteries than this cannot be split into training and validation batteries.
MIN_BATTERIES = 2
HOLDOUT_SEED = 1995  # fixed: the held-out notes must be identical across runs
HOLDOUT_SIZE = 6_000
MESSY_SHARE = 0.6  # of simulated notes typed in a hurry; the rest are tidy
VALIDATION_EVERY = 5  # every fifth training sentence shape validates instead


def simulated_readings(
    batteries: int, days: int, start_date: str = "2024-01-01", seed: int = 7
) -> pd.DataFrame:
    """Generate a fleet's readings in memory with the simulator, in contract columns."""
    from simulator.fleet import FleetParams, simulate_fleet
    from simulator.messages import telemetry_frame

    params = FleetParams(batteries, dt.date.fromisoformat(start_date), seed=seed)
    frames = [telemetry_frame(day) for day in simulate_fleet(params, days) if len(day)]
    if not frames:
        raise DataError("The simulator produced no readings; ask for more days.")
    return contract_readings(pd.concat(frames, ignore_index=True), "the simulator")


def default_training_source(cfg: PitstopConfig) -> str | None:
    """The Delta telemetry table when the stream has written rows to it, else None (simulate)."""
    from core.lake import count_rows

    table = cfg.storage.table("telemetry")
    if "://" not in table and (Path(table) / "_delta_log").is_dir():
        if count_rows(cfg, "telemetry") > 0:
            return table
    return None


def training_bounds(cfg: PitstopConfig) -> SampleBounds:
    """How much of a Delta telemetry table training reads (forecast.training_days/batteries)."""
    forecast = cfg.forecast
    return SampleBounds(days=forecast.training_days, max_batteries=forecast.training_batteries)


def training_readings(
    data: str | None, cfg: PitstopConfig, announce: Callable[[str], None] | None = None
) -> tuple[pd.DataFrame, str]:
    """Readings from `data`, else the Delta telemetry table, else a simulated fleet, and where
    they came from. `announce` hears why a fleet is simulated, before it is. A Delta table is
    read as a bounded sample (`training_bounds`).

    Data the user named that holds too few batteries is an error; so is training with no
    `data` on a deployment whose lake is remote (abfss://, s3://, ...): its data is the
    user's, and simulated readings would silently stand in for it.
    """
    lake = cfg.storage.lake
    if data is None and "://" in lake:
        raise DataError(
            f"The lake is remote ({lake.split('://', 1)[0]}://...): name the data to train on "
            f"with --data (e.g. {cfg.storage.table('telemetry')}); Pitstop does not train on "
            "a simulated fleet there."
        )
    source = data or default_training_source(cfg)
    readings = load_readings(source, training_bounds(cfg)) if source else None
    if readings is not None and readings["battery_id"].nunique() >= MIN_BATTERIES:
        return readings, str(source)
    if data:
        raise DataError(f"{data} holds fewer than {MIN_BATTERIES} batteries to train on.")
    sim = cfg.simulator
    if announce is not None:
        announce(
            f"No telemetry to train on yet: simulating {sim.batteries} batteries x {sim.days} "
            f"days (seed {sim.seed})"
        )
    readings = simulated_readings(sim.batteries, sim.days, sim.start_date, sim.seed)
    return readings, f"simulator(batteries={sim.batteries}, days={sim.days}, seed={sim.seed})"


def is_remote(location: str) -> bool:
    """Whether a lake location is on a remote store (abfss://, s3://, ...), not this machine."""
    return "://" in location and not location.startswith("file:")


def refuse_simulated_notes_on_remote_lake(cfg: PitstopConfig) -> None:
    """A user whose lake is remote wants a model of their own notes: never train on simulated
    ones without being asked (`--simulated`)."""
    from models.training.compliance import ComplianceTrainingError

    if is_remote(cfg.storage.lake):
        raise ComplianceTrainingError(
            "The lake is remote, so Pitstop will not train the compliance model on simulated "
            "notes: pass --data with your labelled notes (CSV or JSONL), or --simulated to "
            "train on the simulator's notes anyway."
        )


def validation_shapes() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(shapes to fit on, shapes to validate on): every fifth training shape is kept for
    validation, so the choice between candidates rewards phrasings never fitted on."""
    from simulator.notes import TRAIN_SHAPES

    val = TRAIN_SHAPES[2::VALIDATION_EVERY]
    return tuple(s for s in TRAIN_SHAPES if s not in val), val


def compliance_notes(
    seed: int = 0,
    train_size: int = 24_000,
    val_size: int = 3_000,
    holdout_size: int = HOLDOUT_SIZE,
    messy: float = MESSY_SHARE,
) -> NoteSets:
    """Labelled notes from the simulator's generator, `messy` of them typed in a hurry.

    Training, validation and held-out notes use disjoint sentence shapes and disjoint
    misspellings (training never sees the others'); the held-out notes are drawn with a
    fixed seed so every run (and the champion it is compared with) faces the same ones.
    """
    from models.training.compliance import NoteSets
    from simulator.notes import notes_dataset

    fit_shapes, val_shapes = validation_shapes()
    # Distinct seeds per split: validation notes never repeat training notes' draws.
    return NoteSets(
        train=notes_dataset(
            train_size, seed * 3 + 1, fit_shapes, 0.2, messy=messy, spellings="train"
        ),
        val=notes_dataset(val_size, seed * 3 + 2, val_shapes, 0.2, messy=messy, spellings="val"),
        holdout=notes_dataset(
            holdout_size, HOLDOUT_SEED, "heldout", 0.2, messy=messy, spellings="heldout"
        ),
        params={
            "holdout_seed": HOLDOUT_SEED,
            "messy_share": messy,
            "split": (
                f"{len(fit_shapes)} sentence shapes to fit, {len(val_shapes)} to validate, the "
                "held-out shapes to test; misspellings split the same way"
            ),
        },
        source=f"simulator(seed={seed}, messy={messy})",
    )


def evaluation_sets(paths: Sequence[str | Path]) -> dict[str, pd.DataFrame]:
    """Labelled notes to score and report only, by file name (`handwritten.csv` ->
    `handwritten`); never used to fit, choose or promote."""
    from models.compliance.data import load_labelled_notes

    sets: dict[str, pd.DataFrame] = {}
    for path in paths:
        name = Path(path).stem
        while name in sets:
            name += "_"
        sets[name] = load_labelled_notes(path).notes
    return sets


def compliance_notes_from_file(data: str | Path) -> tuple[NoteSets, LabelledNotes]:
    """The user's labelled notes split by text (`models.compliance.data`), and what was read
    (with the rows set aside)."""
    from models.compliance.data import load_labelled_notes, split_labelled_notes
    from models.training.compliance import NoteSets

    loaded = load_labelled_notes(data)
    train, val, holdout = split_labelled_notes(loaded.notes, loaded.source)
    sets = NoteSets(
        train=train,
        val=val,
        holdout=holdout,
        params={"split": "by a hash of each note's text: 80% fit, 10% validate, 10% holdout"},
        source=loaded.source,
    )
    return sets, loaded


def train_compliance_on_simulated_notes(
    cfg: PitstopConfig,
    *,
    seed: int = 0,
    train_size: int = 24_000,
    val_size: int = 3_000,
    holdout_size: int = HOLDOUT_SIZE,
    epochs: int = 5,
    eval_data: Sequence[str | Path] = (),
    **options: Any,
) -> ComplianceTrainResult:
    """Draw the notes (`compliance_notes`) and train the classifier on them
    (`models.training.compliance.train_compliance`, which takes the other options);
    `eval_data` files are scored and reported only."""
    from dataclasses import replace

    from models.training.compliance import ComplianceTrainingError, train_compliance

    if epochs < 1 or min(train_size, val_size, holdout_size) < 1:
        raise ComplianceTrainingError("epochs and every data set size must be at least 1.")
    notes = compliance_notes(seed, train_size, val_size, holdout_size)
    notes = replace(notes, extra=evaluation_sets(eval_data))
    return train_compliance(cfg, notes, seed=seed, epochs=epochs, **options)
