"""Fleet: open alerts by predicted failure date, alerts by status, openings per day, and
the share of messages quarantined."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from apps.console import charts, queries
from apps.console.lake_cache import LakeCache
from apps.console.pages.common import TABLE_LIMIT, chart, state

router = APIRouter()

ALERT_COLUMNS = [
    "alert_id",
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
]
TABLES = ["battery_alerts", "telemetry", "quarantine", "model_health"]


def fleet_summary(lake: LakeCache) -> dict[str, Any]:
    """Everything the fleet page shows, from the alert, telemetry and quarantine tables."""
    alerts = lake.read("battery_alerts", ALERT_COLUMNS)
    stored = lake.read("telemetry", ["ingested_at"])["ingested_at"]
    rejected = lake.read("quarantine", ["ingested_at"])["ingested_at"]
    rates = queries.quarantine_rate(stored, rejected)
    counts = queries.status_counts(alerts)
    open_alerts = queries.open_alerts_by_failure(alerts)
    health = queries.latest_health(lake.read("model_health"))
    degraded = health[health["status"] == "degraded"] if not health.empty else health
    return {
        "degraded": degraded.to_dict("records"),
        "open_alerts": open_alerts.head(TABLE_LIMIT).to_dict("records"),
        "open_count": len(open_alerts),
        "alert_count": len(alerts),
        "readings": len(stored),
        "quarantined": len(rejected),
        "rate": queries.overall_rate(rates),
        "counts": counts.to_dict("records"),
        "status_chart": chart(charts.status_chart(counts)) if len(counts) else None,
        "opened_chart": chart(charts.opened_chart(queries.alerts_opened_per_day(alerts)))
        if len(alerts)
        else None,
        "rate_chart": chart(charts.quarantine_rate_chart(rates)) if len(rates) else None,
    }


@router.get("/", response_class=HTMLResponse)
def fleet_page(request: Request) -> HTMLResponse:
    """The fleet at a glance."""
    console = state(request)
    summary = console.lake.derived("fleet", TABLES, lambda: fleet_summary(console.lake))
    return console.page(request, "fleet.html", "fleet", limit=TABLE_LIMIT, **summary)
