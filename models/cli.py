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
    cv: Annotated[
        int,
        typer.Option(
            min=0,
            help="also log cv_* metrics on the AutoML sweep's rolling-origin folds "
            "(one more fit per fold; 0 = off)",
        ),
    ] = 0,
    health_signals: Annotated[
        bool,
        typer.Option(
            "--health-signals/--no-health-signals",
            help="feed the readings' health signals (cranking and resting voltage, charge "
            "acceptance, temperature) to the LSTM, each one set on at least half the readings",
        ),
    ] = True,
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
            cv_folds=cv,
            health_signals=health_signals,
        )
    nrmse = result.metrics["holdout_nrmse"]
    champion = result.champion_metrics.get("holdout_nrmse")
    versus = f" vs champion v{result.champion_version} {champion:.4f}" if champion else ""
    console.print(f"Run {result.run_id}: {result.model_name} version {result.version}")
    console.print(f"Health signal inputs: {', '.join(result.extra_channels) or 'none'}")
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


def _training_readings(data: str | None, cfg: PitstopConfig) -> tuple[pd.DataFrame, str]:
    """Readings from --data, else the Delta telemetry table, else a simulated fleet."""
    from models.data import DataError, load_readings, simulated_readings

    source = data or default_training_source(cfg)
    readings = load_readings(source) if source else None
    if readings is not None and readings["battery_id"].nunique() >= _MIN_BATTERIES:
        return readings, str(source)
    if data:
        raise DataError(f"{data} holds fewer than {_MIN_BATTERIES} batteries to train on.")
    sim = cfg.simulator
    console.print(
        f"No telemetry to train on yet: simulating {sim.batteries} batteries x {sim.days} "
        f"days (seed {sim.seed})"
    )
    readings = simulated_readings(sim.batteries, sim.days, sim.start_date, sim.seed)
    return readings, f"simulator(batteries={sim.batteries}, days={sim.days}, seed={sim.seed})"


@train_app.command("automl")
@_one_sentence_errors
def train_automl_command(
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            help="simulator output folder, lab-schema CSV or Delta table "
            "[default: the Delta telemetry table, else a simulated fleet]",
        ),
    ] = None,
    target: Annotated[str, typer.Option(help="column to forecast")] = "daily_cycles_used",
    time_column: Annotated[str, typer.Option(help="column with each reading's day")] = "date",
    series_column: Annotated[
        str, typer.Option(help="column naming each series (one per battery)")
    ] = "battery_id",
    horizon: Annotated[int, typer.Option(min=1, help="days to forecast")] = 30,
    cv: Annotated[
        int, typer.Option(min=1, help="rolling-origin folds, each `horizon` days apart")
    ] = 3,
    time_budget: Annotated[
        str,
        typer.Option(
            help="exit criterion: no fold starts after this long (600, 600s, 10m, 1h); "
            "logging and registering the best follow"
        ),
    ] = "10m",
    metric_threshold: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="exit criterion: start no further candidate once one's mean CV normalized "
            "RMSE is at or below this (0 = try them all); the cheap baselines always all run "
            "first so the leaderboard has a reference",
        ),
    ] = 0.1355,
    candidates: Annotated[
        str | None,
        typer.Option(
            help="comma-separated candidates to try [default: naive, seasonal_naive, "
            "window_average, seasonal_window_average, auto_ets, auto_theta, arima, lightgbm, "
            "lstm]"
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="seed for LightGBM and the LSTM")] = 0,
    force: Annotated[bool, typer.Option("--force", help="promote even if not better")] = False,
) -> None:
    """AutoML: try forecasters on rolling-origin folds, register the best, promote it if better.

    The primary metric is normalized RMSE (RMSE / range of actuals, as Azure ML defines it);
    MAE, sMAPE and MASE are reported beside it.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from models.automl import parse_duration
    from models.candidates import select_candidates
    from models.train_automl import AutomlSettings, train_automl

    _quiet_mlflow()
    budget = parse_duration(time_budget)
    names = tuple(n.strip() for n in candidates.split(",") if n.strip()) if candidates else ()
    chosen = select_candidates(names or None)  # unknown names fail before any data is read
    cfg = load_config()
    readings, source = _training_readings(data, cfg)
    console.print(
        f"AutoML on {len(readings):,} readings of {readings['battery_id'].nunique():,} series "
        f"from {source}: {len(chosen)} candidates x {cv} folds, budget {budget:.0f}s, "
        f"threshold {metric_threshold:g}"
    )
    settings = AutomlSettings(
        target=target,
        time_column=time_column,
        series_column=series_column,
        horizon_days=horizon,
        cv_folds=cv,
        time_budget_s=budget,
        metric_threshold=metric_threshold or None,
        candidates=names,
        force=force,
        seed=seed,
        data_source=source,
    )
    progress = Progress(
        TextColumn("[bold]{task.description:<24}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("folds"),
        TimeElapsedColumn(),
        console=console,
    )
    with progress:
        task = progress.add_task("starting", total=len(chosen) * cv)

        def on_fold(result: Any, fold: int) -> None:
            progress.update(task, advance=1, description=f"{result.name} fold {fold}/{cv}")

        def on_candidate(result: Any) -> None:
            # A stopped or failed candidate's missing folds count as done for the bar.
            progress.advance(task, cv - len(result.fold_metrics))

        result = train_automl(cfg, readings, settings, on_fold=on_fold, on_candidate=on_candidate)
        progress.update(task, completed=len(chosen) * cv, description="done")
    console.print(_leaderboard_table(result.leaderboard))
    console.print(f"Stopped: {result.stopped_reason}; {result.seconds:.0f}s in all.")
    holdout = result.metrics["holdout_nrmse"]
    champion = result.champion_metrics.get("holdout_nrmse")
    versus = f" vs champion v{result.champion_version} {champion:.4f}" if champion else ""
    console.print(
        f"Run {result.run_id}: best {result.best} registered as {result.model_name} version "
        f"{result.version}; last-fold NRMSE {holdout:.4f}{versus}"
    )
    if result.promoted:
        how = " (forced)" if force and result.champion_version else ""
        console.print(f"[green]Promoted[/green] to {cfg.mlflow.alias}{how}.")
    else:
        console.print(f"Not promoted: v{result.champion_version} stays {cfg.mlflow.alias}.")


def _leaderboard_table(board: pd.DataFrame) -> Table:
    table = Table(
        title="AutoML leaderboard (mean over CV folds)",
        caption="* baseline; s/1k: seconds to forecast 1,000 windows",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("#", justify="right")
    table.add_column("candidate", no_wrap=True)
    for metric in ("NRMSE", "MAE", "sMAPE", "MASE", "fit s", "s/1k"):
        table.add_column(metric, justify="right", no_wrap=True)
    table.add_column("status")

    def number(value: float, digits: int = 4) -> str:
        return f"{value:.{digits}f}" if pd.notna(value) else ""

    for row in board.itertuples(index=False):
        table.add_row(
            str(row.rank) if pd.notna(row.rank) else "",
            row.candidate + ("*" if row.baseline else ""),
            number(row.cv_nrmse),
            number(row.cv_mae),
            number(row.cv_smape, 2),
            number(row.cv_mase, 3),
            number(row.fit_seconds, 1),
            number(row.predict_s_per_1k, 2),
            row.status,
        )
    return table
