"""Alert quality, risk calibration and forecast accuracy per model family, on fleets no model
was trained on.

Protocol (every number out of sample):
- training fleets: the simulator (seed 7) and the second source (`benchmarks/fleets/
  walkfleet.py`, seed 0), each as the trainers see it: its readings, no truth file;
- each family is fitted as `pitstop train` fits it: it learns from the days up to the
  time-based validation start (`lstm_fit.time_validation_start`; the LSTM early-stops on the
  windows after it), its risk is calibrated and its alert threshold set on the readings after
  it (failures read from the readings themselves: `risk.failure_dates`), and the cycle rule's
  N and T are tuned on the whole training fleet for the same objective;
- evaluation fleets: another simulator seed (8) and another walkfleet seed (1), with their
  true failure dates. Every reading of their second half (`AlertPeriod`) is scored with the
  models as fitted, a battery alerts on its first reading whose risk reaches the threshold,
  and alerts are judged against the truth (`metrics.alert_quality`, grace 0) -- the tuned rule
  the same way. ECE is over the scored readings, against "reached its rating within 30 days"
  from the truth (wear failures; the simulator's weak cells and the walkfleet's faults are not
  what the risk estimates, and are reported in recall beside).
- forecast accuracy on the evaluation fleets: each battery forecast at three origins 30 days
  apart (no refit), NRMSE against the knowable oracle of forecast_quality.py (each battery's
  expected weekly pattern of today, held 30 days) and, for the LSTM, its own weekly baseline.

Run: python benchmarks/alert_quality.py [--families lstm,arima,lightgbm,rule] [--batteries 300]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.fleets.walkfleet import WalkFleetParams, write_fleet  # noqa: E402
from benchmarks.forecast_quality import AlertPeriod, oracle_now, simulate  # noqa: E402
from models.forecasting.calibration import fit_calibrated, period_risks  # noqa: E402
from models.forecasting.candidates import select_candidates  # noqa: E402
from models.forecasting.cv import period_rows, rolling_origin_folds  # noqa: E402
from models.forecasting.data import load_readings  # noqa: E402
from models.forecasting.metrics import alert_quality, nrmse  # noqa: E402
from models.forecasting.pyfunc import coerce_model_input  # noqa: E402
from models.forecasting.risk import (  # noqa: E402
    expected_calibration_error,
    first_alerts,
)
from models.forecasting.rule import rule_days, tune_rule  # noqa: E402

log = logging.getLogger("alert_quality")
WITHIN, HORIZON, WINDOW, TARGET = 30, 30, 60, 0.97


@dataclass
class Fleet:
    """A fleet's readings, and (evaluation fleets) its truth."""

    name: str
    readings: pd.DataFrame
    truth: pd.DataFrame | None = None  # battery_id, failure_date, cause
    expected: pd.DataFrame | None = None  # battery_id, date, expected_daily_cycles


@dataclass
class Fitted:
    """A family fitted and calibrated on a training fleet."""

    family: str
    model: Any
    threshold: float
    seconds: float
    calibration: dict = field(default_factory=dict)


def simulator_fleet(work: Path, batteries: int, days: int, seed: int) -> Fleet:
    folder = work / f"sim-{seed}"
    simulate(folder, batteries, days, seed, "2024-01-01")
    truth = folder / "sim" / "truth"
    return Fleet(
        f"simulator seed {seed}",
        load_readings(folder / "sim"),
        pd.read_csv(truth / "batteries.csv"),
        pd.read_csv(truth / "readings.csv.gz", parse_dates=["date"]),
    )


def walk_fleet(work: Path, batteries: int, days: int, seed: int) -> Fleet:
    folder = work / f"walk-{seed}"
    params = WalkFleetParams(
        batteries=batteries, days=days, seed=seed, start_date=dt.date(2023, 3, 1)
    )
    path = write_fleet(folder, params)
    truth = pd.read_csv(folder / "truth" / "batteries.csv", dtype={"battery_id": str})
    expected = pd.read_csv(
        folder / "truth" / "readings.csv.gz", dtype={"battery_id": str}, parse_dates=["date"]
    )
    return Fleet(f"walkfleet seed {seed}", load_readings(path), truth, expected)


