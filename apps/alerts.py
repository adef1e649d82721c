"""The alert commands' work: query the alert tables, render them, acknowledge an alert.

No JVM: reads and the acknowledgement go through delta-rs (`core.lake`), so `pitstop alerts`
answers in about a second. SQL users keep Spark SQL on the very same Delta tables.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
from typing import Any, Literal

import pandas as pd

from core.config import PitstopConfig
from core.errors import PitstopError
from core.lake import on_commit_conflict, open_table, read_table, sql_string

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


def query_alerts(
    cfg: PitstopConfig,
    kind: Kind = "battery",
    since: dt.date | None = None,
    battery_id: str | None = None,
    car_id: str | None = None,
    include_closed: bool = False,
) -> pd.DataFrame:
    """Alerts of `kind`, newest first, filtered by date, battery or car.

    The filters go to delta-rs, which skips the files that cannot match.
    """
    filters = alert_filters(kind, since, battery_id, car_id, include_closed)
    if kind == "compliance" and not _has_lifecycle(cfg.storage.table(_TABLES[kind])):
        # A table of an older version: every stored compliance alert is still open.
        filters = [f for f in filters if f[0] != "status"]
    frame = read_table(cfg, _TABLES[kind], filters=filters or None)
    if frame.empty:
        return frame
    order = ["alert_date", "battery_id"] if kind == "battery" else ["written_at", "note_id"]
    return frame.sort_values(order, ascending=[False, True]).reset_index(drop=True)


def _has_lifecycle(location: str) -> bool:
    """Whether the alert table at `location` has the status column (or does not exist)."""
    table = open_table(location)
    return table is None or "status" in {f.name for f in table.schema().fields}


def alert_filters(
    kind: Kind,
    since: dt.date | None = None,
    battery_id: str | None = None,
    car_id: str | None = None,
    include_closed: bool = False,
) -> list[tuple[str, str, Any]]:
    """The delta-rs filters (ANDed) that select the alerts `query_alerts` was asked for."""
    filters: list[tuple[str, str, Any]] = []
    if not include_closed:
        filters.append(("status", "=", "open"))
    if kind == "battery":
        if since is not None:
            filters.append(("alert_date", ">=", since))
        if battery_id is not None:
            filters.append(("battery_id", "=", battery_id))
    elif since is not None:
        # written_at is a UTC timestamp: a note written on `since` or later, UTC.
        midnight = dt.datetime.combine(since, dt.time(), tzinfo=dt.timezone.utc)
        filters.append(("written_at", ">=", midnight))
    if car_id is not None:
        filters.append(("car_id", "=", car_id))
    return filters


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


def acknowledge_alert(
    cfg: PitstopConfig,
    alert_id: str,
    by: str | None = None,
    why: str | None = None,
    kind: Kind | None = None,
) -> int:
    """Close an open alert because an operator acknowledged it (who, why); returns rows
    changed.

    Battery and compliance alerts share the lifecycle (open -> acknowledged, who and why in
    `close_reason`) and the id format; without `kind`, the table holding the id is found.
    Uses delta-rs (no JVM). A concurrent commit by the streaming job is retried; the job's
    own MERGE retries the same way, so neither loses the other's change.
    """
    from deltalake.exceptions import CommitFailedError

    if not re.fullmatch(r"[0-9a-f]{16}", alert_id):
        raise AlertsError(
            f"'{alert_id}' is not an alert id (16 hex characters, see --format json)."
        )
    kinds: list[Kind] = [kind] if kind else ["battery", "compliance"]
    found_table = False
    for each in kinds:
        try:
            changed = _close_alert(cfg.storage.table(_TABLES[each]), alert_id, ack_reason(by, why))
        except CommitFailedError:
            raise AlertsError(
                f"Could not acknowledge {alert_id}: the table kept changing; try again."
            ) from None
        if changed is None:
            continue
        found_table = True
        if changed:
            return changed
    if not found_table:
        location = cfg.storage.table(_TABLES[kinds[0]])
        raise AlertsError(f"No {kinds[0]} alert table at {location} yet.")
    return 0


def ack_reason(by: str | None, why: str | None) -> str:
    """The close reason of an acknowledged alert: `acknowledged[ by WHO][: WHY]`."""
    reason = "acknowledged" + (f" by {by}" if by else "")
    return reason + (f": {why}" if why else "")


@on_commit_conflict
def _close_alert(location: str, alert_id: str, reason: str) -> int | None:
    """Acknowledge the open alert `alert_id` in the table at `location`: rows changed, or
    None when there is no such table."""
    table = open_table(location)
    if table is None:
        return None
    if "status" not in {f.name for f in table.schema().fields}:
        raise AlertsError(
            f"The alert table at {location} predates acknowledgement; start the stream job "
            "once to upgrade it."
        )
    # SQL expressions, not `new_values`: delta-rs pastes a string value between quotes as it
    # is, so an operator's "O'Brien" would break the statement. Timestamps go as
    # microseconds since the epoch, as `new_values` sends them.
    micros = str(int(dt.datetime.now(dt.timezone.utc).timestamp() * 1_000_000))
    result = table.update(
        predicate=f"alert_id = '{alert_id}' AND status = 'open'",
        updates={
            "status": "'acknowledged'",
            "close_reason": sql_string(reason),
            "closed_at": micros,
            "updated_at": micros,
        },
    )
    return int(result.get("num_updated_rows", 0))
