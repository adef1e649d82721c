"""Ground truth written beside every simulator output, incrementally so memory stays flat.

`<output>/truth/batteries.csv`   one row per battery: rated cycles, install date, weak cell,
                                 failure date and cause (empty while still in service)
`<output>/truth/readings.csv.gz` per reading: the expected daily cycle use before noise
`<output>/truth/notes.csv`       per component note: its true compliance label
"""

from __future__ import annotations

import csv
import gzip
from pathlib import Path
from typing import IO, Any

import numpy as np

from simulator.fleet import BatteryRecord

BATTERY_COLUMNS = (
    "battery_id",
    "car_id",
    "battery_rated_cycles",
    "install_date",
    "weak_cell",
    "failure_date",
    "cause",
)
READING_COLUMNS = ("battery_id", "date", "expected_daily_cycles")
NOTE_COLUMNS = ("note_id", "car_id", "component", "written_at", "non_compliant")


def truth_dir(output_dir: Path) -> Path:
    """Where the truth of a run writing to `output_dir` lives."""
    return output_dir / "truth"


class TruthWriter:
    """Appends truth rows as the simulation produces them; `close()` finishes every file."""

    def __init__(self, output_dir: Path, *, notes: bool) -> None:
        folder = truth_dir(output_dir)
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self._batteries_file = open(folder / "batteries.csv", "w", newline="", encoding="utf-8")
        self._batteries = csv.writer(self._batteries_file)
        self._batteries.writerow(BATTERY_COLUMNS)
        # Level 1: the readings truth is as large as the telemetry; speed beats ratio here.
        self._readings: IO[str] = gzip.open(
            folder / "readings.csv.gz", "wt", compresslevel=1, encoding="utf-8", newline=""
        )
        self._readings.write(",".join(READING_COLUMNS) + "\n")
        self._notes_file: IO[str] | None = None
        if notes:
            self._notes_file = open(folder / "notes.csv", "w", newline="", encoding="utf-8")
            self._notes = csv.writer(self._notes_file)
            self._notes.writerow(NOTE_COLUMNS)

    def write_readings(self, date: str, battery_ids: list[str], expected: np.ndarray) -> None:
        """The expected daily cycles behind a slice of one day's readings."""
        rows = [f"{b},{date},{e}\n" for b, e in zip(battery_ids, expected.tolist(), strict=True)]
        self._readings.write("".join(rows))

    def write_batteries(self, records: list[BatteryRecord] | Any) -> None:
        """Final truth rows of batteries (failed ones, or those still in service at the end)."""
        for r in records:
            self._batteries.writerow(
                (
                    r.battery_id,
                    r.car_id,
                    r.battery_rated_cycles,
                    r.install_date,
                    r.weak_cell,
                    r.failure_date or "",
                    r.cause or "",
                )
            )

    def write_notes(self, rows: list[dict[str, Any]]) -> None:
        """True compliance labels of notes that were sent."""
        if self._notes_file is None:
            return
        for row in rows:
            self._notes.writerow([row[c] for c in NOTE_COLUMNS])

    def close(self) -> None:
        """Flush and close every truth file."""
        self._batteries_file.close()
        self._readings.close()
        if self._notes_file is not None:
            self._notes_file.close()
