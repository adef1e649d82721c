"""`pitstop models list|promote|rollback`: the registered models and their champion alias."""

from __future__ import annotations

from typing import Annotated

import pandas as pd
import typer
from rich import box
from rich.console import Console
from rich.table import Table

from apps.commands.common import one_sentence_errors, quiet_mlflow
from core.config import PitstopConfig, load_config

console = Console()


def _configured() -> PitstopConfig:
    from models.registry import configure_mlflow

    quiet_mlflow()
    cfg = load_config()
    configure_mlflow(cfg)
    return cfg


@one_sentence_errors
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


@one_sentence_errors
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


@one_sentence_errors
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


@one_sentence_errors
def compare_command(
    days: Annotated[int, typer.Option(help="target days the comparison covers")] = 14,
    promote_if_better: Annotated[
        bool,
        typer.Option(
            "--promote-if-better", help="move the alias to a challenger that beats the champion"
        ),
    ] = False,
    min_pairs: Annotated[
        int, typer.Option(help="shared forecast-actual pairs a challenger needs to be promoted")
    ] = 1000,
) -> None:
    """Live accuracy of the champion and each shadow model side by side (forecast_accuracy)."""
    from models.reporting.live_compare import compare_champion

    cfg = _configured()
    result = compare_champion(cfg, days=days, min_pairs=min_pairs, promote_better=promote_if_better)
    if result.scores.empty:
        console.print("No forecast accuracy rows yet; run `pitstop monitor` while the stream runs.")
    else:
        table = Table(box=box.SIMPLE_HEAD, title=f"live accuracy, last {days} target days")
        for column in ("model", "version", "role", "pairs", "NRMSE", "MAE", "target days"):
            table.add_column(
                column, justify="right" if column in ("pairs", "NRMSE", "MAE") else "left"
            )
        for row in result.scores.itertuples(index=False):
            table.add_row(
                row.model_name,
                str(row.model_version),
                row.model_role,
                f"{row.pairs:,}",
                f"{row.nrmse:.4f}",
                f"{row.mae:.4f}",
                f"{row.first_day}..{row.last_day}",
            )
        console.print(table)
    console.print(f"{result.decision}: {result.reason} (MLflow run {result.run_id})")
