"""Alerts: battery and compliance alerts side by side, filtered by car, battery, status and
date; an operator acknowledges an open alert (who, why) as `pitstop alerts ack` does."""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from apps.alerts import AlertsError, acknowledge_alert
from apps.console import queries
from apps.console.lake_cache import LakeCache
from apps.console.pages.common import (
    TABLE_LIMIT,
    checked_form,
    date_param,
    refused,
    state,
    text_param,
)

log = logging.getLogger(__name__)
router = APIRouter()

STATUSES = ("open", "acknowledged", "replaced", "closed")
FILTERS = ("car", "battery", "status", "since", "until")
NAME_LIMIT, REASON_LIMIT = 80, 300


def compliance_acknowledgeable(compliance: Any) -> bool:
    """Whether compliance alerts carry a lifecycle (a status) to acknowledge them with: a
    table older than the lifecycle has none until the stream job upgrades it."""
    return "status" in getattr(compliance, "columns", ())


def alerts_view(lake: LakeCache, filters: dict[str, Any]) -> dict[str, Any]:
    """Both alert tables, filtered; the battery table soonest failure first."""
    battery = queries.filter_alerts(lake.read("battery_alerts"), **filters)
    if not battery.empty:
        battery = battery.sort_values(
            ["status", "predicted_failure_date", "battery_id"],
            key=lambda c: c.map({"open": 0}).fillna(1) if c.name == "status" else c,
            na_position="last",
        )
    compliance_filters = {k: v for k, v in filters.items() if k != "battery"}
    compliance = queries.filter_alerts(
        lake.read("compliance_alerts"), date_column="written_at", **compliance_filters
    )
    if not compliance.empty:
        compliance = compliance.sort_values("written_at", ascending=False)
    return {
        "battery_alerts": battery.head(TABLE_LIMIT).to_dict("records"),
        "battery_count": len(battery),
        "compliance_alerts": compliance.head(TABLE_LIMIT).to_dict("records"),
        "compliance_count": len(compliance),
        "compliance_ack": compliance_acknowledgeable(compliance),
    }


@router.get("/alerts", response_class=HTMLResponse)
def alerts_page(
    request: Request,
    car: str | None = None,
    battery: str | None = None,
    status: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> HTMLResponse:
    """Alerts with filters and, for a logged-in operator, acknowledgement forms."""
    console = state(request)
    since_day, since_problem = date_param(since)
    until_day, until_problem = date_param(until)
    chosen_status = status if status in STATUSES else None
    filters = {
        "car": text_param(car),
        "battery": text_param(battery),
        "status": chosen_status,
        "since": since_day,
        "until": until_day,
    }
    view = console.lake.derived(
        f"alerts|{sorted(filters.items())!r}",
        ["battery_alerts", "compliance_alerts"],
        lambda: alerts_view(console.lake, filters),
    )
    shown = {k: ("" if v is None else str(v)) for k, v in filters.items()}
    return console.page(
        request,
        "alerts.html",
        "alerts",
        filters=shown,
        statuses=STATUSES,
        problems=[p for p in (since_problem, until_problem) if p],
        limit=TABLE_LIMIT,
        back=_back_url(shown),
        **view,
    )


@router.post("/alerts/ack")
async def acknowledge(request: Request) -> Response:
    """Acknowledge one open alert: a logged-in session's own form, with who and why."""
    console = state(request)
    form, refusal = await checked_form(request, write=True)
    if refusal is not None:
        return refusal
    alert_id = str(form.get("alert_id", ""))
    kind = str(form.get("kind", "battery"))
    who = _one_line(form.get("by"), NAME_LIMIT)
    why = _one_line(form.get("why"), REASON_LIMIT)
    if kind not in ("battery", "compliance"):
        return refused(request, 400, "An alert is a battery or a compliance alert.")
    if not who or not why:
        return refused(request, 400, "Say who acknowledges the alert and why.")
    try:
        changed = await run_in_threadpool(
            acknowledge_alert, console.cfg, alert_id, by=who, why=why, kind=kind
        )
    except AlertsError as exc:
        return refused(request, 400, str(exc))
    log.info("%s alert %s acknowledged by %s in the console", kind.capitalize(), alert_id, who)
    request.session["flash"] = (
        f"Alert {alert_id} acknowledged by {who}."
        if changed
        else f"Alert {alert_id} was not open any more; nothing changed."
    )
    return RedirectResponse(_safe_back(str(form.get("back", ""))), status_code=303)


def _one_line(value: Any, limit: int) -> str:
    """Free text from a form: whitespace (newlines too) collapsed, bounded."""
    return re.sub(r"\s+", " ", str(value or "")).strip()[:limit]


def _back_url(filters: dict[str, str]) -> str:
    query = urlencode({k: v for k, v in filters.items() if v})
    return "/alerts" + (f"?{query}" if query else "")


def _safe_back(back: str) -> str:
    """Back to the alerts page the form was on; never anywhere else."""
    return back if re.fullmatch(r"/alerts(\?[A-Za-z0-9_=&%+.\-]*)?", back) else "/alerts"
