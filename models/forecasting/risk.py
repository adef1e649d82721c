"""The 30-day failure risk: labels from the readings themselves, calibration, the alert threshold.

Everything here works on a user's own fleet with no truth file:

- `failure_dates` reads each battery's failure from its readings: the first day its lifetime
  cycles reach its rated cycles, or -- when a dead battery sent no reading that day -- the
  day after its last reading, when it left service within a week's use of its rating while
  the fleet kept reporting.
- `calibrate_risk` maps raw risks (`models.forecasting.distribution.raw_failure_risk`) of
  readings in a time-based validation period onto observed frequencies: Platt scaling (a
  logistic curve on the raw risk's log-odds; strictly increasing, so the raw risks' order --
  and every alert decision -- is kept) or isotonic regression, both scikit-learn's.
- `choose_threshold` is the lowest calibrated risk at which the per-battery first alerts of
  the validation period reach the target precision (`forecast.alert_precision`), with the
  semantics of `models.forecasting.metrics.alert_quality`: an alert is right when the
  battery fails within `within_days` of it; one whose outcome the data cannot tell yet (no
  failure, and fewer than `within_days` days of data after it) is left out.
- `settle_threshold` keeps that threshold only when the period holds enough verifiable first
  alerts to show the target precision (`certifying_alerts`: 99 at 0.97); with fewer, the
  lowest threshold with no false alert is luck of a small sample (12 alerts all right say
  little about a 97% precision), so the threshold is raised to the target itself -- on a
  calibrated risk a first alert at risk r is right with probability about r.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from core.errors import PitstopError

log = logging.getLogger(__name__)

# A battery that stops reporting at least this long before the fleet does has left service.
LEFT_SERVICE_DAYS = 14
# ...and failed at its rating when it stopped within this many days of its mean use of it.
NEAR_RATING_DAYS = 7
# Raw risks are clipped this far from 0 and 1 before taking log-odds.
_EPS = 1e-6
CALIBRATION_METHODS = ("platt", "isotonic")


class RiskError(PitstopError, ValueError):
    """Readings or risks that cannot be calibrated; the message says what is missing."""


def failure_dates(readings: pd.DataFrame) -> pd.Series:
    """Each battery's failure date as its readings show it (NaT: none seen); battery_id index.

    The first reading whose lifetime cycles reach the rated cycles; otherwise, for a battery
    that stopped reporting LEFT_SERVICE_DAYS or more before the fleet's last reading with no
    more than NEAR_RATING_DAYS of its mean daily use (last 28 days) left to its rating, the
    day after its last reading (a dead battery sends nothing on the day it fails).
    """
    needed = ("battery_id", "date", "lifetime_cycles_used", "battery_rated_cycles")
    missing = [c for c in needed if c not in readings.columns]
    if missing:
        raise RiskError(f"Failure labels need column(s) {', '.join(missing)}.")
    frame = readings.assign(
        battery_id=readings["battery_id"].astype(str), date=pd.to_datetime(readings["date"])
    ).sort_values(["battery_id", "date"], kind="stable")
    reached = frame[frame["lifetime_cycles_used"] >= frame["battery_rated_cycles"]]
    at_rating = reached.groupby("battery_id")["date"].min()
    last = frame.groupby("battery_id").tail(1).set_index("battery_id")
    recent = frame[frame["date"] > frame["battery_id"].map(last["date"]) - pd.Timedelta(days=28)]
    mean_use = recent.groupby("battery_id")["daily_cycles_used"].sum() / 28.0
    remaining = last["battery_rated_cycles"] - last["lifetime_cycles_used"]
    left = last["date"] <= frame["date"].max() - pd.Timedelta(days=LEFT_SERVICE_DAYS)
    near = remaining <= NEAR_RATING_DAYS * mean_use.reindex(last.index).fillna(0.0)
    stopped = (last["date"] + pd.Timedelta(days=1)).where(left & near)
    dates = at_rating.reindex(last.index).fillna(stopped)
    return pd.to_datetime(dates).rename("failure_date")


def reading_labels(
    rows: pd.DataFrame, failures: pd.Series, data_end: pd.Timestamp, within_days: int
) -> np.ndarray:
    """Per row (battery_id, date): 1.0 when its battery fails within `within_days`, 0.0 when
    the data shows it does not, NaN when the data ends before it can tell."""
    dates = pd.to_datetime(rows["date"]).to_numpy()
    failure = pd.to_datetime(rows["battery_id"].astype(str).map(failures).to_numpy()).to_numpy()
    days = (failure - dates) / np.timedelta64(1, "D")
    fails = ~np.isnan(days) & (days >= 0) & (days <= within_days)
    known = fails | ~np.isnan(days) | (dates + np.timedelta64(within_days, "D") <= data_end)
    return np.where(fails, 1.0, np.where(known, 0.0, np.nan))


@dataclass(frozen=True)
class RiskCalibrator:
    """Raw risk -> calibrated probability: Platt scaling (`slope`, `intercept` on the raw
    risk's log-odds) or isotonic regression (`x`, `y`: np.interp's points)."""

    method: str
    slope: float = 1.0
    intercept: float = 0.0
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()

    def apply(self, raw: np.ndarray) -> np.ndarray:
        """Calibrated risk of raw risks (NaN stays NaN)."""
        raw = np.asarray(raw, dtype=np.float64)
        if self.method == "isotonic":
            out = np.interp(raw, self.x, self.y)
        else:
            odds = _logit(raw)
            out = 1.0 / (1.0 + np.exp(-(self.intercept + self.slope * odds)))
        return np.where(np.isnan(raw), np.nan, out)

    @classmethod
    def fit(cls, raw: np.ndarray, label: np.ndarray, method: str = "platt") -> RiskCalibrator:
        """Fit on raw risks and 0/1 labels (rows with a NaN in either are skipped)."""
        if method not in CALIBRATION_METHODS:
            raise RiskError(
                f"Unknown calibration '{method}'; use {' or '.join(CALIBRATION_METHODS)}."
            )
        raw, label = np.asarray(raw, float), np.asarray(label, float)
        keep = ~np.isnan(raw) & ~np.isnan(label)
        raw, label = raw[keep], label[keep]
        if len(np.unique(label)) < 2:
            raise RiskError(
                "The validation readings hold no failure within the horizon (or only failures): "
                "the risk cannot be calibrated; train on a longer period or more batteries."
            )
        if method == "isotonic":
            from sklearn.isotonic import IsotonicRegression

            model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(raw, label)
            return cls("isotonic", x=tuple(model.X_thresholds_), y=tuple(model.y_thresholds_))
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(C=1e6, max_iter=1000).fit(_logit(raw)[:, None], label)
        slope, intercept = float(model.coef_[0, 0]), float(model.intercept_[0])
        if slope <= 0:
            # Raw risk that does not rise with failures is no ranking to keep: say so, and
            # fall back to the frequencies themselves.
            log.warning("Raw risk does not order failures (Platt slope %.3g); isotonic", slope)
            return cls.fit(raw, label, "isotonic")
        return cls("platt", slope=slope, intercept=intercept)

    def to_dict(self) -> dict:
        """A JSON-able form (for MLflow)."""
        return {
            "method": self.method,
            "slope": self.slope,
            "intercept": self.intercept,
            "x": list(self.x),
            "y": list(self.y),
        }


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1.0 - _EPS)
    return np.log(p / (1.0 - p))


def first_alert_curve(
    table: pd.DataFrame, failures: pd.Series, data_end: pd.Timestamp, within_days: int
) -> pd.DataFrame:
    """Per candidate threshold (ascending): first alerts, verifiable ones, right ones, precision.

    `table` holds battery_id, date and `risk`; a battery alerts on its first row whose risk
    reaches the threshold. Thresholds are the risks at which some battery's first alert moves.
    """
    frame = table[["battery_id", "date", "risk"]].dropna(subset=["risk"])
    frame = frame.assign(
        battery_id=frame["battery_id"].astype(str), date=pd.to_datetime(frame["date"])
    ).sort_values(["battery_id", "date"], kind="stable")
    if frame.empty:
        return pd.DataFrame(columns=["threshold", "alerts", "verifiable", "right", "precision"])
    running = frame.groupby("battery_id")["risk"].cummax().to_numpy()
    previous = frame.assign(m=running).groupby("battery_id")["m"].shift(1, fill_value=-1.0)
    record = running > previous.to_numpy()
    rec = frame[record]
    high, low = running[record], previous.to_numpy()[record]
    label = reading_labels(rec, failures, data_end, within_days)
    grid = np.unique(high)
    start = np.searchsorted(grid, low, side="right")
    stop = np.searchsorted(grid, high, side="right")
    counts = {}
    for name, weight in (
        ("alerts", np.ones(len(rec))),
        ("verifiable", (~np.isnan(label)).astype(float)),
        ("right", (label == 1.0).astype(float)),
    ):
        delta = np.zeros(len(grid) + 1)
        np.add.at(delta, start, weight)
        np.add.at(delta, stop, -weight)
        counts[name] = np.cumsum(delta)[:-1]
    curve = pd.DataFrame({"threshold": grid, **counts})
    curve["precision"] = np.where(
        curve["verifiable"] > 0, curve["right"] / curve["verifiable"].clip(lower=1), np.nan
    )
    return curve


def choose_threshold(curve: pd.DataFrame, target_precision: float) -> tuple[float, float, bool]:
    """(threshold, its precision, whether the target was reached): the lowest threshold whose
    first-alert precision reaches the target, else the most precise one (the highest on ties)."""
    usable = curve.dropna(subset=["precision"])
    if usable.empty:
        raise RiskError("No verifiable alert in the validation period to set a threshold on.")
    meets = usable[usable["precision"] >= target_precision]
    if not meets.empty:
        row = meets.iloc[0]
        return float(row["threshold"]), float(row["precision"]), True
    best = usable[usable["precision"] == usable["precision"].max()].iloc[-1]
    log.warning(
        "No threshold reaches precision %.3f on validation; using %.4f (precision %.3f)",
        target_precision,
        best["threshold"],
        best["precision"],
    )
    return float(best["threshold"]), float(best["precision"]), False


def certifying_alerts(target_precision: float, confidence: float = 0.95) -> int:
    """First alerts that, all right, show precision >= `target_precision` at `confidence`: the
    least n with target**n <= 1 - confidence (99 for 0.97 at 95%)."""
    if target_precision >= 1.0:
        return int(np.iinfo(np.int32).max)
    return int(np.ceil(np.log(1.0 - confidence) / np.log(target_precision)))


def settle_threshold(
    curve: pd.DataFrame, target_precision: float
) -> tuple[float, float, bool, int, float]:
    """(threshold, precision, reached, verifiable alerts, empirical threshold): `choose_threshold`'s
    choice, raised to the target precision itself when the validation period has fewer
    verifiable first alerts at it than `certifying_alerts` -- too few to show the target."""
    empirical, precision, reached = choose_threshold(curve, target_precision)
    at = curve.loc[curve["threshold"] == empirical, "verifiable"]
    verifiable = int(at.iloc[0]) if len(at) else 0
    threshold = empirical
    if verifiable < certifying_alerts(target_precision) and empirical < target_precision:
        threshold = float(target_precision)
        log.warning(
            "Only %d verifiable first alerts on validation (%d show precision %.3f): alert "
            "threshold raised from %.4f to the target, %.3f",
            verifiable,
            certifying_alerts(target_precision),
            target_precision,
            empirical,
            threshold,
        )
    return threshold, precision, reached, verifiable, empirical


def reliability_table(risk: np.ndarray, label: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Per equal-width bin of risk: rows, mean risk and observed failure share (labelled rows)."""
    risk, label = np.asarray(risk, float), np.asarray(label, float)
    keep = ~np.isnan(risk) & ~np.isnan(label)
    risk, label = risk[keep], label[keep]
    which = np.minimum((risk * bins).astype(int), bins - 1)
    frame = pd.DataFrame({"bin": which, "risk": risk, "label": label})
    grouped = frame.groupby("bin").agg(
        rows=("label", "size"), mean_risk=("risk", "mean"), observed=("label", "mean")
    )
    grouped = grouped.reindex(range(bins)).assign(rows=lambda g: g["rows"].fillna(0).astype(int))
    grouped.insert(0, "low", np.arange(bins) / bins)
    grouped.insert(1, "high", (np.arange(bins) + 1) / bins)
    return grouped.reset_index(drop=True)


