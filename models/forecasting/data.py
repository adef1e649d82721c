"""Training data in contract columns, from wherever it lives, and the holdout every model faces.

Sources: a simulator output folder (`battery-telemetry*.jsonl[.gz]`), a CSV in the lab's
schema, or a Delta table (read with delta-rs, no JVM). Simulated fleets come from the
application layer (`apps.training_data`), which hands their readings in.
"""

from __future__ import annotations

import gzip
import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from core.contract import TELEMETRY_FIELDS, LabCsvError, read_lab_csv
from core.errors import PitstopError
from core.validation import check_telemetry

log = logging.getLogger(__name__)

TELEMETRY_STEM = "battery-telemetry"
CONTRACT_COLUMNS: tuple[str, ...] = tuple(f.name for f in TELEMETRY_FIELDS)
_REQUIRED = tuple(f.name for f in TELEMETRY_FIELDS if f.required)


class DataError(PitstopError, ValueError):
    """A data source that cannot be read as readings; the message says what to fix."""


@dataclass(frozen=True)
class SampleBounds:
    """How much of a Delta table training reads: each battery's last `days` days (counted back
    from the table's latest reading) and at most `max_batteries` of the batteries seen then."""

    days: int
    max_batteries: int | None = None
    seed: int = 0


def load_readings(source: str | Path, bounds: SampleBounds | None = None) -> pd.DataFrame:
    """Readings in contract columns from a simulator folder, a lab-schema CSV or a Delta table
    (of which only the `bounds` sample is read, when given)."""
    if "://" in str(source):
        # A remote table (abfss://, s3://): delta-rs reads it with the environment's credentials.
        return contract_readings(_read_delta(str(source), bounds), str(source))
    path = Path(source)
    if not path.exists():
        raise DataError(
            f"{source} does not exist; give a simulator output folder, a lab-schema CSV "
            "or a Delta table path."
        )
    if path.is_dir() and (path / "_delta_log").is_dir():
        frame = _read_delta(str(path), bounds)
    elif path.is_dir():
        files = sorted(path.glob(f"{TELEMETRY_STEM}*.jsonl")) + sorted(
            path.glob(f"{TELEMETRY_STEM}*.jsonl.gz")
        )
        if not files:
            raise DataError(
                f"{source} is a folder with neither a Delta log nor {TELEMETRY_STEM}.jsonl[.gz]; "
                "point --data at simulator output, a lab-schema CSV or a Delta table."
            )
        frame = pd.concat([_read_jsonl(f) for f in files], ignore_index=True)
    elif path.name.endswith((".csv", ".csv.gz")):
        try:
            frame = read_lab_csv(str(path))
        except LabCsvError as exc:
            raise DataError(str(exc)) from None
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else "it is empty"
            raise DataError(f"{source} is not a readable CSV: {reason}.") from None
    elif path.name.endswith((".jsonl", ".jsonl.gz")):
        frame = _read_jsonl(path)
    else:
        raise DataError(f"{source} is not a .csv, .jsonl[.gz], simulator folder or Delta table.")
    return contract_readings(frame, str(source))


def _read_jsonl(path: Path) -> pd.DataFrame:
    """Valid telemetry lines of a JSONL file; contract-breaking lines are skipped and counted."""
    opener = gzip.open if path.name.endswith(".gz") else open
    rows, rejected = [], 0
    with opener(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            if not line.strip():
                continue
            # The same validator as the stream, so training never sees what the stream
            # would quarantine (the simulator may inject bad messages on purpose).
            checked = check_telemetry(line)
            if checked.ok and checked.fields is not None:
                rows.append(checked.fields)
            else:
                rejected += 1
    if rejected:
        log.warning("Skipped %d line(s) of %s that break the contract", rejected, path)
    return pd.DataFrame(rows, columns=list(CONTRACT_COLUMNS))


def _read_delta(location: str, bounds: SampleBounds | None = None) -> pd.DataFrame:
    from deltalake import DeltaTable

    from core.lake import read_recent

    try:
        table = DeltaTable(location)
    except Exception as exc:  # delta-rs raises its own types for missing or unreadable tables
        raise DataError(f"Cannot read the Delta table at {location}: {exc}") from None
    present = {f.name for f in table.schema().fields}
    missing = [c for c in _REQUIRED if c not in present]
    if missing:
        raise DataError(f"Delta table {location} lacks telemetry column(s) {', '.join(missing)}.")
    columns = [c for c in CONTRACT_COLUMNS if c in present]
    if bounds is None:
        return table.to_pandas(columns=columns)
    frame = read_recent(
        location, columns, days=bounds.days, max_keys=bounds.max_batteries, seed=bounds.seed
    )
    log.info(
        "Read %d readings of %d batteries: the last %d days of %s",
        len(frame),
        frame["battery_id"].nunique(),
        bounds.days,
        location,
    )
    return frame


def contract_readings(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """`frame`'s readings in contract columns, one per (battery, date), sorted; `source` names
    where they came from in errors."""
    missing = [c for c in _REQUIRED if c not in frame.columns]
    if missing:
        raise DataError(f"{source} lacks telemetry column(s) {', '.join(missing)}.")
    if frame.empty:
        raise DataError(f"{source} holds no readings.")
    out = frame[[c for c in CONTRACT_COLUMNS if c in frame.columns]].copy()
    out["battery_id"] = out["battery_id"].astype(str)
    out["car_id"] = out["car_id"].astype(str)
    out["date"] = pd.to_datetime(out["date"]).dt.strftime("%Y-%m-%d")
    out = out.drop_duplicates(["battery_id", "date"], keep="first")
    return out.sort_values(["battery_id", "date"], ignore_index=True)


def split_holdout(readings: pd.DataFrame, horizon_days: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, holdout): each battery's readings in its last `horizon_days` days are held out.

    Deterministic for given readings, so a challenger and the champion face the same
    holdout. Batteries whose readings span `horizon_days` days or fewer stay whole in
    train: they have nothing to forecast from.
    """
    if horizon_days < 1:
        raise DataError(f"horizon_days must be at least 1, got {horizon_days}.")
    if readings.empty:
        raise DataError("There are no readings to split.")
    dates = pd.to_datetime(readings["date"])
    per_battery = dates.groupby(readings["battery_id"])
    last, first = per_battery.transform("max"), per_battery.transform("min")
    cut = last - pd.Timedelta(days=horizon_days)
    held = ((dates > cut) & (first <= cut)).to_numpy()
    if not held.any():
        raise DataError(
            f"No battery has more than {horizon_days} days of readings; nothing to hold out."
        )
    return readings[~held].reset_index(drop=True), readings[held].reset_index(drop=True)
