"""Models: registered versions and aliases, offline holdout metrics, live accuracy from
`forecast_accuracy` as actual readings arrive, and each version's model card."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from apps.console import charts, queries
from apps.console.lake_cache import LakeCache
from apps.console.pages.common import chart, refused, state, text_param
from apps.console.registry_reader import RegistryUnavailable
from models.reporting.live_metrics import live_metrics

router = APIRouter()

# The monitor's tables (streaming.tables names them too; importing it would bring pyspark).
FORECAST_ACCURACY, MODEL_HEALTH = "forecast_accuracy", "model_health"

ACCURACY_COLUMNS = ["model_name", "model_version", "model_role", "target_date", "actual", "error"]


def live_view(lake: LakeCache, window_days: int) -> dict[str, Any]:
    """Rolling live accuracy per version (charts and the latest figures)."""
    accuracy = lake.read(FORECAST_ACCURACY, ACCURACY_COLUMNS)
    if accuracy.empty:
        return {"live": [], "nrmse_chart": None, "mae_chart": None}
    metrics = live_metrics(accuracy, window_days)
    return {
        "live": queries.live_summary(metrics).to_dict("records"),
        "nrmse_chart": chart(charts.live_accuracy_chart(metrics, "nrmse")),
        "mae_chart": chart(charts.live_accuracy_chart(metrics, "mae")),
    }


def compare_live(live: list[dict], versions: pd.DataFrame, margin: float) -> list[dict]:
    """Each live row with its version's offline holdout NRMSE and whether live error is
    above it by more than `margin` (a share)."""
    offline = {}
    if not versions.empty:
        for row in versions.itertuples(index=False):
            offline[(row.name, str(row.version))] = getattr(row, "holdout_nrmse", float("nan"))
    rows = []
    for row in live:
        holdout = offline.get((row["model_name"], str(row["model_version"])), float("nan"))
        live_nrmse = row["nrmse"]
        worse = (
            not math.isnan(holdout)
            and live_nrmse is not None
            and not pd.isna(live_nrmse)
            and live_nrmse > holdout * (1 + margin)
        )
        rows.append({**row, "holdout_nrmse": holdout, "worse": worse})
    return rows


def champion_health(lake: LakeCache) -> list[dict]:
    """The monitor's newest verdict on each champion (`model_health`), degraded ones first."""
    latest = queries.latest_health(lake.read(MODEL_HEALTH))
    if latest.empty:
        return []
    return latest.sort_values("status", key=lambda s: s != "degraded").to_dict("records")


@router.get("/models", response_class=HTMLResponse)
def models_page(request: Request) -> HTMLResponse:
    """Registered versions, aliases, offline and live metrics."""
    console = state(request)
    problem = None
    try:
        versions = console.registry.versions()
    except RegistryUnavailable as exc:
        versions, problem = pd.DataFrame(), str(exc)
    monitor = console.cfg.monitor
    live = console.lake.derived(
        "live", [FORECAST_ACCURACY], lambda: live_view(console.lake, monitor.window_days)
    )
    return console.page(
        request,
        "models.html",
        "models",
        problem=problem,
        versions=versions.to_dict("records"),
        live_rows=compare_live(live["live"], versions, monitor.margin),
        margin=monitor.margin,
        window_days=monitor.window_days,
        health=champion_health(console.lake),
        nrmse_chart=live["nrmse_chart"],
        mae_chart=live["mae_chart"],
    )


@router.get("/models/card", response_class=HTMLResponse)
def model_card_page(request: Request, name: str = "", version: str = "") -> HTMLResponse:
    """A version's model card, rendered from its Markdown (raw HTML in it stays text)."""
    from markdown_it import MarkdownIt

    console = state(request)
    name, version = text_param(name) or "", text_param(version) or ""
    if not name or not version.isdigit():
        return refused(request, 400, "Name a registered model and a version number.")
    try:
        card = console.registry.model_card(name, version)
    except RegistryUnavailable as exc:
        return refused(request, 404, str(exc))
    if card is None:
        return refused(request, 404, f"{name} version {version} has no model card.")
    # The card's figures are run artifacts the console does not serve: their lines go.
    text = "\n".join(line for line in card.splitlines() if not line.startswith("!["))
    html = MarkdownIt("commonmark", {"html": False}).enable("table").render(text)
    return console.page(request, "card.html", "models", name=name, version=version, card=html)
