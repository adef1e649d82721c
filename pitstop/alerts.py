"""Read the alert tables without a JVM (delta-rs), so `pitstop alerts` answers in about a second.

SQL users keep Spark SQL on the very same Delta tables; this is only the quick path.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path
from typing import Literal

import pandas as pd

from pitstop.config import PitstopConfig
from pitstop.errors import PitstopError

Kind = Literal["battery", "compliance"]
Format = Literal["table", "csv", "json"]

_TABLES = {"battery": "battery_alerts", "compliance": "compliance_alerts"}
_TABLE_COLUMNS = {
    "battery": [
        "battery_id",
        "car_id",
        "status",
        "alert_date",
        "predicted_failure_date",
        "days_to_failure",
        "lifetime_cycles_used",
        "battery_rated_cycles",
        "model_name",
        "model_version",
    ],
    "compliance": ["car_id", "note_id", "component", "probability", "model_name", "model_version"],
}


class AlertsError(PitstopError):
    """The alert table cannot be read."""


def read_table(cfg: PitstopConfig, name: str) -> pd.DataFrame:
    """A whole Delta table as pandas (empty frame when the table does not exist yet)."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    location = cfg.storage.table(name)
    try:
        return DeltaTable(location).to_pandas()
    except TableNotFoundError:
        if "://" in location or not Path(location).exists():
            return pd.DataFrame()
        raise AlertsError(f"{location} exists but is not a Delta table.") from None


def query_alerts(
    cfg: PitstopConfig,
    kind: Kind = "battery",
    since: dt.date | None = None,
    battery_id: str | None = None,
    car_id: str | None = None,
    include_closed: bool = False,
) -> pd.DataFrame:
    """Alerts of `kind`, newest first, filtered by date, battery or car."""
    frame = read_table(cfg, _TABLES[kind])
    if frame.empty:
        return frame
    if kind == "battery":
        if not include_closed and "status" in frame:
            frame = frame[frame["status"] == "open"]
        if since is not None:
            frame = frame[pd.to_datetime(frame["alert_date"]).dt.date >= since]
        if battery_id is not None:
            frame = frame[frame["battery_id"] == battery_id]
        order = ["alert_date", "battery_id"]
    else:
        if since is not None:
            frame = frame[pd.to_datetime(frame["written_at"]).dt.date >= since]
        order = ["written_at", "note_id"]
    if car_id is not None:
        frame = frame[frame["car_id"] == car_id]
    return frame.sort_values(order, ascending=[False, True]).reset_index(drop=True)


def format_alerts(frame: pd.DataFrame, kind: Kind, fmt: Format) -> str:
    """Render alerts as CSV or JSON lines (every column); `table` is rendered by the CLI."""
    if fmt == "csv":
        buffer = io.StringIO()
        frame.to_csv(buffer, index=False)
        return buffer.getvalue()
    if fmt == "json":
        return "".join(json.dumps(_jsonable(row)) + "\n" for row in frame.to_dict("records"))
    raise ValueError(f"format_alerts renders csv or json, not {fmt!r}")


def table_columns(kind: Kind) -> list[str]:
    """The columns the human-readable table shows."""
    return _TABLE_COLUMNS[kind]


def _jsonable(row: dict) -> dict:
    out = {}
    for key, value in row.items():
        if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NaT:
            out[key] = None
        elif isinstance(value, (dt.date, dt.datetime, pd.Timestamp)):
            out[key] = value.isoformat()
        elif hasattr(value, "item"):
            out[key] = value.item()
        else:
            out[key] = value
    return out
