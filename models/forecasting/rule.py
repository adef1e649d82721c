"""The cycle rule a fleet engineer writes in an afternoon, as a candidate like any model.

    alert when  remaining cycles / mean daily cycles of the last N days  <=  T days

N and T are tuned on the training readings for the objective every model is judged by:
the most batteries alerted before they fail at the target precision, then the longest
median lead. As a forecaster of the contract it forecasts the mean of the last N days on
every day of the horizon, with bands of its own past errors (`models.forecasting.bands`),
so it gives quantiles and a risk and could drive the stream like any other family.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from models.forecasting.bands import MIN_SCALE, ResidualBands, backtest_windows
from models.forecasting.distribution import ForecastDistribution
from models.forecasting.features import HISTORY_COLUMN, daily_series
from models.forecasting.pyfunc import ForecastPythonModel
from models.forecasting.risk import failure_dates

log = logging.getLogger(__name__)

MEAN_DAYS: tuple[int, ...] = (7, 14, 21, 28, 42, 56)
ALERT_DAYS: tuple[int, ...] = tuple(range(1, 46))
# The rule a fleet engineer starts from (issue 16), kept when the readings hold no failure
# to tune on.
UNTUNED = (28, 25)


@dataclass(frozen=True)
class CycleRule:
    """Alert when remaining cycles / mean use of the last `mean_days` <= `alert_days`."""

    mean_days: int
    alert_days: int
    recall: float = float("nan")
    precision: float = float("nan")
    median_lead_days: float = float("nan")
    tuned: bool = True

    def describe(self) -> str:
        """One line for cards and leaderboards."""
        return (
            f"remaining cycles / mean daily cycles of the last {self.mean_days} days "
            f"<= {self.alert_days} days"
        )


def rule_days(readings: pd.DataFrame, mean_days: int) -> pd.DataFrame:
    """Per reading: battery_id, date and the rule's days to failure (0 at or past the rating)."""
    dense = daily_series(readings)
    mean = (
        dense.groupby("battery_id")["daily_cycles_used"]
        .rolling(mean_days, min_periods=1)
        .mean()
        .to_numpy()
    )
    remaining = (dense["battery_rated_cycles"] - dense["lifetime_cycles_used"]).to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        days = np.where(remaining <= 0, 0.0, remaining / mean)
    frame = dense[["battery_id", "date"]].assign(days=days)
    return frame[dense["observed"].to_numpy()].reset_index(drop=True)


def tune_rule(
    readings: pd.DataFrame,
    target_precision: float,
    within_days: int = 30,
    mean_days: Sequence[int] = MEAN_DAYS,
    alert_days: Sequence[int] = ALERT_DAYS,
) -> tuple[CycleRule, pd.DataFrame]:
    """The (N, T) with the best recall at `target_precision`, then the longest median lead,
    on `readings` with failures read from them; and every pair's scores."""
    failures = failure_dates(readings)
    if failures.dropna().empty:
        log.warning(
            "No battery of the training readings reaches its rated cycles: the rule keeps "
            "N=%d, T=%d untuned",
            *UNTUNED,
        )
        return CycleRule(*UNTUNED, tuned=False), pd.DataFrame()
    data_end = pd.to_datetime(readings["date"]).max()
    scores = pd.concat(
        [
            rule_scores(rule_days(readings, n), failures, data_end, within_days, alert_days).assign(
                mean_days=n
            )
            for n in mean_days
        ],
        ignore_index=True,
    )
    ok = scores[scores["precision"] >= target_precision]
    pool = ok if not ok.empty else scores[scores["precision"] == scores["precision"].max()]
    if ok.empty:
        log.warning("No rule reaches precision %.3f on the training readings", target_precision)
    best = pool.sort_values(
        ["recall", "median_lead_days", "alert_days"], ascending=[False, False, True]
    ).iloc[0]
    rule = CycleRule(
        mean_days=int(best["mean_days"]),
        alert_days=int(best["alert_days"]),
        recall=float(best["recall"]),
        precision=float(best["precision"]),
        median_lead_days=float(best["median_lead_days"]),
    )
    log.info(
        "Tuned rule: %s (recall %.3f, precision %.3f)", rule.describe(), rule.recall, rule.precision
    )
    return rule, scores


