"""Quarantine: rejected messages by reason over time, each raw payload shown as text, and
the whole table (or one reason) as CSV."""

from __future__ import annotations

import csv
import io
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from apps.console import charts, queries
from apps.console.lake_cache import LakeCache
from apps.console.pages.common import TABLE_LIMIT, chart, state, text_param

router = APIRouter()

COLUMNS = [
    "reason",
    "source",
    "key",
    "topic",
    "partition",
    "offset",
    "kafka_timestamp",
    "ingested_at",
    "payload_text",
]
PAYLOAD_SHOWN = 2000  # characters of a payload on the page; the CSV has all of it
# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def quarantine_view(lake: LakeCache, reason: str | None) -> dict[str, Any]:
    """Counts by reason over time and the newest rejected messages (of `reason`)."""
    everything = lake.read("quarantine", COLUMNS)
    rows = everything if reason is None else everything[everything["reason"] == reason]
    counts = queries.quarantine_by_reason(rows)
    latest = queries.latest_quarantine(rows, TABLE_LIMIT)
    shown = []
    for record in latest.to_dict("records"):
        text = record.get("payload_text") or ""
        record["payload_shown"] = text[:PAYLOAD_SHOWN]
        record["payload_more"] = max(len(text) - PAYLOAD_SHOWN, 0)
        shown.append(record)
    return {
        "reasons": sorted(everything["reason"].dropna().unique().tolist())
        if not everything.empty
        else [],
        "count": len(rows),
        "rows": shown,
        "reason_chart": chart(charts.quarantine_reason_chart(counts)) if len(counts) else None,
    }


def quarantine_csv(frame: Any) -> str:
    """The rows as CSV; a cell a spreadsheet would run as a formula gets a leading `'`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    for row in frame[COLUMNS].itertuples(index=False):
        writer.writerow([_inert(value) for value in row])
    return buffer.getvalue()


def _inert(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


@router.get("/quarantine", response_class=HTMLResponse)
def quarantine_page(request: Request, reason: str | None = None) -> HTMLResponse:
    """Quarantined messages, newest first."""
    console = state(request)
    chosen = text_param(reason)
    view = console.lake.derived(
        f"quarantine|{chosen}", ["quarantine"], lambda: quarantine_view(console.lake, chosen)
    )
    return console.page(
        request, "quarantine.html", "quarantine", reason=chosen or "", limit=TABLE_LIMIT, **view
    )


@router.get("/quarantine.csv")
def quarantine_download(request: Request, reason: str | None = None) -> Response:
    """Every quarantined message (of `reason`) as CSV."""
    console = state(request)
    chosen = text_param(reason)
    frame = console.lake.read("quarantine", COLUMNS, [("reason", "=", chosen)] if chosen else None)
    frame = queries.latest_quarantine(frame, limit=len(frame) or 1)
    return Response(
        quarantine_csv(frame),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="quarantine.csv"'},
    )
