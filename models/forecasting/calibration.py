"""Scoring a fitted forecaster over a period of readings and calibrating its risk there.

A forecaster fitted on readings up to some day scores every reading after it -- each from
its own window, so only its past -- and the raw risks of that period, with failures read
from the data (`risk.failure_dates`), calibrate the risk and set the alert threshold. The
trainers use one time-based validation period; the AutoML sweep pools its folds' periods.
`crossfit_alerts` judges alerts on a period fairly: the threshold (or the rule's N and T)
of each half of the batteries is chosen on the other half.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from models.forecasting.cv import PeriodRows, period_rows
from models.forecasting.pyfunc import ForecastPythonModel, coerce_model_input
from models.forecasting.risk import (
    RiskCalibration,
    RiskCalibrator,
    alert_outcomes,
    calibrate_risk,
    expected_calibration_error,
    failure_dates,
    first_alert_curve,
    first_alerts,
    reading_labels,
    settle_threshold,
)

log = logging.getLogger(__name__)

SCORE_CHUNK = 512


def period_risks(
    model: ForecastPythonModel,
    period: PeriodRows,
    deadline_check: Callable[[], bool] | None = None,
) -> pd.DataFrame | None:
    """battery_id, date and the model's raw risk of every reading of `period` (0 for those
    not plausible); None when `deadline_check()` says time is up between chunks."""
    raw = np.zeros(len(period.keys))
    inputs = coerce_model_input(period.rows, array_columns=model.extra_inputs)
    for start in range(0, len(inputs), SCORE_CHUNK):
        if deadline_check is not None and deadline_check():
            return None
        chunk = inputs.iloc[start : start + SCORE_CHUNK].reset_index(drop=True)
        risk = model.raw_distribution(chunk).risk
        if risk is None:
            return pd.DataFrame(columns=["battery_id", "date", "raw_risk"])
        raw[period.scored[start : start + SCORE_CHUNK]] = np.nan_to_num(risk, nan=0.0)
    return period.keys.assign(raw_risk=raw)


def calibrate_model(
    model: ForecastPythonModel,
    table: pd.DataFrame,
    readings: pd.DataFrame,
    *,
    target_precision: float,
    within_days: int,
    method: str = "platt",
) -> RiskCalibration:
    """Calibrate `model`'s risk on `table` (`period_risks` of a period after its fit) with
    failures read from `readings`, and give it the calibrator and the alert threshold."""
    data_end = pd.to_datetime(readings["date"]).max()
    calibration = calibrate_risk(
        table,
        failure_dates(readings),
        data_end,
        target_precision=target_precision,
        within_days=within_days,
        method=method,
    )
    model.risk_calibrator = calibration.calibrator
    model.alert_threshold = calibration.threshold
    model.alert_within_days = within_days
    log.info(
        "Risk calibrated (%s) on %d readings, %d within %d days of a failure; alert threshold "
        "%.4f (precision %.3f on validation), ECE %.4f",
        calibration.calibrator.method,
        calibration.rows,
        calibration.positives,
        within_days,
        calibration.threshold,
        calibration.validation_precision,
        calibration.ece,
    )
    return calibration


def halves(batteries: pd.Series, seed: int = 0, failing: pd.Series | None = None) -> np.ndarray:
    """A fixed split of batteries in two halves (by a hash of the id): True for the second.

    With `failing` (per row: its battery fails within the horizon of some reading), the
    batteries that fail are dealt alternately to each half in hash order, so that both halves
    hold failures to calibrate and judge by even when the period holds only a few."""
    ids = batteries.astype(str)
    codes = pd.util.hash_pandas_object(ids, index=False).to_numpy()
    second = ((codes + np.uint64(seed)) % np.uint64(2)).astype(bool)
    if failing is None:
        return second
    fails = pd.Series(np.asarray(failing, bool)).groupby(ids.to_numpy()).any()
    failed = fails.index[fails.to_numpy()]
    if len(failed) < 2:
        return second
    order = pd.util.hash_pandas_object(pd.Series(failed), index=False).to_numpy()
    dealt = pd.Series(np.arange(len(failed)) % 2 == 1, index=failed[np.argsort(order)])
    side = ids.map(dealt).eq(True).to_numpy()
    return np.where(ids.isin(dealt.index).to_numpy(), side, second)


def crossfit_alerts(
    table: pd.DataFrame,
    readings: pd.DataFrame,
    *,
    target_precision: float,
    within_days: int,
    method: str = "platt",
) -> dict[str, float]:
    """Alert quality and ECE of a model's risk on `table` (battery_id, date, raw_risk), each
    half of the batteries judged with the calibration and threshold fitted on the other."""
    failures = failure_dates(readings)
    data_end = pd.to_datetime(readings["date"]).max()
    labels = reading_labels(table, failures, data_end, within_days)
    second = halves(table["battery_id"], failing=labels == 1.0)
    risk = np.full(len(table), np.nan)
    alerts = []
    for fit_on in (~second, second):
        part, other = table[fit_on], table[~fit_on]
        label = reading_labels(part, failures, data_end, within_days)
        calibrator = RiskCalibrator.fit(part["raw_risk"].to_numpy(float), label, method)
        curve = first_alert_curve(
            part.assign(risk=calibrator.apply(part["raw_risk"].to_numpy(float))),
            failures,
            data_end,
            within_days,
        )
        threshold = settle_threshold(curve, target_precision)[0]
        applied = calibrator.apply(other["raw_risk"].to_numpy(float))
        risk[~fit_on] = applied
        alerts.append(first_alerts(other, applied >= threshold))
    scores = alert_outcomes(pd.concat(alerts), table, failures, data_end, within_days)
    return {**scores, "ece": expected_calibration_error(risk, labels)}


def crossfit_rule(
    readings: pd.DataFrame,
    since: pd.Timestamp,
    until: pd.Timestamp,
    *,
    target_precision: float,
    within_days: int,
) -> dict[str, Any]:
    """The cycle rule's alert quality on readings in (since, until], each half of the
    batteries with the N and T tuned on the other half's readings of the same period."""
    from models.forecasting.rule import MEAN_DAYS, rule_days, rule_scores

    failures = failure_dates(readings)
    data_end = pd.to_datetime(readings["date"]).max()
    upto = readings[pd.to_datetime(readings["date"]) <= until]
    tables = {}
    for n in MEAN_DAYS:
        days = rule_days(upto, n)
        tables[n] = days[pd.to_datetime(days["date"]) > since].reset_index(drop=True)
    first_table = tables[MEAN_DAYS[0]]
    failing = reading_labels(first_table, failures, data_end, within_days) == 1.0
    second = halves(first_table["battery_id"], failing=failing)
    alerts, chosen = [], []
    for fit_on in (~second, second):
        scores = pd.concat(
            [
                rule_scores(table[fit_on], failures, data_end, within_days).assign(mean_days=n)
                for n, table in tables.items()
            ],
            ignore_index=True,
        )
        scores["reached"] = scores["precision"] >= target_precision
        best = scores.fillna({"recall": 0.0, "median_lead_days": 0.0}).sort_values(
            ["reached", "recall", "median_lead_days", "alert_days"],
            ascending=[False, False, False, True],
        )
        n, t = int(best["mean_days"].iloc[0]), int(best["alert_days"].iloc[0])
        chosen.append(f"N={n}, T={t}")
        other = tables[n][~fit_on]
        alerts.append(first_alerts(other, other["days"].to_numpy() <= t))
    table = tables[MEAN_DAYS[0]]
    scores = alert_outcomes(pd.concat(alerts), table, failures, data_end, within_days)
    return {**scores, "chosen": "; ".join(chosen)}


