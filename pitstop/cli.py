"""`pitstop`: the command line. Each command parses options and calls one function.

Heavy modules (Spark, MLflow, torch) are imported inside the commands that need them, so
quick commands such as `pitstop alerts` start in well under a second.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pitstop.config import ENV_NAME_VAR, PitstopConfig, load_config
from pitstop.errors import PitstopError

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Pitstop: predictive maintenance for connected cars, streamed.",
)
broker_app = typer.Typer(no_args_is_help=True, help="The local Apache Kafka broker (KRaft).")
alerts_app = typer.Typer(
    invoke_without_command=True, help="Query alerts (battery or compliance) from Delta."
)
app.add_typer(broker_app, name="broker")
app.add_typer(alerts_app, name="alerts")

# Piped output (logs, CI) gets a readable width instead of rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 120)
err = Console(stderr=True)


class OutputFormat(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


class AlertKind(str, Enum):
    battery = "battery"
    compliance = "compliance"


@app.callback()
def _root(
    env: Annotated[
        str | None, typer.Option(help="configuration environment: local, azure, ...")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log more")] = False,
) -> None:
    if env:
        os.environ[ENV_NAME_VAR] = env
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _config() -> PitstopConfig:
    return load_config()


# --- broker -------------------------------------------------------------------------------


@broker_app.command("start")
def broker_start() -> None:
    """Start the local broker (formats storage on first start) and create the topics."""
    from pitstop.broker import start_broker

    handle = start_broker(_config())
    console.print(f"Kafka broker running at {handle.bootstrap} (pid {handle.pid})")


@broker_app.command("stop")
def broker_stop() -> None:
    """Stop the local broker started by `pitstop broker start`."""
    from pitstop.broker import stop_broker

    stopped = stop_broker(_config())
    console.print("Kafka broker stopped" if stopped else "Kafka broker was not running")


@broker_app.command("status")
def broker_status() -> None:
    """Say whether the local broker runs, and list its topics."""
    from pitstop.broker import broker_status as status_of

    status = status_of(_config())
    if not status.running:
        console.print("Kafka broker is not running")
        raise typer.Exit(1)
    console.print(f"Kafka broker running at {status.bootstrap} (pid {status.pid})")
    for topic, partitions in sorted((status.topics or {}).items()):
        console.print(f"  {topic}: {partitions} partitions")


# --- setup --------------------------------------------------------------------------------


@app.command()
def setup() -> None:
    """Resolve Spark's Delta and Kafka jars and the broker's jars from Maven Central (once)."""
    from pitstop.broker import ensure_broker_jars
    from streaming.session import build_spark_session

    cfg = _config()
    with console.status("Resolving the Kafka broker's jars"):
        ensure_broker_jars(Path(cfg.home))
    with console.status("Resolving Spark's Delta and Kafka jars"):
        build_spark_session(cfg).stop()
    console.print("Jars ready under " + cfg.home)


# --- streaming ----------------------------------------------------------------------------


@app.command()
def stream(
    available_now: Annotated[
        bool, typer.Option(help="process what is in the topic, then stop")
    ] = False,
) -> None:
    """Run the streaming job with spark-submit (Ctrl-C stops it after the current batch)."""
    from streaming.submit import run_forwarding_signals, spark_submit_command, submit_environment

    cfg = _config()
    command = spark_submit_command(cfg, ["--available-now"] if available_now else [])
    raise typer.Exit(run_forwarding_signals(command, submit_environment()))


@app.command()
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
    from pitstop.alerts import query_alerts
    from streaming.replay import run_replay
    from streaming.session import build_spark_session

    cfg = _config()
    spark = build_spark_session(cfg)
    rcfg = run_replay(spark, cfg, path, output, model)
    print_alerts(query_alerts(rcfg, "battery", include_closed=closed), "battery", fmt.value)


@app.command()
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
    from pitstop.alerts import read_table
    from streaming.replay import run_batch_score
    from streaming.session import build_spark_session

    cfg = _config()
    rcfg = run_batch_score(build_spark_session(cfg), cfg, path, output, model)
    forecasts = read_table(rcfg, "battery_forecasts")
    console.print(
        f"{len(forecasts):,} forecasts written to {rcfg.storage.table('battery_forecasts')}"
    )


@app.command()
def maintain(
    vacuum_hours: Annotated[
        float, typer.Option(help="VACUUM keeps unreferenced files younger than this (>= 168)")
    ] = 168.0,
    vacuum: Annotated[bool, typer.Option(help="VACUUM after compacting")] = True,
) -> None:
    """Compact the Delta tables' small files and VACUUM old ones (safe while the stream runs)."""
    from streaming.maintenance import maintain_tables
    from streaming.session import build_spark_session

    cfg = _config()
    spark = build_spark_session(cfg)
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


