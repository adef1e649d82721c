"""The wire contract (schema version 1) as data, and the lab CSV's mapping onto it.

One table of field rules feeds the validator (core.validation), the simulator
and the tests, so the contract is written down exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pandas as pd

from core.errors import PitstopError

SCHEMA_VERSION = 1
MAX_MESSAGE_BYTES = 64 * 1024

FieldType = Literal["string", "int", "float", "date", "timestamp"]


@dataclass(frozen=True)
class FieldRule:
    """One field of a message: its type, whether it is required, and its allowed range."""

    name: str
    type: FieldType
    required: bool = True
    min: float | None = None
    max: float | None = None
    min_exclusive: bool = False
    non_empty: bool = False


TELEMETRY_FIELDS: tuple[FieldRule, ...] = (
    FieldRule("schema_version", "int"),
    FieldRule("car_id", "string", non_empty=True),
    FieldRule("battery_id", "string", non_empty=True),
    FieldRule("date", "date"),
    FieldRule("battery_age_days", "int", min=0),
    FieldRule("number_of_trips", "int", min=0),
    FieldRule("daily_trip_duration", "float", min=0, max=24),
    FieldRule("daily_cycles_used", "float", min=0),
    FieldRule("lifetime_cycles_used", "float", min=0),
    FieldRule("battery_rated_cycles", "float", min=0, min_exclusive=True),
    # Optional health signals: null or absent is fine, a wrong type is not.
    FieldRule("cranking_voltage_min", "float", required=False, min=0),
    FieldRule("resting_voltage", "float", required=False, min=0),
    FieldRule("charge_acceptance", "float", required=False, min=0),
    FieldRule("ambient_temp_c", "float", required=False, min=-80, max=80),
)

NOTE_FIELDS: tuple[FieldRule, ...] = (
    FieldRule("schema_version", "int"),
    FieldRule("note_id", "string", non_empty=True),
    FieldRule("car_id", "string", non_empty=True),
    FieldRule("component", "string", non_empty=True),
    FieldRule("text", "string", non_empty=True),
    FieldRule("written_at", "timestamp"),
)

HEALTH_SIGNALS: tuple[str, ...] = tuple(f.name for f in TELEMETRY_FIELDS if not f.required)

# The lab's seed CSV (daily-battery-time-series-v2.csv) column -> contract field.
LAB_CSV_COLUMNS: dict[str, str] = {
    "Date": "date",
    "Battery_ID": "battery_id",
    "Battery_Age_Days": "battery_age_days",
    "Number_Of_Trips": "number_of_trips",
    "Daily_Trip_Duration": "daily_trip_duration",
    "Daily_Cycles_Used": "daily_cycles_used",
    "Lifetime_Cycles_Used": "lifetime_cycles_used",
    "Battery_Rated_Cycles": "battery_rated_cycles",
}


class LabCsvError(PitstopError, ValueError):
    """A CSV does not have the lab's columns."""


def read_lab_csv(path: str) -> pd.DataFrame:
    """Read a CSV in the lab's schema (index column optional) as contract rows."""
    frame = pd.read_csv(path)
    return lab_frame_to_contract(frame, source=path)


def lab_frame_to_contract(frame: pd.DataFrame, source: str = "the CSV") -> pd.DataFrame:
    """Map a frame with the lab's columns onto contract fields; the car is the battery's slot."""
    frame = frame.loc[:, [c for c in frame.columns if not str(c).startswith("Unnamed")]]
    missing = [c for c in LAB_CSV_COLUMNS if c not in frame.columns]
    if missing:
        raise LabCsvError(
            f"{source} is missing the lab column(s) {', '.join(missing)}; expected "
            f"{', '.join(LAB_CSV_COLUMNS)}."
        )
    out = frame.rename(columns=LAB_CSV_COLUMNS)[list(LAB_CSV_COLUMNS.values())].copy()
    # The lab's ids are integers; the contract carries them as strings.
    out["battery_id"] = out["battery_id"].astype(str)
    if "car_id" in frame.columns:
        out["car_id"] = frame["car_id"].astype(str)
    else:
        out["car_id"] = "car-" + out["battery_id"]
    out["date"] = pd.to_datetime(out["date"]).dt.strftime("%Y-%m-%d")
    out["schema_version"] = SCHEMA_VERSION
    return out


def contract_to_lab_frame(readings: pd.DataFrame) -> pd.DataFrame:
    """Contract rows -> the lab's CSV columns (the inverse of `lab_frame_to_contract`)."""
    inverse = {field: column for column, field in LAB_CSV_COLUMNS.items()}
    return readings.rename(columns=inverse)[list(LAB_CSV_COLUMNS)]
