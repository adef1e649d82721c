"""`pitstop forecast BATTERY_ID`: one battery's recent use, its 30-day forecast and the date it
is predicted to reach its rated cycles, printed and drawn.

From the Delta tables (telemetry and the stream's latest `battery_forecasts` row), or from a
lab-schema CSV / simulator folder forecast on the spot with the registered champion. The
pure parts (`models.reporting.forecast_plot`) build a `BatteryForecast`; the command only
reads, calls and prints.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

from apps.commands.common import one_sentence_errors, quiet_mlflow
from models.reporting.forecast_plot import (
    HISTORY_DAYS,
    BatteryForecast,
    BatteryForecastError,
    battery_readings,
    default_plot_path,
    forecast_from_readings,
    forecast_from_tables,
    plot_battery_forecast,
    verdict,
    weekly_table,
)

log = logging.getLogger(__name__)

console = Console()


@one_sentence_errors
def forecast_command(
    battery_id: Annotated[str, typer.Argument(help="battery_id to show")],
    data: Annotated[
        str | None,
        typer.Option(
            help="lab-schema CSV or simulator folder to forecast from with the model "
            "(default: the Delta telemetry and battery_forecasts tables)"
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="model URI to forecast with (default: the stream's stored forecast, else "
            "models:/<forecast.model>@<alias>)"
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="PNG to write (default: battery-<id>-forecast.png)")
    ] = None,
    days: Annotated[int, typer.Option(min=7, help="days of history to show")] = HISTORY_DAYS,
) -> None:
    """Show a battery's recent use, its 30-day forecast and its predicted failure date."""
    from core.config import load_config

    cfg = load_config()
    if data is None:
        result = _from_delta(cfg, battery_id, model, days)
    else:
        from models.forecasting.data import load_readings

        readings = load_readings(data)
        battery_readings(readings, battery_id, data)  # fail fast, before loading a model
        result = _forecast_with_model(cfg, readings, battery_id, model, data, days)
    path = out or default_plot_path(battery_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    plot_battery_forecast(result).savefig(path)
    _print_result(result, path)


def _from_delta(cfg: Any, battery_id: str, model: str | None, days: int) -> BatteryForecast:
    """The battery's readings and stored forecasts, read with delta-rs filtered to it."""
    from core.lake import read_table

    mine = [("battery_id", "=", str(battery_id))]
    source = f"the Delta tables under {cfg.storage.lake}"
    telemetry = read_table(cfg, "telemetry", filters=mine)
    if telemetry.empty:
        known = read_table(cfg, "telemetry", columns=["battery_id"])
        if known.empty:
            raise BatteryForecastError(
                f"There is no telemetry at {cfg.storage.table('telemetry')} yet; run "
                "`pitstop demo` or `pitstop stream`, or pass --data with a CSV or simulator "
                "folder."
            )
        battery_readings(known, battery_id, source)  # names the batteries there are instead
    if model is None:
        forecasts = read_table(cfg, "battery_forecasts", filters=mine)
        result = forecast_from_tables(
            telemetry, forecasts, battery_id, source=source, history_days=days
        )
        if result is not None:
            return result
        log.info("Battery %s has no stored forecast yet; forecasting it now", battery_id)
    return _forecast_with_model(cfg, telemetry, battery_id, model, source, days)


def _forecast_with_model(
    cfg: Any, readings: pd.DataFrame, battery_id: str, model: str | None, source: str, days: int
) -> BatteryForecast:
    from models.forecasting.pyfunc import load_forecaster
    from models.registry import configure_mlflow

    quiet_mlflow()
    configure_mlflow(cfg)
    uri = model or f"models:/{cfg.forecast.model}@{cfg.mlflow.alias}"
    with console.status(f"Loading {uri}"):
        forecaster = load_forecaster(uri, torch_threads=1)
    label = f"{forecaster.name} v{forecaster.version}" if forecaster.version else uri
    return forecast_from_readings(
        readings,
        battery_id,
        forecaster.predict,
        window_days=forecaster.window,
        model=label,
        source=source,
        history_days=days,
    )


def _print_result(result: BatteryForecast, path: Path) -> None:
    car = f" (car {result.car_id})" if result.car_id else ""
    share = 100.0 * result.lifetime_cycles_used / result.battery_rated_cycles
    latest = result.history["date"].iloc[-1]
    console.print(
        f"[bold]Battery {result.battery_id}[/bold]{car}: latest reading {latest:%Y-%m-%d}, "
        f"from {result.source}"
    )
    console.print(
        f"Lifetime cycles {result.lifetime_cycles_used:,.1f} of {result.battery_rated_cycles:,.0f}"
        f" rated ({share:.0f}%) on {result.origin:%Y-%m-%d}"
    )
    total = float(result.forecast.sum())
    console.print(
        f"Forecast by {result.model}: {total:,.1f} cycles over the next {len(result.forecast)} "
        f"days ({total / len(result.forecast):.2f} a day)"
    )
    table = Table(box=None, header_style="bold")
    for column, justify in (("", "left"), ("from", "left"), ("to", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    table.add_column("cycles", justify="right")
    table.add_column("lifetime at end", justify="right")
    for row in weekly_table(result).itertuples(index=False):
        over = row.lifetime_at_end >= result.battery_rated_cycles
        style = "red" if over else ("dim" if row.kind == "actual" else "")
        table.add_row(
            row.kind,
            f"{row.start:%Y-%m-%d}",
            f"{row.end:%Y-%m-%d}",
            f"{row.cycles:,.1f}",
            f"{row.lifetime_at_end:,.1f}",
            style=style,
        )
    console.print(table)
    colour = "red" if result.predicted_failure_date is not None else "green"
    console.print(f"[{colour}]{verdict(result)}[/{colour}]")
    console.print(f"Plot: {path}")
