"""Battery: its history, the latest 30-day forecast (with its band where quantiles exist),
the predicted failure date against the rated cycles, its alerts and the model that scored
it."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from apps.console import charts, queries
from apps.console.lake_cache import LakeCache
from apps.console.pages.common import chart, state, text_param
from models.reporting.forecast_plot import (
    BatteryForecastError,
    forecast_from_tables,
    verdict,
)

router = APIRouter()

READING_COLUMNS = [
    "battery_id",
    "car_id",
    "date",
    "daily_cycles_used",
    "lifetime_cycles_used",
    "battery_rated_cycles",
]
# The whole history is drawn; a battery reports once a day, so this is years.
HISTORY_DAYS = 3650
# Forecasts are read from the battery's last days only: files hold a micro-batch's days, so
# the date range prunes all but the newest files (a forecast row carries 30 values).
FORECAST_DAYS = 7


def battery_view(lake: LakeCache, battery_id: str) -> dict[str, Any]:
    """What the battery page shows; `problem` says why there is nothing to show."""
    only = [("battery_id", "=", battery_id)]
    readings = lake.read("telemetry", READING_COLUMNS, only)
    alerts = lake.read("battery_alerts", None, only)
    if readings.empty:
        return {"problem": f"Battery {battery_id} has no readings in telemetry."}
    since = pd.Timestamp(readings["date"].max()).date() - dt.timedelta(days=FORECAST_DAYS)
    forecasts = lake.read("battery_forecasts", None, [*only, ("date", ">=", since)])
    try:
        result = forecast_from_tables(
            readings, forecasts, battery_id, source="telemetry", history_days=HISTORY_DAYS
        )
    except BatteryForecastError as exc:
        return {"problem": str(exc)}
    latest = queries.latest_forecast_row(forecasts)
    shadows = (
        forecasts[forecasts["model_role"] == "shadow"]
        if "model_role" in forecasts.columns
        else forecasts.iloc[0:0]
    )
    if result is None:
        history = readings.sort_values("date")
        return {
            "problem": None,
            "car_id": str(history["car_id"].iloc[-1]),
            "verdict": "No forecast stored for this battery yet.",
            "readings": len(readings),
            "first_day": history["date"].iloc[0],
            "last_day": history["date"].iloc[-1],
            "history_chart": chart(charts.history_chart(history)),
            "alerts": _alert_rows(alerts),
        }
    quantiles = queries.quantile_columns(forecasts.columns)
    band = queries.forecast_band(latest, quantiles) if latest is not None else ("", [], [])
    alert_days = [pd.Timestamp(d) for d in alerts.get("alert_date", [])]
    daily, total = charts.battery_charts(result, band, alert_days)
    return {
        "problem": None,
        "car_id": result.car_id,
        "verdict": verdict(result),
        "readings": len(readings),
        "first_day": readings["date"].min(),
        "last_day": readings["date"].max(),
        "daily_chart": chart(daily),
        "total_chart": chart(total),
        "model": result.model,
        "scored_at": None if latest is None else latest.get("scored_at"),
        "risk": None if latest is None else latest.get("failure_risk"),
        "band": band[0],
        "shadow_models": sorted(
            {f"{r.model_name} v{r.model_version}" for r in shadows.itertuples(index=False)}
        ),
        "alerts": _alert_rows(alerts),
    }


def _alert_rows(alerts: pd.DataFrame) -> list[dict]:
    if alerts.empty:
        return []
    return alerts.sort_values("alert_date", ascending=False).to_dict("records")


@router.get("/battery", response_class=HTMLResponse)
def battery_page(request: Request, battery_id: str | None = None) -> HTMLResponse:
    """One battery; without an id, a form to choose one."""
    console = state(request)
    wanted = text_param(battery_id)
    if wanted is None:
        return console.page(request, "battery.html", "fleet", battery_id=None, problem=None)
    view = console.lake.derived(
        f"battery|{wanted}",
        ["telemetry", "battery_forecasts", "battery_alerts"],
        lambda: battery_view(console.lake, wanted),
    )
    return console.page(request, "battery.html", "fleet", battery_id=wanted, **view)