def expected_calibration_error(risk: np.ndarray, label: np.ndarray, bins: int = 10) -> float:
    """ECE: the row-weighted mean |mean risk - observed share| over equal-width risk bins."""
    table = reliability_table(risk, label, bins)
    used = table[table["rows"] > 0]
    if used.empty:
        return float("nan")
    gap = (used["mean_risk"] - used["observed"]).abs()
    return float((gap * used["rows"]).sum() / used["rows"].sum())


@dataclass(frozen=True)
class RiskCalibration:
    """A forecaster's risk calibration and alert threshold, and how they were found."""

    calibrator: RiskCalibrator
    threshold: float
    target_precision: float
    validation_precision: float
    reached: bool
    ece: float
    rows: int
    positives: int
    batteries_failing: int
    reliability: pd.DataFrame = field(repr=False)
    # First alerts the data could judge at the empirical choice, and that choice itself
    # (below `threshold` when too few alerts showed the target: `settle_threshold`).
    verifiable_alerts: int = 0
    empirical_threshold: float | None = None

    @property
    def raised(self) -> bool:
        """Whether the threshold was raised to the target for want of verifiable alerts."""
        return self.empirical_threshold is not None and self.threshold > self.empirical_threshold

    def params(self) -> dict[str, object]:
        """What a run logs as parameters (and a version as tags)."""
        return {
            "alert_threshold": float(self.threshold),
            "alert_precision_target": self.target_precision,
            "risk_calibration": self.calibrator.method,
            "alert_threshold_empirical": self.empirical_threshold,
        }

    def metrics(self) -> dict[str, float]:
        """What a run logs as metrics about its validation period."""
        return {
            "val_alert_precision": self.validation_precision,
            "val_risk_ece": self.ece,
            "val_risk_rows": float(self.rows),
            "val_risk_positives": float(self.positives),
            "val_batteries_failing": float(self.batteries_failing),
            "val_verifiable_alerts": float(self.verifiable_alerts),
        }