def fit_calibrated(
    candidate: Any,
    readings: pd.DataFrame,
    *,
    target_precision: float,
    within_days: int = 30,
    window_days: int = 60,
    horizon_days: int = 30,
    seed: int = 0,
) -> tuple[ForecastPythonModel, RiskCalibration]:
    """Fit an AutoML candidate as `pitstop train rnn` fits the LSTM, and calibrate it.

    The model learns from the days up to the time-based validation start (the LSTM
    early-stops on the windows after it), and its risk is calibrated and its threshold set
    on the readings after it.
    """
    from models.forecasting.candidates import FitRequest
    from models.forecasting.lstm_fit import time_validation_start

    since = time_validation_start(readings["date"], horizon_days)
    until = pd.to_datetime(readings["date"]).max()
    dates = pd.to_datetime(readings["date"])
    own_validation = candidate.name == "lstm"
    history = readings if own_validation else readings[dates <= since].reset_index(drop=True)
    request = FitRequest(
        history,
        window_days=window_days,
        horizon_days=horizon_days,
        seed=seed,
        alert_precision=target_precision,
        alert_within_days=within_days,
        val_since=since if own_validation else None,
    )
    model = candidate.fit(request)
    period = period_rows(readings, since, until, window_days, within_days)
    table = period_risks(model, period)
    assert table is not None  # no deadline
    calibration = calibrate_model(
        model, table, readings, target_precision=target_precision, within_days=within_days
    )
    return model, calibration