def fit_family(family: str, train: Fleet, seed: int = 0) -> Fitted:
    """Fit and calibrate as the trainers do (`calibration.fit_calibrated`)."""
    started = time.monotonic()
    (candidate,) = select_candidates([family])
    model, result = fit_calibrated(
        candidate, train.readings, target_precision=TARGET, within_days=WITHIN, seed=seed
    )
    return Fitted(
        family,
        model,
        result.threshold,
        time.monotonic() - started,
        {"val_precision": result.validation_precision, "val_ece": result.ece},
    )


def scored_period(model: Any, fleet: Fleet) -> tuple[pd.DataFrame, AlertPeriod]:
    """battery_id, date and calibrated risk of every reading of the fleet's alert period."""
    period = AlertPeriod.of(fleet.readings, WINDOW)
    rows = period_rows(fleet.readings, period.since, period.stop, WINDOW, WITHIN)
    table = period_risks(model, rows)
    table["risk"] = model.risk_calibrator.apply(table["raw_risk"].to_numpy(float))
    return table, period


def judged(alert_dates: pd.Series, table: pd.DataFrame, fleet: Fleet, period: AlertPeriod) -> dict:
    """alert_quality of first alerts against the truth: all failures and wear failures."""
    truth = fleet.truth.assign(battery_id=fleet.truth["battery_id"].astype(str))
    scored = table[["battery_id", "date"]].assign(
        predicted_failure_date=table["battery_id"]
        .map(alert_dates)
        .where(table["battery_id"].map(alert_dates) == table["date"])
    )
    # A battery alerts on its first firing reading: that reading predicts failure on its day.
    due = period.due(truth)
    worn = period.due(truth[truth["cause"].isin(["worn"])])
    everything = alert_quality(scored, truth, WITHIN, 0)
    observed = alert_quality(scored, due, WITHIN, 0)
    return {
        "alerts": everything["alerts"],
        "precision": everything["precision"],
        "due": observed["batteries_due"],
        "recall": observed["recall"],
        "recall_worn": alert_quality(scored, worn, WITHIN, 0)["recall"],
        "median_lead_days": observed["median_lead_days"],
    }


def wear_labels(table: pd.DataFrame, truth: pd.DataFrame) -> np.ndarray:
    """1 where the battery wears out within 30 days of the reading (from the truth)."""
    worn = truth[truth["cause"] == "worn"].assign(battery_id=lambda t: t["battery_id"].astype(str))
    failure = pd.to_datetime(table["battery_id"].map(worn.set_index("battery_id")["failure_date"]))
    days = (failure - pd.to_datetime(table["date"])).dt.days
    return ((days >= 0) & (days <= WITHIN)).to_numpy(float)


def forecast_accuracy(model: Any, fleet: Fleet) -> dict[str, float]:
    """NRMSE at three origins 30 days apart (no refit), the oracle's, and the LSTM baseline's."""
    folds = rolling_origin_folds(fleet.readings, 3, HORIZON, WINDOW)
    actual, forecast, oracle, baseline = [], [], [], []
    for fold in folds:
        rows = coerce_model_input(fold.inputs, array_columns=model.extra_inputs)
        actual.append(fold.actual)
        forecast.append(model.forecast(rows))
        oracle.append(oracle_now(fold, fleet.expected))
        baseline.append(_weekly_baseline(model, rows))
    out = {
        "nrmse": nrmse(np.vstack(actual), np.vstack(forecast)),
        "oracle_nrmse": nrmse(np.vstack(actual), np.vstack(oracle)),
    }
    if baseline[0] is not None:
        out["baseline_nrmse"] = nrmse(np.vstack(actual), np.vstack(baseline))
    return out


