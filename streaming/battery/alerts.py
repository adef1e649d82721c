"""Battery alert decisions, in pandas: a micro-batch's signals against the open alerts.

The driver receives only bounded control data -- the champion's forecasts that trigger an
alert and the first reading of each battery new to the stream -- and plans the alert
table's changes as rows keyed by `alert_id`, for one keyed MERGE:

- a battery predicted to fail within `alert_within_days - alert_margin_days` opens one alert
  (id: battery and first triggering date) or refreshes the forecast of its open alert; an
  acknowledged battery gets no new alert until it is replaced;
- a battery new to a car closes the car's open alerts of other batteries that opened on or
  before its first reading (`replaced`); one replaced within the same micro-batch is opened
  closed, and not published.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

import pandas as pd

from streaming.tables import ALERT_SCHEMA

ALERT_COLUMNS = ALERT_SCHEMA.fieldNames()
# What a refresh may change on an open alert (its opening fields stay).
REFRESHED = (
    "predicted_failure_date",
    "days_to_failure",
    "last_reading_date",
    "lifetime_cycles_used",
    "battery_rated_cycles",
    "model_name",
    "model_version",
    "message",
)
UPDATED = (*REFRESHED, "status", "close_reason", "closed_at", "updated_at")
INSERT, UPDATE = "insert", "update"
# A candidate alert: what a batch's forecasts say about one battery.
FOUND_COLUMNS = ("alert_id", "battery_id", "car_id", "alert_date", *REFRESHED)
TRIGGER_COLUMNS = (
    "battery_id",
    "car_id",
    "date",
    "predicted_failure_date",
    "days_to_failure",
    "lifetime_cycles_used",
    "battery_rated_cycles",
    "model_name",
    "model_version",
)


def alert_id(battery_id: str, alert_date: dt.date) -> str:
    """An alert's id: its opening (battery and first triggering date), 16 hex characters."""
    return hashlib.sha256(f"{battery_id}|{alert_date.isoformat()}".encode()).hexdigest()[:16]


def alert_message(predicted_failure_date: dt.date) -> str:
    """What the car's owner reads."""
    day = f"{predicted_failure_date.day} {predicted_failure_date.strftime('%B %Y')}"
    return (
        f"Your car's battery is predicted to reach the end of its life around {day}. "
        "Please book a service appointment before then."
    )


def alerts_from_triggers(triggers: pd.DataFrame) -> pd.DataFrame:
    """One candidate alert per battery in `triggers` (forecasts that say it fails in time).

    `alert_date` is the battery's earliest triggering reading of the batch; the forecast
    fields come from its latest.
    """
    if triggers.empty:
        return pd.DataFrame(columns=FOUND_COLUMNS)
    ordered = triggers.sort_values(["battery_id", "date"], kind="stable")
    first = ordered.groupby("battery_id", sort=False)["date"].min()
    latest = ordered.groupby("battery_id", sort=False).tail(1).set_index("battery_id")
    found = pd.DataFrame(
        {
            "battery_id": latest.index,
            "car_id": latest["car_id"].to_numpy(),
            "alert_date": first.reindex(latest.index).to_numpy(),
            "predicted_failure_date": latest["predicted_failure_date"].to_numpy(),
            "days_to_failure": latest["days_to_failure"].to_numpy(),
            "last_reading_date": latest["date"].to_numpy(),
            "lifetime_cycles_used": latest["lifetime_cycles_used"].to_numpy(),
            "battery_rated_cycles": latest["battery_rated_cycles"].to_numpy(),
            "model_name": latest["model_name"].to_numpy(),
            "model_version": latest["model_version"].to_numpy(),
        }
    )
    found.insert(
        0,
        "alert_id",
        [alert_id(b, d) for b, d in zip(found["battery_id"], found["alert_date"], strict=True)],
    )
    found["message"] = [alert_message(d) for d in found["predicted_failure_date"]]
    return found.reset_index(drop=True)


