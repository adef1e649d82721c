"""The console's charts: Plotly figures built from the pages' frames, sent as JSON.

The browser draws them with the plotly.js bundled in the `plotly` package, which the
console serves itself (no CDN). Pure: frames in, figure JSON out.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from models.reporting.forecast_plot import BatteryForecast

HEIGHT = 300
COLORS = {
    "open": "#d62728",
    "acknowledged": "#1f77b4",
    "replaced": "#7f7f7f",
    "closed": "#2ca02c",
    "actual": "#1f77b4",
    "forecast": "#ff7f0e",
    "rated": "#d62728",
}


def _layout(fig: go.Figure, title: str, height: int = HEIGHT, **axes: str) -> go.Figure:
    fig.update_layout(
        title={"text": title, "font": {"size": 14}},
        template="plotly_white",
        height=height,
        margin={"l": 55, "r": 20, "t": 40, "b": 40},
        legend={"orientation": "h", "y": -0.2},
        xaxis_title=axes.get("x", ""),
        yaxis_title=axes.get("y", ""),
    )
    return fig


def to_json(fig: go.Figure) -> str:
    """The figure as JSON safe to place inside a <script type="application/json"> element
    (no `<`, `>` or `&` that could end it early)."""
    text = fig.to_json()
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def status_chart(counts: pd.DataFrame) -> go.Figure:
    """Alerts per status."""
    colors = [COLORS.get(s, "#9467bd") for s in counts["status"]]
    fig = go.Figure(go.Bar(x=counts["status"], y=counts["alerts"], marker_color=colors))
    return _layout(fig, "Alerts by status", y="alerts")


def opened_chart(opened: pd.DataFrame) -> go.Figure:
    """Alerts opened per day (by the date of the reading that triggered them)."""
    fig = go.Figure(go.Bar(x=opened["day"], y=opened["opened"], marker_color=COLORS["open"]))
    return _layout(fig, "Alerts opened per day (reading date)", y="alerts")


def bucket_labels(buckets: pd.Series) -> list[str]:
    """Time buckets as labels of a category axis: a few buckets (often one, right after a
    demo) would otherwise get a time axis zoomed in to fractions of a second."""
    stamps = pd.to_datetime(buckets)
    daily = bool(len(stamps)) and bool((stamps == stamps.dt.normalize()).all())
    return stamps.dt.strftime("%Y-%m-%d" if daily else "%Y-%m-%d %H:%M").tolist()


def _category_x(fig: go.Figure) -> go.Figure:
    fig.update_xaxes(type="category", categoryorder="category ascending", nticks=12)
    return fig


def quarantine_rate_chart(rates: pd.DataFrame) -> go.Figure:
    """Share of messages quarantined per ingest-time bucket."""
    fig = go.Figure(
        go.Bar(
            x=bucket_labels(rates["bucket"]),
            y=rates["rate"] * 100,
            customdata=rates[["quarantined", "stored"]].to_numpy(),
            hovertemplate="%{y:.2f}%: %{customdata[0]} quarantined, %{customdata[1]} stored",
            name="quarantined",
            marker_color=COLORS["open"],
        )
    )
    fig.update_yaxes(rangemode="tozero")
    return _layout(_category_x(fig), "Quarantine rate (ingest time)", y="% of messages")


def quarantine_reason_chart(counts: pd.DataFrame) -> go.Figure:
    """Quarantined messages per ingest-time bucket, stacked by reason."""
    fig = go.Figure()
    for reason, part in counts.groupby("reason", sort=True):
        fig.add_bar(x=bucket_labels(part["bucket"]), y=part["count"], name=str(reason))
    fig.update_layout(barmode="stack")
    return _layout(_category_x(fig), "Quarantined messages by reason (ingest time)", y="messages")


def battery_charts(
    result: BatteryForecast,
    band: tuple[str, list[float], list[float]],
    alert_dates: list[pd.Timestamp],
) -> tuple[go.Figure, go.Figure]:
    """Daily cycles (history, forecast, its band) and lifetime cycles against the rating,
    with the predicted failure date and the battery's alerts."""
    history, dates = result.history, result.forecast_dates
    observed = history[history["observed"].astype(bool)]
    daily = go.Figure()
    daily.add_bar(
        x=observed["date"],
        y=observed["daily_cycles_used"],
        name="cycles used (actual)",
        marker_color=COLORS["actual"],
    )
    label, low, high = band
    if low and high:
        daily.add_scatter(x=dates, y=high, mode="lines", line={"width": 0}, showlegend=False)
        daily.add_scatter(
            x=dates,
            y=low,
            mode="lines",
            line={"width": 0},
            fill="tonexty",
            fillcolor="rgba(255,127,14,0.2)",
            name=label,
        )
    daily.add_scatter(
        x=dates,
        y=result.forecast,
        mode="lines+markers",
        name=f"forecast, next {len(result.forecast)} days",
        line={"color": COLORS["forecast"]},
        marker={"size": 4},
    )
    _layout(
        daily, f"Daily cycles: forecast by {result.model} on {result.origin:%Y-%m-%d}", y="cycles"
    )

    rated = result.battery_rated_cycles
    total = go.Figure()
    total.add_scatter(
        x=history["date"],
        y=history["lifetime_cycles_used"],
        mode="lines",
        name="lifetime cycles (actual)",
        line={"color": COLORS["actual"]},
    )
    total.add_scatter(
        x=[result.origin, *dates],
        y=[result.lifetime_cycles_used, *result.projected_lifetime],
        mode="lines",
        name="lifetime cycles (forecast)",
        line={"color": COLORS["forecast"], "dash": "dash"},
    )
    total.add_hline(
        y=rated,
        line={"color": COLORS["rated"], "width": 1.5},
        annotation_text=f"rated cycles ({rated:,.0f})",
        annotation_position="bottom left",
    )
    if result.predicted_failure_date is not None:
        when = result.predicted_failure_date
        total.add_scatter(
            x=[when],
            y=[rated],
            mode="markers+text",
            marker={"color": COLORS["rated"], "size": 10, "symbol": "x"},
            text=[f"reaches rating {when:%Y-%m-%d}"],
            textposition="top left",
            name="predicted failure",
        )
    if alert_dates:
        total.add_scatter(
            x=alert_dates,
            y=[rated] * len(alert_dates),
            mode="markers",
            marker={"color": COLORS["open"], "size": 9, "symbol": "triangle-down"},
            name="alert opened",
        )
    _layout(total, "Lifetime cycles against the rating", height=340, y="cycles")
    return daily, total