def calibrate_risk(
    table: pd.DataFrame,
    failures: pd.Series,
    data_end: pd.Timestamp,
    *,
    target_precision: float,
    within_days: int,
    method: str = "platt",
) -> RiskCalibration:
    """Fit the calibrator on `table` (battery_id, date, raw_risk) with labels from `failures`,
    then choose the alert threshold on the calibrated risks of the same readings."""
    label = reading_labels(table, failures, data_end, within_days)
    calibrator = RiskCalibrator.fit(table["raw_risk"].to_numpy(float), label, method)
    risk = calibrator.apply(table["raw_risk"].to_numpy(float))
    curve = first_alert_curve(table.assign(risk=risk), failures, data_end, within_days)
    threshold, precision, reached, verifiable, empirical = settle_threshold(curve, target_precision)
    ids = set(table["battery_id"].astype(str))
    failing = failures.dropna()
    return RiskCalibration(
        calibrator=calibrator,
        threshold=threshold,
        target_precision=target_precision,
        validation_precision=precision,
        reached=reached,
        ece=expected_calibration_error(risk, label),
        rows=int((~np.isnan(label)).sum()),
        positives=int(np.nansum(label)),
        batteries_failing=int(len(set(failing.index.astype(str)) & ids)),
        reliability=reliability_table(risk, label),
        verifiable_alerts=verifiable,
        empirical_threshold=empirical,
    )


