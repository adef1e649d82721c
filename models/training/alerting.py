"""The alert half of a training run: calibrate the risk, set the threshold, judge the alerts
against the cycle rule's, and log all of it with the run and the version.

The threshold travels with the model (its pyfunc attribute and MLmodel metadata, which the
stream reads); it is also a run parameter and a tag of the registered version.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import mlflow
import pandas as pd

from core.config import PitstopConfig
from models.forecasting.calibration import (
    calibrate_model,
    crossfit_alerts,
    crossfit_rule,
)
from models.forecasting.pyfunc import ForecastPythonModel
from models.forecasting.risk import RiskCalibration, RiskError
from models.reporting.training_plots import reliability_figure

log = logging.getLogger(__name__)

RELIABILITY_FILE = "reliability.png"
CALIBRATION_METHOD = "platt"
THRESHOLD_TAG = "alert_threshold"


@dataclass
class AlertReport:
    """A calibrated model's risk and alerts on its validation period, beside the rule's."""

    calibration: RiskCalibration
    period: str
    rows: dict[str, dict[str, float]] = field(default_factory=dict)

    def metrics(self) -> dict[str, float]:
        """Run metrics: the validation period's calibration and each row's alert quality."""
        out = dict(self.calibration.metrics())
        for name, values in self.rows.items():
            key = "rule" if name.startswith("cycle rule") else "model"
            for metric in ("recall", "precision", "median_lead_days", "ece"):
                if metric in values:
                    out[f"val_{key}_alert_{metric}"] = float(values[metric])
        return out

    def card(self, within_days: int) -> dict[str, Any]:
        """What the model card's alert section shows."""
        return {
            "threshold": self.calibration.threshold,
            "raised_from": (
                self.calibration.empirical_threshold if self.calibration.raised else None
            ),
            "verifiable_alerts": self.calibration.verifiable_alerts,
            "target_precision": self.calibration.target_precision,
            "calibration": self.calibration.calibrator.method.capitalize(),
            "ece": self.calibration.ece,
            "period": self.period,
            "rows": self.rows,
            "reliability_png": RELIABILITY_FILE,
            "within_days": within_days,
        }


def judge_period(
    model: ForecastPythonModel,
    table: pd.DataFrame,
    readings: pd.DataFrame,
    cfg: PitstopConfig,
    since: pd.Timestamp,
    until: pd.Timestamp,
    judged: dict[str, float] | None = None,
) -> AlertReport | None:
    """Calibrate `model` on its period's raw risks (`calibration.period_risks`), and judge
    its alerts and the rule's there, cross-fitted (`judged`: the model's, when already
    known); None (and a warning) when the period holds no failure to learn from."""
    forecast = cfg.forecast
    target, within = forecast.alert_precision, forecast.alert_within_days
    try:
        calibration = calibrate_model(
            model,
            table,
            readings,
            target_precision=target,
            within_days=within,
            method=CALIBRATION_METHOD,
        )
    except RiskError as exc:
        log.warning("No failure risk for this version: %s", exc)
        return None
    if not judged:
        try:
            judged = crossfit_alerts(
                table,
                readings,
                target_precision=target,
                within_days=within,
                method=CALIBRATION_METHOD,
            )
        except RiskError as exc:  # a half of the batteries without a failure to judge by
            log.warning("Alerts not cross-fitted on the validation period: %s", exc)
            judged = {}
    rule = crossfit_rule(readings, since, until, target_precision=target, within_days=within)
    period = f"the validation period {since.date() + pd.Timedelta(days=1)} to {until.date()}"
    rows = {"this model": judged} if judged else {}
    return AlertReport(calibration, period, {**rows, f"cycle rule ({rule.pop('chosen')})": rule})


def log_alert_report(report: AlertReport | None) -> None:
    """The threshold and calibration as run parameters and the reliability plot as an
    artifact, in the active run (the trainers return `report.metrics()` with theirs)."""
    if report is None:
        mlflow.set_tag("pitstop.failure_risk", "none: no failure in the validation period")
        return
    mlflow.log_params(report.calibration.params())
    mlflow.set_tag("pitstop.alert_precision_reached", str(report.calibration.reached).lower())
    mlflow.log_figure(reliability_figure(report.calibration.reliability), RELIABILITY_FILE)


def tag_version(model_name: str, version: str, report: AlertReport | None) -> None:
    """The registered version's alert threshold tag (what the stream alerts at)."""
    if report is None:
        return
    from mlflow.tracking import MlflowClient

    MlflowClient().set_model_version_tag(
        model_name, version, THRESHOLD_TAG, repr(float(report.calibration.threshold))
    )
