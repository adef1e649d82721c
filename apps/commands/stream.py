"""`pitstop stream|replay|score|maintain`: the streaming job and the jobs built from its code."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from apps.commands.alerts import print_alerts
from apps.commands.common import OutputFormat, config, console, spark_session


def stream(
    available_now: Annotated[
        bool, typer.Option(help="process what is in the topic, then stop")
    ] = False,
) -> None:
    """Run the streaming job with spark-submit (Ctrl-C stops it after the current batch)."""
    from streaming.submit import config_environment, run_forwarding_signals, spark_submit_command

    cfg = config()
    command = spark_submit_command(cfg, ["--available-now"] if available_now else [])
    raise typer.Exit(run_forwarding_signals(command, config_environment(cfg)))


def replay(
    path: Annotated[Path, typer.Argument(help="recorded JSONL, a lab-schema CSV, or a folder")],
    output: Annotated[Path, typer.Option(help="where the replay's tables go")] = Path(
        ".pitstop/replay"
    ),
    model: Annotated[
        str | None, typer.Option(help="models:/NAME/VERSION or models:/NAME@ALIAS")
    ] = None,
    closed: Annotated[bool, typer.Option(help="also print alerts closed during the replay")] = (
        False
    ),
    fmt: Annotated[OutputFormat, typer.Option("--format", help="table, csv or json")] = (
        OutputFormat.table
    ),
) -> None:
    """Run the streaming pipeline over a recording (file source, availableNow); print alerts."""
    from apps.alerts import query_alerts
    from streaming.replay import run_replay

    if not path.exists():  # before Spark starts, not half a minute later
        raise FileNotFoundError(f"{path} does not exist.")
    cfg = config()
    spark = spark_session(cfg)
    rcfg = run_replay(spark, cfg, path, output, model)
    print_alerts(query_alerts(rcfg, "battery", include_closed=closed), "battery", fmt.value)


def score(
    path: Annotated[Path, typer.Argument(help="a Delta telemetry table, JSONL or lab CSV")],
    output: Annotated[Path, typer.Option(help="where forecasts and alerts go")] = Path(
        ".pitstop/score"
    ),
    model: Annotated[
        str | None, typer.Option(help="models:/NAME/VERSION or models:/NAME@ALIAS")
    ] = None,
) -> None:
    """Score readings as one batch job with the stream's own code (backfills)."""
    from core.lake import count_rows
    from streaming.replay import run_batch_score

    cfg = config()
    rcfg = run_batch_score(spark_session(cfg), cfg, path, output, model)
    forecasts = count_rows(rcfg, "battery_forecasts")
    console.print(f"{forecasts:,} forecasts written to {rcfg.storage.table('battery_forecasts')}")


def maintain(
    vacuum_hours: Annotated[
        float, typer.Option(help="VACUUM keeps unreferenced files younger than this (>= 168)")
    ] = 168.0,
    vacuum: Annotated[bool, typer.Option(help="VACUUM after compacting")] = True,
) -> None:
    """Compact the Delta tables' small files and VACUUM old ones (safe while the stream runs)."""
    from streaming.maintenance import maintain_tables

    cfg = config()
    spark = spark_session(cfg)
    with console.status("Compacting the Delta tables"):
        done = maintain_tables(spark, cfg, vacuum_hours if vacuum else None)
    table = Table("table", "files before", "files after", "vacuumed")
    for upkeep in done:
        table.add_row(
            upkeep.table,
            f"{upkeep.files_before:,}",
            f"{upkeep.files_after:,}",
            f"older than {vacuum_hours:g} h" if upkeep.vacuumed else "no",
        )
    console.print(table if done else f"No Pitstop tables under {cfg.storage.lake} yet.")
