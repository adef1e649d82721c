"""`pitstop train rnn|automl|compliance`: thin drivers over `models.training`.

Each command finds its data (`apps.training_data`), calls one trainer and prints what came
of it. Failures the user can fix print one sentence and exit 1 (`one_sentence_errors`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import pandas as pd
import typer
from rich import box
from rich.console import Console
from rich.table import Table

from apps.commands.common import one_sentence_errors, quiet_mlflow
from core.config import load_config

console = Console()

_DATA_HELP = (
    "simulator output folder, lab-schema CSV or Delta table "
    "[default: the Delta telemetry table, else a simulated fleet]"
)


def train_group() -> None:
    """Train forecast models and register them."""
    # A callback keeps `train` a command group even while it holds a single command.


@one_sentence_errors
def train_rnn_command(
    data: Annotated[str | None, typer.Option("--data", help=_DATA_HELP)] = None,
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
    from apps.training_data import training_readings
    from models.training.rnn import train_rnn

    quiet_mlflow()
    cfg = load_config()
    readings, source = training_readings(data, cfg, announce=console.print)
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
    _print_alerts(result.metrics, result.alert_threshold, cfg.forecast.alert_precision)
    _print_promotion(result.promoted, result.champion_version, cfg.mlflow.alias)


@one_sentence_errors
def train_automl_command(
    data: Annotated[str | None, typer.Option("--data", help=_DATA_HELP)] = None,
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
    from apps.training_data import training_readings
    from models.forecasting.automl import parse_duration
    from models.forecasting.candidates import select_candidates
    from models.training.automl import AutomlSettings, train_automl

    quiet_mlflow()
    budget = parse_duration(time_budget)
    names = tuple(n.strip() for n in candidates.split(",") if n.strip()) if candidates else ()
    chosen = select_candidates(names or None)  # unknown names fail before any data is read
    cfg = load_config()
    readings, source = training_readings(data, cfg, announce=console.print)
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
    with _sweep_progress(len(chosen), cv) as (on_fold, on_candidate):
        result = train_automl(cfg, readings, settings, on_fold=on_fold, on_candidate=on_candidate)
    _print_whole(_leaderboard_table(result.leaderboard))
    console.print(f"Stopped: {result.stopped_reason}; {result.seconds:.0f}s in all.")
    holdout = result.metrics["holdout_nrmse"]
    champion = result.champion_metrics.get("holdout_nrmse")
    versus = f" vs champion v{result.champion_version} {champion:.4f}" if champion else ""
    console.print(
        f"Run {result.run_id}: best {result.best} registered as {result.model_name} version "
        f"{result.version}; last-fold NRMSE {holdout:.4f}{versus}"
    )
    forced = " (forced)" if force and result.champion_version else ""
    _print_alerts(result.metrics, result.alert_threshold, cfg.forecast.alert_precision)
    _print_promotion(result.promoted, result.champion_version, cfg.mlflow.alias, forced)


@one_sentence_errors
def train_compliance_command(
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            help="labelled notes, CSV or JSONL: `text` and `non_compliant` (0/1, true/false) "
            "or `label` (compliant/non-compliant) [default: notes the simulator writes; "
            "refused when the lake is remote]",
        ),
    ] = None,
    eval_data: Annotated[
        list[str] | None,
        typer.Option(
            "--eval-data",
            help="more labelled notes (CSV or JSONL) to score and report only, never to fit, "
            "choose or promote; repeatable",
        ),
    ] = None,
    simulated: Annotated[
        bool,
        typer.Option("--simulated", help="train on the simulator's notes even with a remote lake"),
    ] = False,
    candidates: Annotated[
        str | None,
        typer.Option(help="comma-separated candidates [default: tfidf_year, tfidf, network]"),
    ] = None,
    epochs: Annotated[int, typer.Option(min=1, help="passes of the network over the notes")] = 5,
    seed: Annotated[int, typer.Option(help="seed of the training notes and weights")] = 0,
    force: Annotated[
        bool, typer.Option(help="make this version the champion even if it is not better")
    ] = False,
) -> None:
    """Train the component-compliance classifier, register it, promote it if it is better."""
    from dataclasses import replace

    from apps.training_data import (
        compliance_notes_from_file,
        evaluation_sets,
        refuse_simulated_notes_on_remote_lake,
        train_compliance_on_simulated_notes,
    )
    from models.training.compliance import CANDIDATES, train_compliance

    quiet_mlflow()
    cfg = load_config()
    chosen = tuple(c.strip() for c in (candidates or "").split(",") if c.strip())
    options: dict[str, Any] = {"epochs": epochs, "seed": seed, "force": force, "progress": True}
    options["candidates"] = chosen or tuple(CANDIDATES)
    if data is None:
        if not simulated:
            refuse_simulated_notes_on_remote_lake(cfg)
        console.print("Training on notes the simulator writes (held-out shapes and spellings)")
        result = train_compliance_on_simulated_notes(cfg, eval_data=eval_data or (), **options)
        held_out = "Held-out notes (unseen sentence shapes and misspellings)"
    else:
        notes, loaded = compliance_notes_from_file(data)
        _print_rejected(loaded)
        console.print(
            f"Training on {len(loaded.notes):,} labelled notes from {data}: "
            f"{len(notes.train):,} to fit, {len(notes.val):,} to validate, "
            f"{len(notes.holdout):,} held out"
        )
        notes = replace(notes, extra=evaluation_sets(eval_data or ()))
        result = train_compliance(cfg, notes, **options)
        held_out = "Held-out notes (10% of the file)"
    _print_compliance_result(result, held_out)


def _print_rejected(loaded: Any, shown: int = 5) -> None:
    """How many rows of the user's file were set aside, and the first few with the reason."""
    rejected = loaded.rejected
    if rejected.empty:
        return
    console.print(
        f"[yellow]Set aside {len(rejected):,} row(s) of {loaded.source}[/yellow] "
        f"(the first {min(shown, len(rejected))}):"
    )
    for row in rejected.head(shown).itertuples(index=False):
        console.print(f"  row {row.row}: {row.reason}")