def rule_scores(
    table: pd.DataFrame,
    failures: pd.Series,
    data_end: pd.Timestamp,
    within_days: int,
    alert_days: Sequence[int] = ALERT_DAYS,
) -> pd.DataFrame:
    """Per T of `alert_days`: the `risk.alert_outcomes` of alerting each battery of `table`
    (battery_id, date, days) on its first reading with days <= T, for every T at once.

    A battery's first alert at T is on the reading where its running minimum of days first
    falls to T or below: each reading that lowers the running minimum (from m_prev to m) is
    the first alert for every T in [m, m_prev), so one pass over those readings scores all T.
    """
    frame = table.assign(
        battery_id=table["battery_id"].astype(str), date=pd.to_datetime(table["date"])
    ).sort_values(["battery_id", "date"], kind="stable")
    low = frame.groupby("battery_id")["days"].cummin().to_numpy()
    high = frame.assign(m=low).groupby("battery_id")["m"].shift(1, fill_value=np.inf).to_numpy()
    lowers = low < high
    rec = frame[lowers]
    rec_low, rec_high = low[lowers], high[lowers]
    ids = rec["battery_id"].to_numpy()
    failure = pd.to_datetime(rec["battery_id"].map(failures)).to_numpy()
    lead = (failure - rec["date"].to_numpy()) / np.timedelta64(1, "D")
    right = (lead >= 0) & (lead <= within_days)
    unknown = np.isnan(lead) & (
        rec["date"].to_numpy() + np.timedelta64(within_days, "D") > data_end
    )
    first = frame.groupby("battery_id")["date"].min()
    fails = pd.to_datetime(failures.reindex(first.index))
    due_ids = set(first.index[fails.notna() & (fails > first)])
    due_rec = np.isin(ids, list(due_ids)) & (lead >= 0)
    rows = []
    for t in alert_days:
        active = (rec_low <= t) & (t < rec_high)
        judged = active & ~unknown
        rows.append(
            {
                "alert_days": t,
                "due": float(len(due_ids)),
                "alerts": float(active.sum()),
                "recall": float((active & due_rec).sum() / len(due_ids)) if due_ids else np.nan,
                "precision": float((active & right).sum() / judged.sum())
                if judged.any()
                else np.nan,
                "median_lead_days": float(np.median(lead[active & right]))
                if (active & right).any()
                else np.nan,
            }
        )
    return pd.DataFrame(rows)


def recent_means(frame: pd.DataFrame, mean_days: int) -> np.ndarray:
    """Each row's mean daily use over the last `mean_days` of its history (NaN: parked)."""
    return np.array(
        [
            np.nan_to_num(np.asarray(h, dtype=np.float64)[-mean_days:], nan=0.0).mean()
            for h in frame[HISTORY_COLUMN]
        ]
    )


class RuleForecastModel(ForecastPythonModel):
    """The tuned rule as a forecaster: a flat forecast at the mean of the last N days."""

    def __init__(
        self,
        rule: CycleRule,
        bands: ResidualBands | None,
        window_days: int = 60,
        horizon_days: int = 30,
    ) -> None:
        self.rule = rule
        self.bands = bands
        self.window_days = window_days
        self.horizon_days = horizon_days

    def forecast(self, frame: pd.DataFrame) -> np.ndarray:
        """The mean of the last N days on every day of the horizon."""
        means = recent_means(frame, self.rule.mean_days)
        return np.repeat(means[:, None], self.horizon_days, axis=1)

    def quantile_forecast(self, frame: pd.DataFrame) -> ForecastDistribution:
        """The flat forecast inside the bands of the rule's own past errors."""
        point = self.forecast(frame)
        if self.bands is None:
            return ForecastDistribution(point)
        return self.bands.apply(point, np.maximum(point[:, 0], MIN_SCALE))


def fit_rule(request: Any) -> RuleForecastModel:
    """Tune the rule on the request's history and measure its bands on its recent past."""
    rule, _ = tune_rule(request.history, request.alert_precision, request.alert_within_days)
    windows, futures = backtest_windows(
        request.history, request.window_days, request.horizon_days, seed=request.seed
    )
    model = RuleForecastModel(rule, None, request.window_days, request.horizon_days)
    point = model.forecast(windows)
    model.bands = ResidualBands.fit(point, futures, np.maximum(point[:, 0], MIN_SCALE))
    return model
