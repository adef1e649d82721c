"""What the training commands train on: the lake's telemetry, a file, or a simulated fleet.

The application layer wires the simulator to training, so `models` never imports the
simulator: simulated readings and labelled notes are made here and handed in as frames.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from core.config import PitstopConfig
from models.forecasting.data import DataError, SampleBounds, contract_readings, load_readings

if TYPE_CHECKING:
    from models.training.compliance import ComplianceTrainResult, NoteSets

# Fewer batteries than this cannot be split into training and validation batteries.
MIN_BATTERIES = 2
HOLDOUT_SEED = 1995  # fixed: the held-out notes must be identical across runs
HOLDOUT_SIZE = 6_000


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


def compliance_notes(
    seed: int = 0, train_size: int = 24_000, val_size: int = 3_000, holdout_size: int = HOLDOUT_SIZE
) -> NoteSets:
    """Labelled notes from the simulator's generator: training and validation notes in the
    training sentence shapes, held-out notes in shapes training never sees, drawn with a
    fixed seed so every run (and the champion it is compared with) faces the same ones."""
    from models.training.compliance import NoteSets
    from simulator.notes import notes_dataset

    # Distinct seeds per split: validation notes never repeat training notes' draws.
    return NoteSets(
        train=notes_dataset(train_size, seed * 3 + 1, "train", violation_rate=0.2),
        val=notes_dataset(val_size, seed * 3 + 2, "train", violation_rate=0.2),
        holdout=notes_dataset(holdout_size, HOLDOUT_SEED, "heldout", violation_rate=0.2),
        params={"holdout_seed": HOLDOUT_SEED, "holdout_shapes": "heldout (never seen in training)"},
    )


def train_compliance_on_simulated_notes(
    cfg: PitstopConfig,
    *,
    seed: int = 0,
    train_size: int = 24_000,
    val_size: int = 3_000,
    holdout_size: int = HOLDOUT_SIZE,
    epochs: int = 5,
    **options: Any,
) -> ComplianceTrainResult:
    """Draw the notes (`compliance_notes`) and train the classifier on them
    (`models.training.compliance.train_compliance`, which takes the other options)."""
    from models.training.compliance import ComplianceTrainingError, train_compliance

    if epochs < 1 or min(train_size, val_size, holdout_size) < 1:
        raise ComplianceTrainingError("epochs and every data set size must be at least 1.")
    notes = compliance_notes(seed, train_size, val_size, holdout_size)
    return train_compliance(cfg, notes, seed=seed, epochs=epochs, **options)
