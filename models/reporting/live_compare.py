"""Champion against live challengers (shadow models) on the same actuals, and the alias move.

`pitstop models compare` reads `forecast_accuracy` (delta-rs, no JVM), keeps the versions
the aliases point at now, and scores each challenger against the champion on the pairs both
scored over the last `days` target days. With `promote`, a challenger whose live NRMSE beats
the champion's on at least `min_pairs` pairs takes the alias: a version of another
registered model (a shadow such as `battery-cycles-automl`) is first copied into the
champion's registered model -- every forecaster keeps one input/output contract -- so the
stream's `forecast.model` alias moves, and `pitstop models rollback` undoes it. Every
comparison is an MLflow run (params: both versions, window; metrics: both live NRMSE and
MAE; tag `pitstop.decision`).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient

from core.config import PitstopConfig
from core.lake import read_table
from models.registry import RegistryError, configure_mlflow, promote
from models.reporting.live_metrics import compare_live

log = logging.getLogger(__name__)

ACCURACY_TABLE = "forecast_accuracy"
DECISION_TAG = "pitstop.decision"


@dataclass
class LiveComparison:
    """What `compare_champion` found and decided."""

    scores: pd.DataFrame  # one row per compared version (compare_live's columns)
    decision: str  # promoted | kept | too_few_pairs | no_challenger | no_data
    reason: str
    promoted: tuple[str, str] | None = None  # (name, version) that took the alias
    run_id: str | None = None
    pairs: dict[str, int] = field(default_factory=dict)


def current_versions(cfg: PitstopConfig) -> dict[tuple[str, str], str]:
    """(model name, role) -> the version its alias points at now (champion and shadows)."""
    client = MlflowClient()
    wanted = [(cfg.forecast.model, "champion")]
    wanted += [(name, "shadow") for name in cfg.forecast.shadow_models]
    versions = {}
    for name, role in wanted:
        try:
            versions[(name, role)] = str(
                client.get_model_version_by_alias(name, cfg.mlflow.alias).version
            )
        except mlflow.exceptions.MlflowException:
            log.info("%s has no %s alias; left out of the comparison", name, cfg.mlflow.alias)
    return versions


def read_live_pairs(cfg: PitstopConfig, versions: dict[tuple[str, str], str]) -> pd.DataFrame:
    """The accuracy rows of these (name, role) -> version pairs (the delta-rs filters select
    them; an empty frame when the table does not exist yet)."""
    if not versions:
        return pd.DataFrame()
    ors = [
        [("model_name", "=", n), ("model_role", "=", r), ("model_version", "=", v)]
        for (n, r), v in versions.items()
    ]
    return read_table(cfg, ACCURACY_TABLE, filters=ors)


def compare_champion(
    cfg: PitstopConfig, days: int = 14, min_pairs: int = 1_000, promote_better: bool = False
) -> LiveComparison:
    """Score the champion and each shadow on their shared pairs of the last `days` target
    days; with `promote_better`, move the alias to the best challenger that beats the
    champion on at least `min_pairs` pairs. Logged as an MLflow comparison run."""
    if days < 1:
        raise RegistryError(f"--days must be at least 1, got {days}.")
    configure_mlflow(cfg)
    versions = current_versions(cfg)
    champion_key = (cfg.forecast.model, "champion")
    if champion_key not in versions:
        raise RegistryError(
            f"No version of {cfg.forecast.model} has alias {cfg.mlflow.alias}; "
            "run `pitstop train rnn` first."
        )
    frame = read_live_pairs(cfg, versions)
    champion_version = versions[champion_key]
    rows = []
    for (name, role), version in versions.items():
        if role == "champion":
            continue
        pair = (
            frame[
                ((frame["model_name"] == cfg.forecast.model) & (frame["model_role"] == "champion"))
                | ((frame["model_name"] == name) & (frame["model_role"] == role))
            ]
            if not frame.empty
            else frame
        )
        scores = compare_live(pair, days)
        rows.append((name, version, scores))
    if not rows:
        scores = compare_live(frame, days) if not frame.empty else compare_live(pd.DataFrame())
        result = LiveComparison(scores, "no_challenger", "no shadow model has a version")
        return _logged(cfg, result, champion_version, None, days, min_pairs)
    outcome = _decide(cfg, rows, min_pairs)
    if promote_better and outcome.decision == "promoted":
        name, version = outcome.promoted
        outcome.promoted = (cfg.forecast.model, _take_alias(cfg, name, version, outcome.reason))
    elif outcome.decision == "promoted":
        outcome.decision, outcome.promoted = "better", None
    best = outcome.scores
    challenger = best[best["model_role"] == "shadow"].head(1)
    return _logged(cfg, outcome, champion_version, challenger, days, min_pairs)


def _decide(
    cfg: PitstopConfig, rows: list[tuple[str, str, pd.DataFrame]], min_pairs: int
) -> LiveComparison:
    """The best challenger against the champion, each on their own shared pairs."""
    candidates = []
    for name, version, scores in rows:
        champ = scores[scores["model_role"] == "champion"]
        chall = scores[(scores["model_name"] == name) & (scores["model_role"] == "shadow")]
        if champ.empty or chall.empty:
            continue
        candidates.append((name, version, scores, champ.iloc[0], chall.iloc[0]))
    if not candidates:
        empty = pd.concat([r[2] for r in rows], ignore_index=True)
        return LiveComparison(empty, "no_data", "no pairs shared by the champion and a shadow")
    name, version, scores, champ, chall = min(candidates, key=lambda c: c[4]["nrmse"])
    verdict = (
        f"{name} v{version} live NRMSE {chall['nrmse']:.4f} vs champion "
        f"{cfg.forecast.model} v{champ['model_version']} {champ['nrmse']:.4f} "
        f"on {int(chall['pairs'])} shared pairs"
    )
    if int(chall["pairs"]) < min_pairs:
        return LiveComparison(scores, "too_few_pairs", f"{verdict} (< {min_pairs})")
    if chall["nrmse"] < champ["nrmse"]:
        return LiveComparison(scores, "promoted", verdict, promoted=(name, version))
    return LiveComparison(scores, "kept", verdict)


def _take_alias(cfg: PitstopConfig, name: str, version: str, reason: str) -> str:
    """Point the champion alias of `forecast.model` at challenger `name` v`version` (copied
    in first when it is another registered model); returns the version now champion."""
    target = cfg.forecast.model
    if name != target:
        copied = MlflowClient().copy_model_version(f"models:/{name}/{version}", target)
        MlflowClient().set_model_version_tag(
            target, copied.version, "pitstop.copied_from", f"{name}/{version}"
        )
        version = str(copied.version)
    promote(target, version, cfg.mlflow.alias, reason=f"live: {reason}")
    return version


def _logged(
    cfg: PitstopConfig,
    result: LiveComparison,
    champion_version: str,
    challenger: pd.DataFrame | None,
    days: int,
    min_pairs: int,
) -> LiveComparison:
    """Record the comparison as an MLflow run (params, both live metrics, the decision)."""
    scores = result.scores
    champ = scores[scores["model_role"] == "champion"].head(1)
    with mlflow.start_run(run_name=f"compare-{dt.datetime.now():%Y%m%d-%H%M%S}") as run:
        mlflow.set_tag("pitstop.model_kind", "live-comparison")
        mlflow.set_tag(DECISION_TAG, result.decision)
        params = {
            "champion_name": cfg.forecast.model,
            "champion_version": champion_version,
            "window_days": days,
            "min_pairs": min_pairs,
        }
        metrics = {}
        if not champ.empty:
            metrics.update(
                champion_live_nrmse=float(champ["nrmse"].iloc[0]),
                champion_live_mae=float(champ["mae"].iloc[0]),
            )
        if challenger is not None and not challenger.empty:
            row = challenger.iloc[0]
            params.update(
                challenger_name=row["model_name"], challenger_version=row["model_version"]
            )
            metrics.update(
                challenger_live_nrmse=float(row["nrmse"]),
                challenger_live_mae=float(row["mae"]),
                shared_pairs=float(row["pairs"]),
            )
        if result.promoted is not None:
            params["promoted_version"] = result.promoted[1]
        mlflow.log_params(params)
        mlflow.log_metrics({k: v for k, v in metrics.items() if v == v})  # NaN is no figure
        mlflow.set_tag("pitstop.comparison", result.reason[:250])
        result.run_id = run.info.run_id
    log.info("Live comparison: %s (%s)", result.decision, result.reason)
    return result


def latest_model_health(cfg: PitstopConfig) -> pd.DataFrame:
    """The newest `model_health` row per model version (what the monitor last concluded about
    the champion: status ok / degraded / unknown, live and holdout NRMSE, drift); empty
    before the first check."""
    health = read_table(cfg, "model_health")
    if health.empty:
        return health
    newest = health.sort_values("checked_at").groupby(["model_name", "model_version"]).tail(1)
    return newest.sort_values("checked_at", ascending=False, ignore_index=True)