def _weekly_baseline(model: Any, rows: pd.DataFrame) -> np.ndarray | None:
    spec = getattr(model, "spec", None)
    if spec is None:
        return None
    from models.forecasting.lstm_windows import encode_windows

    _, base, scale = encode_windows(rows, spec)
    return base * scale[:, None]


def evaluate(fitted: Fitted, fleet: Fleet) -> dict:
    table, period = scored_period(fitted.model, fleet)
    alerts = first_alerts(table, table["risk"].to_numpy() >= fitted.threshold)
    scores = judged(alerts, table, fleet, period)
    labels = wear_labels(table, fleet.truth)
    scores["ece"] = expected_calibration_error(table["risk"].to_numpy(), labels)
    # Most readings are far from their rating (risk ~0, no failure): ECE over the readings
    # that could plausibly fail in time alone, the harder half of the test.
    near = table["raw_risk"].to_numpy() > 0
    scores["ece_plausible"] = expected_calibration_error(
        table["risk"].to_numpy()[near], labels[near]
    )
    scores.update(forecast_accuracy(fitted.model, fleet))
    return scores


def evaluate_rule(rule: Any, fleet: Fleet) -> dict:
    period = AlertPeriod.of(fleet.readings, WINDOW)
    days = rule_days(fleet.readings, rule.mean_days)
    dates = pd.to_datetime(days["date"])
    table = days[(dates > period.since) & (dates <= period.stop)].reset_index(drop=True)
    table["battery_id"] = table["battery_id"].astype(str)
    alerts = first_alerts(table, table["days"].to_numpy() <= rule.alert_days)
    return judged(alerts, table, fleet, period)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default="lstm,arima,lightgbm,rule")
    parser.add_argument("--batteries", type=int, default=300)
    parser.add_argument("--days", type=int, default=400)
    parser.add_argument("--training", default="simulator,walkfleet")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    warnings.simplefilter("ignore")
    import torch

    torch.set_num_threads(1)
    families = [f for f in args.families.split(",") if f]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sim_eval = simulator_fleet(work, args.batteries, args.days, seed=8)
        walk_eval = walk_fleet(work, args.batteries, args.days, seed=1)
        trainings = {
            "simulator": lambda: simulator_fleet(work, args.batteries, args.days, seed=7),
            "walkfleet": lambda: walk_fleet(work, args.batteries, args.days, seed=0),
        }
        for name in args.training.split(","):
            train = trainings[name]()
            rule, _ = tune_rule(train.readings, TARGET, WITHIN)
            print(f"\n== trained on {train.name}: rule {rule.describe()} ==", flush=True)
            for fleet in (sim_eval, walk_eval):
                rows.append(
                    {
                        "train": train.name,
                        "eval": fleet.name,
                        "family": f"rule N={rule.mean_days} T={rule.alert_days}",
                        **evaluate_rule(rule, fleet),
                    }
                )
            for family in families:
                fitted = fit_family(family, train)
                print(
                    f"{family}: fitted and calibrated in {fitted.seconds:.0f}s, threshold "
                    f"{fitted.threshold:.4f} {fitted.calibration}",
                    flush=True,
                )
                for fleet in (sim_eval, walk_eval):
                    rows.append(
                        {
                            "train": train.name,
                            "eval": fleet.name,
                            "family": family,
                            "fit_s": round(fitted.seconds),
                            **evaluate(fitted, fleet),
                        }
                    )
                    print(pd.DataFrame(rows[-1:]).round(4).to_string(index=False), flush=True)
    table = pd.DataFrame(rows)
    print("\n== all ==")
    print(table.round(4).to_string(index=False))
    if args.json:
        args.json.write_text(json.dumps(rows, default=float, indent=1))


if __name__ == "__main__":
    main()