def _print_compliance_result(result: Any, held_out: str) -> None:
    table = Table(title="Candidates", box=box.SIMPLE_HEAD)
    for column in ("candidate", "val loss", "val acc", "held-out acc", "fit s"):
        table.add_column(column, justify="left" if column == "candidate" else "right")
    for row in result.candidates.to_dict("records"):
        mark = " *" if row["chosen"] else ""
        table.add_row(
            f"{row['candidate']}{mark}",
            f"{row.get('val_loss', float('nan')):.4f}",
            f"{row.get('val_accuracy', float('nan')):.4f}",
            f"{row.get('eval_accuracy', float('nan')):.4f}",
            f"{row.get('fit_seconds', float('nan')):.1f}",
        )
    console.print(table)
    metrics = result.metrics
    console.print(
        f"{held_out}: accuracy {metrics['eval_accuracy']:.4f}, "
        f"recall non-compliant {metrics['eval_recall_non_compliant']:.4f}, "
        f"recall compliant {metrics['eval_recall_compliant']:.4f}, "
        f"loss {metrics['eval_loss']:.5f}"
    )
    for key in sorted(k for k in metrics if k.endswith("_accuracy") and "." not in k):
        name = key.removesuffix("_accuracy")
        if name in ("eval", "val", "train"):
            continue
        console.print(
            f"{name} (evaluation only): accuracy {metrics[key]:.4f}, recall non-compliant "
            f"{metrics[f'{name}_recall_non_compliant']:.4f}, recall compliant "
            f"{metrics[f'{name}_recall_compliant']:.4f}"
        )
    verdict = "now the champion" if result.promoted else "champion unchanged"
    if result.champion_version and not result.promoted:
        verdict += f" (v{result.champion_version} is as good or better)"
    console.print(
        f"Registered {result.model_name} version {result.version} ({result.chosen}): "
        f"{verdict}; trained in {result.seconds:.0f} s"
    )
    console.print(f"MLflow run ID: {result.run_id}")


