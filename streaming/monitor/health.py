"""The champion's live accuracy against its offline holdout, and what to do when it slips.

After each monitor micro-batch the champion version's `forecast_accuracy` rows of the last
few days are scored the way its holdout was (`models.reporting.live_metrics`); when the live
NRMSE exceeds the holdout NRMSE logged with the version by `monitor.margin` on
`monitor.days` consecutive days, the check logs a warning, its `model_health` row says
`degraded` (the console shows it), and with `monitor.retrain` a retraining run starts on the
lake's telemetry (`pitstop train rnn --data ...`, which promotes only a better model).
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from core.config import PitstopConfig
from core.lake import read_table
from models.reporting.live_metrics import (
    champion_health,
    input_drift,
    live_metrics,
    profile_quantiles,
)
from streaming import tables

log = logging.getLogger("pitstop.monitor")

_ACCURACY_COLUMNS = [
    "model_name",
    "model_version",
    "model_role",
    "battery_id",
    "target_date",
    "forecast",
    "actual",
    "error",
]


class ChampionWatch:
    """Checks the champion after each monitor batch; starts at most one retraining per version."""

    def __init__(self, cfg: PitstopConfig, client: Any) -> None:
        self.cfg, self.client = cfg, client
        self.retrained: set[str] = set()

    def champion(self) -> tuple[str, str, dict[str, float]] | None:
        """(name, version, its run's metrics) of the version the alias points at, or None."""
        name = self.cfg.forecast.model
        try:
            version = self.client.get_model_version_by_alias(name, self.cfg.mlflow.alias)
            metrics = self.client.get_run(version.run_id).data.metrics if version.run_id else {}
        except Exception as exc:  # MLflow's own types: the stream goes on without a verdict
            log.warning("Cannot read the champion of %s from the registry: %s", name, exc)
            return None
        return name, str(version.version), dict(metrics)

    def check(self, last_day: dt.date, monitor_batch: int) -> pd.DataFrame:
        """One `model_health` row for the champion as of target day `last_day` (none when the
        registry cannot be read)."""
        champion = self.champion()
        if champion is None:
            return pd.DataFrame()
        name, version, run_metrics = champion
        monitor = self.cfg.monitor
        since = last_day - dt.timedelta(days=monitor.days + monitor.window_days)
        rows = read_table(
            self.cfg,
            tables.FORECAST_ACCURACY,
            columns=_ACCURACY_COLUMNS,
            filters=[
                ("model_name", "=", name),
                ("model_version", "=", version),
                ("model_role", "=", "champion"),
                ("target_date", ">=", since),
            ],
        )
        daily = live_metrics(rows, monitor.window_days)
        health = champion_health(
            daily, run_metrics.get("holdout_nrmse"), monitor.margin, monitor.days, monitor.min_pairs
        )
        drift = self._drift(rows, run_metrics, last_day)
        retraining = None
        if health["status"] == "degraded":
            log.warning(
                "Champion %s v%s is degraded: live NRMSE %.4f > %.4f (holdout %.4f + %.0f%%) "
                "on %d consecutive day(s) up to %s",
                name,
                version,
                health["live_nrmse"],
                health["threshold"],
                health["holdout_nrmse"],
                monitor.margin * 100,
                health["days_over"],
                health["day"],
            )
            if monitor.retrain and version not in self.retrained:
                retraining = start_retraining(self.cfg)
                self.retrained.add(version)
        return pd.DataFrame(
            [
                {
                    "checked_at": dt.datetime.now(dt.timezone.utc),
                    "model_name": name,
                    "model_version": version,
                    "model_role": "champion",
                    **{k: health[k] for k in ("day", "live_nrmse", "live_mae", "pairs")},
                    **{k: health[k] for k in ("holdout_nrmse", "threshold", "days_over")},
                    "status": health["status"],
                    "drift_psi": drift["psi"],
                    "drift_ks": drift["ks"],
                    "retraining": retraining,
                    "monitor_batch": monitor_batch,
                }
            ]
        )

    def _drift(
        self, rows: pd.DataFrame, run_metrics: dict[str, float], last_day: dt.date
    ) -> dict[str, float]:
        """Input drift of the last window's daily cycles (one per reading) against the
        training profile logged with the version (NaN without one)."""
        profile = profile_quantiles(run_metrics)
        if profile is None or rows.empty:
            return {"psi": float("nan"), "ks": float("nan")}
        first = pd.Timestamp(last_day - dt.timedelta(days=self.cfg.monitor.window_days - 1))
        recent = rows[pd.to_datetime(rows["target_date"]) >= first]
        readings = recent.drop_duplicates(["battery_id", "target_date"])["actual"]
        return input_drift(readings.to_numpy(), *profile)


def start_retraining(cfg: PitstopConfig) -> str:
    """Start `pitstop train rnn --data <lake telemetry>` in the background (same
    configuration); returns what was started, for the health row and the log."""
    from streaming.submit import config_environment

    pitstop = Path(sys.executable).with_name("pitstop")
    command = [str(pitstop) if pitstop.exists() else (shutil.which("pitstop") or "pitstop")]
    command += ["train", "rnn", "--data", cfg.storage.table(tables.TELEMETRY)]
    logs = cfg.path(cfg.home) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    out = logs / f"retrain-{dt.datetime.now():%Y%m%d-%H%M%S}.log"
    with out.open("ab") as sink:
        child = subprocess.Popen(
            command,
            env=config_environment(cfg),
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a retraining outlives a monitor stopped meanwhile
        )
    started = f"pid {child.pid}: {' '.join(command[1:])} (log {out})"
    log.warning("Started retraining, %s", started)
    return started
