"""`pitstop train ...` and `pitstop models ...`: thin Typer drivers over models.* functions.

Failures the user can fix raise PitstopError subclasses; each command turns them (and
MLflow's own errors) into one sentence on stderr and exit code 1.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import pandas as pd
import typer
from rich import box
from rich.console import Console
from rich.table import Table

from pitstop.config import PitstopConfig, load_config
from pitstop.errors import PitstopError

log = logging.getLogger(__name__)

train_app = typer.Typer(no_args_is_help=True, help="Train forecast models and register them.")
models_app = typer.Typer(no_args_is_help=True, help="Registered models: list, promote, roll back.")

console = Console()
err = Console(stderr=True)


@train_app.callback()
def _train_group() -> None:
    """Train forecast models and register them."""
    # A callback keeps `train` a command group even while it holds a single command.


F = TypeVar("F", bound=Callable[..., Any])


def _one_sentence_errors(command: F) -> F:
    """Print known failures as one sentence and exit 1, with no traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return command(*args, **kwargs)
        except (PitstopError, FileNotFoundError) as exc:
            err.print(f"[red]error:[/red] {exc}")
        except MlflowException as exc:
            first_line = str(exc.message).strip().splitlines()[0] if exc.message else repr(exc)
            err.print(f"[red]error:[/red] MLflow: {first_line}")
        raise typer.Exit(1)

    return wrapper  # type: ignore[return-value]


def _quiet_mlflow() -> None:
    # Download progress bars are noise in a terminal that already shows our own output.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


# Fewer batteries than this cannot be split into training and validation batteries.
_MIN_BATTERIES = 2


def default_training_source(cfg: PitstopConfig) -> str | None:
    """The Delta telemetry table when the stream has written rows to it, else None (simulate)."""
    table = cfg.storage.table("telemetry")
    if "://" not in table and (Path(table) / "_delta_log").is_dir():
        from deltalake import DeltaTable

        if DeltaTable(table).to_pyarrow_dataset().count_rows() > 0:
            return table
    return None


@train_app.command("rnn")
@_one_sentence_errors
def train_rnn_command(
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            help="simulator output folder, lab-schema CSV or Delta table "
            "[default: the Delta telemetry table, else a simulated fleet]",
        ),
    ] = None,
    epochs: Annotated[
        int, typer.Option(min=1, help="most epochs (early stopping may end sooner)")
    ] = 20,
    seed: Annotated[int, typer.Option(help="seed for the split, sampling and weights")] = 0,
    force: Annotated[bool, typer.Option("--force", help="promote even if not better")] = False,
    time_budget: Annotated[
        float, typer.Option(min=1, help="stop training after this many seconds")
    ] = 90.0,
    max_windows: Annotated[
        int, typer.Option(min=100, help="training windows sampled per epoch")
    ] = 12_000,
) -> None:
    """Train the LSTM forecaster, register it, and make it champion if it beats the current one."""
    from models.data import DataError, load_readings, simulated_readings
    from models.train_rnn import train_rnn

    _quiet_mlflow()
    cfg = load_config()
    source = data or default_training_source(cfg)
    readings = load_readings(source) if source else None
    if readings is None or readings["battery_id"].nunique() < _MIN_BATTERIES:
        if data:
            raise DataError(f"{data} holds fewer than {_MIN_BATTERIES} batteries to train on.")
        sim = cfg.simulator
        console.print(
            f"No telemetry to train on yet: simulating {sim.batteries} batteries x {sim.days} "
            f"days (seed {sim.seed})"
        )
        readings = simulated_readings(sim.batteries, sim.days, sim.start_date, sim.seed)
        source = f"simulator(batteries={sim.batteries}, days={sim.days}, seed={sim.seed})"
    console.print(
        f"Training on {len(readings):,} readings of {readings['battery_id'].nunique():,} "
        f"batteries from {source}"
    )
    with console.status("Training the LSTM"):
        result = train_rnn(
            cfg,
            readings,
            epochs=epochs,
            seed=seed,
            force=force,
            time_budget_s=time_budget,
            max_windows=max_windows,
            data_source=source,
        )
    nrmse = result.metrics["holdout_nrmse"]
    champion = result.champion_metrics.get("holdout_nrmse")
    versus = f" vs champion v{result.champion_version} {champion:.4f}" if champion else ""
    console.print(f"Run {result.run_id}: {result.model_name} version {result.version}")
    console.print(
        f"Holdout NRMSE {nrmse:.4f}{versus} (weekly baseline "
        f"{result.metrics['baseline_nrmse']:.4f}); trained in {result.seconds:.0f}s"
    )
    if result.promoted:
        console.print(f"[green]Promoted[/green] to {cfg.mlflow.alias}.")
    else:
        console.print(f"Not promoted: v{result.champion_version} stays {cfg.mlflow.alias}.")


def _configured() -> PitstopConfig:
    from models.registry import configure_mlflow

    _quiet_mlflow()
    cfg = load_config()
    configure_mlflow(cfg)
    return cfg


@models_app.command("list")
@_one_sentence_errors
def list_command() -> None:
    """Registered models with their versions, aliases and holdout metrics."""
    from models.registry import KEY_METRICS, list_models

    _configured()
    frame = list_models()
    if frame.empty:
        console.print("No registered models yet; run `pitstop train rnn`.")
        return
    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("model", no_wrap=True)
    table.add_column("version", justify="right")
    table.add_column("aliases", no_wrap=True)
    table.add_column("created", no_wrap=True)
    table.add_column("prev.", justify="right")
    for metric in KEY_METRICS:
        table.add_column(metric.removeprefix("holdout_").upper(), justify="right")
    for row in frame.itertuples(index=False):
        values = row._asdict()
        table.add_row(
            row.name,
            str(row.version),
            row.aliases,
            row.created.strftime("%Y-%m-%d"),
            row.previous_champion,
            *[f"{values[m]:.4f}" if pd.notna(values[m]) else "" for m in KEY_METRICS],
        )
    console.print(table)


@models_app.command("promote")
@_one_sentence_errors
def promote_command(
    name: Annotated[str, typer.Argument(help="registered model name")],
    version: Annotated[str, typer.Argument(help="version to promote")],
    alias: Annotated[str | None, typer.Option(help="alias to move [default: from config]")] = None,
) -> None:
    """Point the champion alias at VERSION of NAME (recorded for rollback)."""
    from models.registry import promote

    cfg = _configured()
    alias = alias or cfg.mlflow.alias
    promote(name, version, alias, reason="manual")
    console.print(f"{name} version {version} is now {alias}.")


@models_app.command("rollback")
@_one_sentence_errors
def rollback_command(
    name: Annotated[str, typer.Argument(help="registered model name")],
    alias: Annotated[str | None, typer.Option(help="alias to move [default: from config]")] = None,
) -> None:
    """Point the champion alias back at the previous champion of NAME."""
    from models.registry import rollback

    cfg = _configured()
    alias = alias or cfg.mlflow.alias
    version = rollback(name, alias)
    console.print(f"{name}: {alias} rolled back to version {version}.")
