"""`pitstop monitor`: forecast accuracy as actual readings arrive, and the champion's health."""

from __future__ import annotations

from typing import Annotated

import typer

from apps.commands.common import config, console, spark_session


def monitor(
    once: Annotated[
        bool, typer.Option(help="pair what telemetry holds now, then stop (a scheduled run)")
    ] = False,
) -> None:
    """Pair stored forecasts with the readings that arrived for their days (forecast_accuracy),
    and check the champion's live accuracy against its holdout (model_health)."""
    from streaming.monitor.flow import run_monitor

    cfg = config()
    spark = spark_session(cfg, app_name="pitstop-monitor")
    try:
        run_monitor(spark, cfg, once=once)
    finally:
        spark.stop()
    if once:
        from core.lake import count_rows

        rows = count_rows(cfg, "forecast_accuracy")
        console.print(
            f"{rows:,} forecast accuracy rows in {cfg.storage.table('forecast_accuracy')}"
        )