def _print_alerts(metrics: dict[str, float], threshold: float | None, target: float) -> None:
    """The version's alert threshold, and its alerts beside the rule's on validation."""
    if threshold is None:
        console.print(
            "No failure risk: the validation period holds no failure to calibrate on; alerts "
            "follow the forecast's running sum."
        )
        return
    console.print(
        f"Alerts open at a failure risk of {threshold:.3f} (precision "
        f"{metrics.get('val_alert_precision', float('nan')):.3f} on validation, target "
        f"{target:.2f}; risk ECE {metrics.get('val_risk_ece', float('nan')):.3f})"
    )
    parts = []
    for who, key in (("model", "model"), ("tuned cycle rule", "rule")):
        recall = metrics.get(f"val_{key}_alert_recall")
        if recall is not None:
            parts.append(
                f"{who}: recall {recall:.3f}, precision "
                f"{metrics.get(f'val_{key}_alert_precision', float('nan')):.3f}, median lead "
                f"{metrics.get(f'val_{key}_alert_median_lead_days', float('nan')):.0f} days"
            )
    if parts:
        console.print("Validation alerts (cross-fitted) -- " + "; ".join(parts))


def _print_promotion(
    promoted: bool, champion_version: str | None, alias: str, how: str = ""
) -> None:
    if promoted:
        console.print(f"[green]Promoted[/green] to {alias}{how}.")
    else:
        console.print(f"Not promoted: v{champion_version} stays {alias}.")


@contextmanager
def _sweep_progress(candidates: int, folds: int) -> Iterator[tuple[Any, Any]]:
    """A rich progress bar over the sweep's folds, and the two callbacks that advance it."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    total = candidates * folds
    progress = Progress(
        TextColumn("[bold]{task.description:<24}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("folds"),
        TimeElapsedColumn(),
        console=console,
    )
    with progress:
        task = progress.add_task("starting", total=total)

        def on_fold(result: Any, fold: int) -> None:
            progress.update(task, advance=1, description=f"{result.name} fold {fold}/{folds}")

        def on_candidate(result: Any) -> None:
            # A stopped or failed candidate's missing folds count as done for the bar.
            progress.advance(task, folds - len(result.fold_metrics))

        yield on_fold, on_candidate
        progress.update(task, completed=total, description="done")


# Piped or captured output (CI logs, files) has no terminal width; rich would assume 80 and cut
# the leaderboard's numbers to ellipses.
PIPED_WIDTH = 200


def _print_whole(table: Table) -> None:
    """A wide table: at the terminal's width, or at PIPED_WIDTH when there is no terminal."""
    if console.is_terminal:
        console.print(table)
    else:
        Console(width=PIPED_WIDTH).print(table)


def _leaderboard_table(board: pd.DataFrame) -> Table:
    table = Table(
        title="AutoML leaderboard (ranked on alerts, then NRMSE; means over CV folds)",
        caption="* baseline; recall/prec./lead: first alerts of the folds' periods at the "
        "calibrated threshold (each half of the batteries judged with the other's); "
        "s/1k: seconds to forecast 1,000 windows",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("#", justify="right")
    table.add_column("candidate", no_wrap=True)
    for metric in ("recall", "prec.", "lead d", "ECE", "NRMSE", "MAE", "sMAPE", "MASE"):
        table.add_column(metric, justify="right", no_wrap=True)
    for metric in ("fit s", "s/1k"):
        table.add_column(metric, justify="right", no_wrap=True)
    table.add_column("status")

    def number(value: float, digits: int = 4) -> str:
        return f"{value:.{digits}f}" if pd.notna(value) else ""

    for row in board.itertuples(index=False):
        table.add_row(
            str(row.rank) if pd.notna(row.rank) else "",
            row.candidate + ("*" if row.baseline else ""),
            number(row.alert_recall, 3),
            number(row.alert_precision, 3),
            number(row.alert_lead_days, 0),
            number(row.risk_ece, 3),
            number(row.cv_nrmse),
            number(row.cv_mae),
            number(row.cv_smape, 2),
            number(row.cv_mase, 3),
            number(row.fit_seconds, 1),
            number(row.predict_s_per_1k, 2),
            row.status,
        )
    return table
