"""Stream: the last micro-batch, input and processing rates, lag per partition, batch
duration and event-to-alert latency -- from the job's Prometheus endpoint when it answers,
else from its checkpoint and the broker's end offsets."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import pandas as pd
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from apps.console import charts, queries
from apps.console.pages.common import chart, state
from apps.console.stream_status import (
    MetricFamily,
    batch_history,
    histogram_quantile,
    last_committed,
    metrics_port,
    scrape_metrics,
)

if TYPE_CHECKING:
    from apps.console.app import ConsoleState

log = logging.getLogger(__name__)
router = APIRouter()


def metrics_view(families: dict[str, MetricFamily]) -> dict[str, Any]:
    """The job's own figures, and every pitstop_* sample for the table below them."""

    def gauge(name: str) -> float | None:
        # Prometheus' parser names a counter's family without `_total`, an info's without
        # `_info`; the samples keep them.
        family = families.get(name) or families.get(name.removesuffix("_total"))
        if family is None:
            return None
        for suffix in ("", "_total"):
            value = family.value(suffix)
            if value is not None:
                return value
        return None

    def quantiles(name: str) -> dict[str, float | None]:
        family = families.get(name)
        if family is None:
            return {}
        if family.kind == "histogram":
            return {f"p{int(q * 100)}": histogram_quantile(family, q) for q in (0.5, 0.95, 0.99)}
        if family.kind == "summary":
            return {
                f"p{int(float(labels['quantile']) * 100)}": value
                for name_, labels, value in family.samples
                if name_ == family.name and "quantile" in labels
            }
        return {"last": family.value()}

    lag = families.get("pitstop_kafka_lag")
    quarantined = families.get("pitstop_quarantined")
    # An Info metric reaches the text format as a gauge named `..._info`.
    version = families.get("pitstop_model_version_info") or families.get("pitstop_model_version")
    samples = [
        {"name": name, "labels": ", ".join(f"{k}={v}" for k, v in labels.items()), "value": value}
        for family in families.values()
        for name, labels, value in family.samples
    ]
    lag_frame = pd.DataFrame(
        [("", int(p), 0, 0, int(v)) for p, v in (lag.by_label("partition") if lag else {}).items()],
        columns=["topic", "partition", "committed", "end", "lag"],
    )
    return {
        "input_rate": gauge("pitstop_input_rows_per_second"),
        "processed_rate": gauge("pitstop_processed_rows_per_second"),
        "batch_duration": quantiles("pitstop_batch_duration_seconds"),
        "event_to_alert": quantiles("pitstop_event_to_alert_seconds"),
        "opened": gauge("pitstop_alerts_opened_total"),
        "closed": gauge("pitstop_alerts_closed_total"),
        "model_versions": [labels for _, labels, _ in version.samples] if version else [],
        "metric_lag_chart": chart(charts.lag_chart(lag_frame)) if len(lag_frame) else None,
        "quarantine_chart": chart(
            charts.labelled_bar(
                quarantined.by_label("reason", "_total"), "Quarantined by reason", "messages"
            )
        )
        if quarantined
        else None,
        "samples": samples,
    }


def checkpoint_view(console: ConsoleState) -> dict[str, Any]:
    """What the job's checkpoint and the broker say (no job needed)."""
    cfg = console.cfg
    checkpoint = cfg.storage.checkpoint(cfg.stream.query_name)
    batches = queries.batch_rates(batch_history(checkpoint))
    committed = last_committed(checkpoint)
    ends, broker_problem = console.end_offsets.get(
        [cfg.kafka.topics.telemetry, cfg.kafka.topics.notes]
    )
    lag = queries.lag_per_partition(committed, ends)
    latency = console.lake.derived(
        "latency", ["battery_alerts", "telemetry"], lambda: _table_latency(console)
    )
    last = batches.iloc[-1].to_dict() if len(batches) else None
    return {
        "checkpoint": checkpoint,
        "last_batch": last,
        "batches": len(batches),
        "batch_chart": chart(charts.batch_chart(batches)) if len(batches) else None,
        "lag": lag.to_dict("records"),
        "total_lag": int(lag["lag"].sum()) if len(lag) else None,
        "lag_chart": chart(charts.lag_chart(lag)) if len(lag) else None,
        "broker_problem": broker_problem,
        "committed": committed,
        "table_latency": latency,
    }


def _table_latency(console: ConsoleState, recent: int = 200) -> dict[str, float] | None:
    """Event-to-alert latency of the `recent` newest alerts, from the tables."""
    alerts = console.lake.read("battery_alerts", ["battery_id", "alert_date", "created_at"])
    if alerts.empty:
        return None
    newest = alerts.sort_values("created_at").tail(recent)
    ids = sorted(newest["battery_id"].astype(str).unique())
    readings = console.lake.read(
        "telemetry", ["battery_id", "date", "kafka_timestamp"], [("battery_id", "in", ids)]
    )
    seconds = queries.alert_latency(newest, readings)
    if seconds.empty:
        return None
    return {"p50": seconds.quantile(0.5), "p95": seconds.quantile(0.95), "alerts": len(seconds)}


@router.get("/stream", response_class=HTMLResponse)
def stream_page(request: Request) -> HTMLResponse:
    """The stream job's progress and health."""
    console = state(request)
    url = f"http://127.0.0.1:{metrics_port(console.cfg)}/metrics"
    families = scrape_metrics(url)
    return console.page(
        request,
        "stream.html",
        "stream",
        metrics_url=url,
        metrics=metrics_view(families) if families is not None else None,
        **checkpoint_view(console),
    )