def first_alerts(table: pd.DataFrame, fires: np.ndarray) -> pd.Series:
    """Each battery's first row (battery_id, date) where `fires` is true: battery_id -> date."""
    fired = table.loc[np.asarray(fires, dtype=bool), ["battery_id", "date"]]
    dates = pd.to_datetime(fired["date"])
    return dates.groupby(fired["battery_id"].astype(str).to_numpy()).min()


def alert_outcomes(
    alerts: pd.Series,
    table: pd.DataFrame,
    failures: pd.Series,
    data_end: pd.Timestamp,
    within_days: int,
) -> dict[str, float]:
    """Recall, precision and median lead of first alerts (battery_id -> date) over the batteries
    of `table`, against failures read from the data (`failure_dates`).

    As `metrics.alert_quality`: an alert is right when its battery fails within `within_days`
    (lead 0..within_days); a failing battery is recalled when it was alerted on or before the
    day it failed. Unlike it, an alert the data cannot judge yet (no failure, fewer than
    `within_days` days of data after it) counts neither way, so a period that ends in the
    middle of things is not held against anyone.
    """
    batteries = pd.Index(table["battery_id"].astype(str).unique())
    first = pd.to_datetime(table["date"]).groupby(table["battery_id"].astype(str)).min()
    failure = pd.to_datetime(failures.reindex(batteries))
    due = failure.notna() & (failure > first.reindex(batteries))
    alert = pd.to_datetime(alerts.reindex(batteries))
    lead = (failure - alert).dt.days
    right = lead.notna() & (lead >= 0) & (lead <= within_days)
    unknown = alert.notna() & failure.isna() & (alert + pd.Timedelta(days=within_days) > data_end)
    judged = alert.notna() & ~unknown
    recalled = due & lead.notna() & (lead >= 0)
    return {
        "due": float(due.sum()),
        "alerts": float(alert.notna().sum()),
        "recall": float(recalled.sum() / due.sum()) if due.any() else float("nan"),
        "precision": float(right.sum() / judged.sum()) if judged.any() else float("nan"),
        "median_lead_days": float(lead[right].median()) if right.any() else float("nan"),
    }