# --- alerts -------------------------------------------------------------------------------


@alerts_app.callback(invoke_without_command=True)
def alerts(
    ctx: typer.Context,
    kind: Annotated[AlertKind, typer.Option(help="battery or compliance")] = AlertKind.battery,
    since: Annotated[
        dt.datetime | None, typer.Option(formats=["%Y-%m-%d"], help="alert date on or after")
    ] = None,
    battery: Annotated[str | None, typer.Option(help="only this battery_id")] = None,
    car: Annotated[str | None, typer.Option(help="only this car_id")] = None,
    closed: Annotated[bool, typer.Option(help="include closed alerts")] = False,
    fmt: Annotated[OutputFormat, typer.Option("--format", help="table, csv or json")] = (
        OutputFormat.table
    ),
) -> None:
    """List alerts from the Delta alert tables (no JVM: answers in about a second)."""
    if ctx.invoked_subcommand is not None:
        return
    from pitstop.alerts import query_alerts

    frame = query_alerts(
        _config(),
        kind.value,
        since=since.date() if since else None,
        battery_id=battery,
        car_id=car,
        include_closed=closed,
    )
    print_alerts(frame, kind.value, fmt.value)


@alerts_app.command("ack")
def alerts_ack(
    alert_id: Annotated[str, typer.Argument(help="the alert's id (alert_id column)")],
    by: Annotated[str | None, typer.Option(help="who acknowledged it")] = None,
) -> None:
    """Close an open battery alert: an operator has dealt with it."""
    from pitstop.alerts import AlertsError, acknowledge_alert

    if not acknowledge_alert(_config(), alert_id, by):
        raise AlertsError(f"No open alert with id {alert_id}.")
    console.print(f"Alert {alert_id} acknowledged")


def print_alerts(frame, kind: str, fmt: str) -> None:
    """Print alerts as a rich table, CSV or JSON lines."""
    from pitstop.alerts import format_alerts, table_rows

    if fmt != "table":
        sys.stdout.write(format_alerts(frame, kind, fmt))
        return
    if frame.empty:
        console.print(f"No {kind} alerts.")
        return
    headers, rows = table_rows(frame, kind)
    table = Table(title=f"{len(frame)} {kind} alert(s)")
    for header in headers:
        table.add_column(header, overflow="fold")
    for row in rows:
        table.add_row(*row)
    console.print(table)


# --- demo ---------------------------------------------------------------------------------


@app.command()
def demo(
    batteries: Annotated[int | None, typer.Option(min=1, help="fleet size")] = None,
    days: Annotated[int | None, typer.Option(min=1, help="days simulated")] = None,
) -> None:
    """Broker, model, streaming job and simulator end to end; print the alerts; shut down."""
    from pitstop.demo import run_demo

    summary = run_demo(_config(), batteries=batteries, days=days, console=console)
    print_alerts(summary.alerts, "battery", "table")
    console.print(summary.line())


def _register_package_commands() -> None:
    from models.cli import models_app, train_app

    app.add_typer(train_app, name="train")
    app.add_typer(models_app, name="models")
    from simulator.cli import simulate

    app.command()(simulate)
    from models.forecast_plot import forecast_command
    from models.serve_cli import serve_command

    app.command("serve")(serve_command)
    from models.compliance_cli import classify_command, train_compliance_command

    train_app.command("compliance")(train_compliance_command)
    app.command("classify")(classify_command)
    app.command("forecast")(forecast_command)


_register_package_commands()


def main() -> None:
    """Console-script entry: run the app; known failures print one sentence, not a traceback."""
    try:
        app(standalone_mode=False)
    except (PitstopError, FileNotFoundError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        sys.exit(1)
    except typer.Abort:
        err.print("aborted")
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # click usage errors
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
