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


def table_rows(frame: pd.DataFrame, kind: Kind) -> tuple[list[str], list[list[str]]]:
    """Headers and cells of the compact human-readable table (CSV/JSON keep every column)."""
    if kind == "battery":
        headers = ["battery", "car", "status", "alert date", "fails by", "days", "cycles", "model"]
        rows = [
            [
                str(r.battery_id),
                str(r.car_id),
                str(r.status),
                _day(r.alert_date),
                _day(r.predicted_failure_date),
                "" if pd.isna(r.days_to_failure) else str(int(r.days_to_failure)),
                f"{r.lifetime_cycles_used:.0f}/{r.battery_rated_cycles:.0f}",
                f"{r.model_name} v{r.model_version}",
            ]
            for r in frame.itertuples(index=False)
        ]
    else:
        headers = ["car", "note", "component", "p(non-compliant)", "model", "text"]
        rows = [
            [
                str(r.car_id),
                str(r.note_id),
                str(r.component),
                f"{r.probability:.3f}",
                f"{r.model_name} v{r.model_version}",
                str(r.text),
            ]
            for r in frame.itertuples(index=False)
        ]
    return headers, rows


def _day(value) -> str:
    return "" if value is None or pd.isna(value) else pd.Timestamp(value).strftime("%Y-%m-%d")


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


def acknowledge_alert(cfg: PitstopConfig, alert_id: str, by: str | None = None) -> int:
    """Close an open battery alert because an operator acknowledged it; returns rows changed.

    Uses delta-rs (no JVM). A concurrent commit by the streaming job is retried; the job's
    own MERGE retries the same way, so neither loses the other's change.
    """
    import re
    import time

    from deltalake import DeltaTable
    from deltalake.exceptions import CommitFailedError, TableNotFoundError

    if not re.fullmatch(r"[0-9a-f]{16}", alert_id):
        raise AlertsError(
            f"'{alert_id}' is not an alert id (16 hex characters, see --format json)."
        )
    location = cfg.storage.table(_TABLES["battery"])
    reason = "acknowledged" + (f" by {by}" if by else "")
    for attempt in range(5):
        try:
            table = DeltaTable(location)
        except TableNotFoundError:
            raise AlertsError(f"No battery alert table at {location} yet.") from None
        try:
            result = table.update(
                predicate=f"alert_id = '{alert_id}' AND status = 'open'",
                new_values={
                    "status": "acknowledged",
                    "close_reason": reason,
                    "closed_at": dt.datetime.now(dt.timezone.utc),
                    "updated_at": dt.datetime.now(dt.timezone.utc),
                },
            )
            return int(result.get("num_updated_rows", 0))
        except CommitFailedError:
            time.sleep(0.2 * (attempt + 1))
    raise AlertsError(f"Could not acknowledge {alert_id}: the table kept changing; try again.")