def newest_batteries(arrivals: pd.DataFrame) -> pd.DataFrame:
    """Per car, the battery new to the stream with the latest first reading (car_id index)."""
    if arrivals.empty:
        return pd.DataFrame(columns=["battery_id", "first_date"]).rename_axis("car_id")
    ordered = arrivals.sort_values(["car_id", "date", "battery_id"], ascending=[True, False, True])
    newest = ordered.groupby("car_id", sort=False).head(1)
    return newest.set_index("car_id")[["battery_id", "date"]].rename(columns={"date": "first_date"})


@dataclass(frozen=True)
class AlertChanges:
    """MERGE source rows (ALERT_COLUMNS plus `_op`), and the openings to publish."""

    rows: pd.DataFrame
    openings: pd.DataFrame

    @property
    def empty(self) -> bool:
        return self.rows.empty

    @property
    def closed(self) -> int:
        """Open alerts this change closes (their battery was replaced)."""
        return int(((self.rows["_op"] == UPDATE) & (self.rows["status"] == "closed")).sum())


def plan_alert_changes(
    found: pd.DataFrame,
    arrivals: pd.DataFrame,
    current: pd.DataFrame,
    now: dt.datetime,
) -> AlertChanges:
    """The alert table's changes for one micro-batch.

    `found` holds one candidate alert per battery due to alert (`alerts_from_triggers`),
    `arrivals` the first readings of batteries new to the stream (car_id, battery_id, date),
    `current` the stored alerts of those batteries and cars (ALERT_COLUMNS).
    """
    newest = newest_batteries(arrivals)
    rows: list[dict] = []
    for alert in found.to_dict("records"):
        replaced_on = _replaced_on(newest, alert["car_id"], alert["battery_id"])
        existing = _existing_alert(current, alert["battery_id"], alert["alert_id"])
        if existing is None:
            closed = replaced_on is not None and replaced_on >= alert["alert_date"]
            rows.append(
                {
                    **alert,
                    "status": "closed" if closed else "open",
                    "created_at": now,
                    "updated_at": now,
                    "closed_at": now if closed else None,
                    "close_reason": "replaced" if closed else None,
                    "published_at": None,
                    "_op": INSERT,
                }
            )
        elif existing["status"] == "open":
            closed = replaced_on is not None and replaced_on >= existing["alert_date"]
            row = {**existing, **{c: alert[c] for c in REFRESHED}, "updated_at": now}
            if closed:
                row.update(status="closed", close_reason="replaced", closed_at=now)
            rows.append({**row, "_op": UPDATE})
    alerting = set(found["battery_id"])
    for car_id, newest_row in newest.iterrows():
        open_here = current[
            (current["car_id"] == car_id)
            & (current["status"] == "open")
            & (current["battery_id"] != newest_row["battery_id"])
            & ~current["battery_id"].isin(alerting)
            & (current["alert_date"] <= newest_row["first_date"])
        ]
        for existing in open_here.to_dict("records"):
            rows.append(
                {
                    **existing,
                    "status": "closed",
                    "close_reason": "replaced",
                    "closed_at": now,
                    "updated_at": now,
                    "_op": UPDATE,
                }
            )
    frame = pd.DataFrame(rows, columns=[*ALERT_COLUMNS, "_op"])
    opened = (frame["_op"] == INSERT) & (frame["status"] == "open")
    return AlertChanges(frame, frame.loc[opened, ALERT_COLUMNS].reset_index(drop=True))


def _replaced_on(newest: pd.DataFrame, car_id: str, battery_id: str) -> dt.date | None:
    if car_id not in newest.index or newest.at[car_id, "battery_id"] == battery_id:
        return None
    return newest.at[car_id, "first_date"]


def _existing_alert(current: pd.DataFrame, battery_id: str, wanted_id: str) -> dict | None:
    """The battery's open or acknowledged alert, or a stored one with this very id."""
    mine = current[current["battery_id"] == battery_id]
    for status in ("open", "acknowledged"):
        match = mine[mine["status"] == status]
        if not match.empty:
            return match.iloc[0].to_dict()
    same = mine[mine["alert_id"] == wanted_id]
    return None if same.empty else same.iloc[0].to_dict()