def live_accuracy_chart(metrics: pd.DataFrame, value: str = "nrmse") -> go.Figure:
    """Rolling live error per model version and role, by target day (`live_metrics` rows)."""
    fig = go.Figure()
    for (name, version, role), part in metrics.groupby(
        ["model_name", "model_version", "model_role"], sort=True
    ):
        fig.add_scatter(
            x=part["day"],
            y=part[value],
            mode="lines+markers",
            name=f"{name} v{version} ({role})",
            line={"dash": "solid" if role == "champion" else "dot"},
        )
    window = int(metrics["window_days"].iloc[0]) if "window_days" in metrics and len(metrics) else 7
    return _layout(fig, f"Live {value.upper()} (rolling {window} days)", y=value.upper())


def _bars_and_lines(
    x: pd.Series, bars: tuple[str, pd.Series], lines: list[tuple[str, pd.Series]], right: str
) -> go.Figure:
    """Bars on the left axis and lines (those with any value) on a right axis titled
    `right`, over the same x."""
    fig = go.Figure()
    fig.add_bar(x=x, y=bars[1], name=bars[0])
    drawn = [(name, values) for name, values in lines if pd.Series(values).notna().any()]
    for name, values in drawn:
        fig.add_scatter(x=x, y=values, mode="lines+markers", name=name, yaxis="y2")
    if drawn:
        fig.update_layout(
            yaxis2={"overlaying": "y", "side": "right", "title": right, "rangemode": "tozero"}
        )
    return fig


def batch_chart(batches: pd.DataFrame) -> go.Figure:
    """Micro-batch durations, and rows per second processed and arriving."""
    fig = _bars_and_lines(
        batches["batch"],
        ("batch duration (s)", batches["duration_s"]),
        [
            ("processed rows/s", batches["processed_per_s"]),
            ("input rows/s", batches["input_per_s"]),
        ],
        "rows/s",
    )
    fig.update_xaxes(tickformat="d", dtick=max(1, len(batches) // 10))
    return _layout(fig, "Committed micro-batches (checkpoint)", x="batch", y="seconds")


def lag_chart(lag: pd.DataFrame) -> go.Figure:
    """Messages waiting per topic partition."""
    labels = [f"{t}[{p}]" for t, p in zip(lag["topic"], lag["partition"], strict=True)]
    fig = go.Figure(go.Bar(x=labels, y=lag["lag"]))
    fig.update_yaxes(rangemode="tozero", range=None if lag["lag"].any() else [0, 1])
    return _layout(fig, "Lag per partition", y="messages")


def labelled_bar(values: dict[str, float], title: str, y: str) -> go.Figure:
    """A bar per label (e.g. quarantined messages per reason from the metrics endpoint)."""
    fig = go.Figure(go.Bar(x=list(values), y=list(values.values())))
    fig.update_yaxes(rangemode="tozero")
    return _layout(fig, title, y=y)


def history_chart(readings: pd.DataFrame) -> go.Figure:
    """A battery's daily and lifetime cycles, for one with no stored forecast yet."""
    fig = _bars_and_lines(
        readings["date"],
        ("cycles used", readings["daily_cycles_used"]),
        [("lifetime cycles", readings["lifetime_cycles_used"])],
        "lifetime",
    )
    return _layout(fig, "History", y="cycles per day")
