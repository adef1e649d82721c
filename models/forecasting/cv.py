"""Rolling-origin cross-validation folds over a fleet's daily series, and scoring on them.

Fold k cuts the calendar at one origin date shared by every battery (the last fold's origin is
`horizon` days before the last reading, earlier folds step back `step` days each). A model is
fitted on the readings up to the origin and forecasts, for each battery in service then, the
`horizon` days after its last reading on or before the origin. A shared calendar cut keeps a
global model (LightGBM, the LSTM) from learning from days that are the future of another
battery's test period. Actuals are NaN on days without a reading (parked, or after the
battery's end), which the metrics skip, as in `models.forecasting.metrics.holdout_targets`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.errors import PitstopError
from models.forecasting.features import (
    HISTORY_COLUMN,
    build_history_windows,
    daily_series,
    model_input_columns,
)
from models.forecasting.metrics import forecast_metrics, seasonal_naive_scale

METRICS: tuple[str, ...] = ("nrmse", "mae", "smape", "mase")


# Readings whose remaining cycles exceed this many times the horizon of their window's
# busiest day cannot plausibly fail in time: they are not scored for the risk, which is 0
# (a forecast would need over 3x the window's maximum daily use, every day, to fail).
PLAUSIBLE_FACTOR = 3.0
# Batteries whose readings a fold's period scores, at most (the same ones for every
# candidate): per-window models refit on every window, and a large fleet's alerts are judged
# as well on a few hundred batteries as on all of them.
PERIOD_BATTERIES = 600


@dataclass(frozen=True)
class PeriodRows:
    """The readings of a period: `keys` (battery_id, date) of every one, and the model input
    `rows` of those that could plausibly fail within the horizon, at positions `scored`."""

    keys: pd.DataFrame
    rows: pd.DataFrame
    scored: np.ndarray


def period_rows(
    readings: pd.DataFrame,
    since: pd.Timestamp,
    until: pd.Timestamp,
    window_days: int,
    within_days: int = 30,
    max_batteries: int | None = None,
) -> PeriodRows:
    """The readings in (since, until], each with its own window of the readings up to it;
    of at most `max_batteries` batteries (those whose ids hash lowest: a fixed choice)."""
    dates = pd.to_datetime(readings["date"])
    upto = readings[dates <= until]
    wanted = upto.loc[pd.to_datetime(upto["date"]) > since, ["battery_id", "date"]]
    ids = pd.Series(wanted["battery_id"].astype(str).unique())
    if max_batteries is not None and len(ids) > max_batteries:
        order = np.argsort(pd.util.hash_pandas_object(ids, index=False).to_numpy())
        wanted = wanted[wanted["battery_id"].astype(str).isin(ids.iloc[order[:max_batteries]])]
    rows = build_history_windows(upto, window_days, wanted).reset_index(drop=True)
    keys = pd.DataFrame(
        {
            "battery_id": rows["battery_id"].astype(str).to_numpy(),
            "date": pd.to_datetime(rows["date"]).to_numpy(),
        }
    )
    busiest = np.array(
        [np.nanmax(h) if np.isfinite(h).any() else 0.0 for h in rows[HISTORY_COLUMN]]
    )
    remaining = (rows["battery_rated_cycles"] - rows["lifetime_cycles_used"]).to_numpy(float)
    scored = np.flatnonzero(remaining <= PLAUSIBLE_FACTOR * within_days * busiest)
    inputs = rows.iloc[scored].drop(columns=["battery_id", "date"]).reset_index(drop=True)
    return PeriodRows(keys, inputs, scored)


class CvError(PitstopError, ValueError):
    """Readings that cannot be split into the cross-validation folds asked for."""


@dataclass(frozen=True)
class CvFold:
    """One rolling origin: what a model may learn from, what it forecasts, and the truth."""

    number: int
    origin: pd.Timestamp
    history: pd.DataFrame  # readings on or before the origin
    inputs: pd.DataFrame  # contract rows (plus battery_id and date = the forecast's base day)
    actual: np.ndarray  # (len(inputs), horizon), NaN where no reading
    mase_scale: float
    # The readings in (origin, origin + horizon]: what a model fitted at the origin would
    # score until the next fit, for its failure risk and alerts.
    period: PeriodRows | None = None

    @property
    def horizon(self) -> int:
        """Days forecast per row."""
        return int(self.actual.shape[1])

    def target_dates(self) -> pd.DataFrame:
        """(battery_id, date) of every actual cell, row-major, for joining outside truth."""
        base = pd.to_datetime(self.inputs["date"]).to_numpy()
        steps = np.arange(1, self.horizon + 1) * np.timedelta64(1, "D")
        return pd.DataFrame(
            {
                "battery_id": np.repeat(self.inputs["battery_id"].to_numpy(), self.horizon),
                "date": (base[:, None] + steps[None, :]).ravel(),
            }
        )


def rolling_origin_folds(
    readings: pd.DataFrame,
    folds: int = 3,
    horizon_days: int = 30,
    window_days: int = 60,
    step_days: int | None = None,
    min_history_days: int = 14,
) -> list[CvFold]:
    """`folds` rolling-origin folds, oldest first; see the module docstring.

    A battery joins a fold when it has a reading within `min_history_days` days up to the
    origin, its first reading is at least that long before, and it has a day left after.
    """
    if folds < 1 or horizon_days < 1 or window_days < 1 or min_history_days < 1:
        raise CvError("folds, horizon, window and minimum history must each be at least 1.")
    step = horizon_days if step_days is None else step_days
    if step < 1:
        raise CvError(f"The step between fold origins must be at least 1 day, got {step}.")
    if readings.empty:
        raise CvError("There are no readings to cross-validate on.")
    dense = daily_series(readings)
    dates = dense["date"]
    first_day, last_day = dates.min(), dates.max()
    span = (last_day - first_day).days + 1
    needed = min_history_days + horizon_days + (folds - 1) * step
    if span < needed:
        raise CvError(
            f"The readings span {span} days but {folds} fold(s) of {horizon_days} days after "
            f"{min_history_days} days of history need {needed}; lower --cv or --horizon."
        )
    by_battery = dense.groupby("battery_id")["date"]
    first_of, last_of = by_battery.min(), by_battery.max()
    observed = dense[dense["observed"]]
    out = []
    for number in range(1, folds + 1):
        origin = last_day - pd.Timedelta(days=horizon_days + (folds - number) * step)
        out.append(
            _fold(
                readings,
                dense,
                observed,
                first_of,
                last_of,
                origin,
                number,
                horizon_days,
                window_days,
                min_history_days,
            )
        )
    return out


def _fold(
    readings: pd.DataFrame,
    dense: pd.DataFrame,
    observed: pd.DataFrame,
    first_of: pd.Series,
    last_of: pd.Series,
    origin: pd.Timestamp,
    number: int,
    horizon: int,
    window_days: int,
    min_history: int,
) -> CvFold:
    before = observed[observed["date"] <= origin]
    base = before.groupby("battery_id")["date"].max()
    eligible = (
        (base >= origin - pd.Timedelta(days=min_history - 1))
        & (first_of.reindex(base.index) <= origin - pd.Timedelta(days=min_history - 1))
        & (last_of.reindex(base.index) > origin)
    )
    base = base[eligible]
    if base.empty:
        raise CvError(
            f"No battery is in service with {min_history} days of history at the origin of "
            f"fold {number} ({origin.date()}); lower --cv or --horizon."
        )
    history = readings[pd.to_datetime(readings["date"]) <= origin].reset_index(drop=True)
    period = period_rows(
        readings,
        origin,
        origin + pd.Timedelta(days=horizon),
        window_days,
        max_batteries=PERIOD_BATTERIES,
    )
    targets = pd.DataFrame({"battery_id": base.index, "date": base.to_numpy()})
    inputs = build_history_windows(history, window_days, targets).reset_index(drop=True)
    actual = _actuals(observed, inputs, horizon)
    series = [
        g.to_numpy(dtype=np.float64)
        for _, g in dense[dense["date"] <= origin].groupby("battery_id")["daily_cycles_used"]
    ]
    return CvFold(
        number=number,
        origin=origin,
        history=history,
        inputs=inputs,
        actual=actual,
        mase_scale=seasonal_naive_scale(series),
        period=period,
    )


def _actuals(observed: pd.DataFrame, inputs: pd.DataFrame, horizon: int) -> np.ndarray:
    """(n, horizon) daily cycles read on the days after each row's base date; NaN elsewhere."""
    actual = np.full((len(inputs), horizon), np.nan)
    row_of = pd.Series(np.arange(len(inputs)), index=inputs["battery_id"].to_numpy())
    mine = observed[observed["battery_id"].isin(row_of.index)]
    rows = row_of.reindex(mine["battery_id"].to_numpy()).to_numpy()
    base = pd.to_datetime(inputs["date"]).to_numpy()[rows]
    step = (mine["date"].to_numpy() - base) // np.timedelta64(1, "D")
    ok = (step >= 1) & (step <= horizon)
    actual[rows[ok], step[ok] - 1] = mine["daily_cycles_used"].to_numpy(dtype=np.float64)[ok]
    return actual


def model_inputs(fold: CvFold) -> pd.DataFrame:
    """The fold's input rows in contract columns only (with the optional health arrays the
    readings gave), as a scoring client would send them."""
    return fold.inputs[model_input_columns(fold.inputs)]


def score_fold(fold: CvFold, predicted: np.ndarray) -> dict[str, float]:
    """NRMSE, MAE, sMAPE, MASE (and RMSE) of a forecast of the fold's inputs."""
    predicted = np.asarray(predicted, dtype=np.float64)
    if predicted.shape != fold.actual.shape:
        raise CvError(f"A forecast of shape {predicted.shape} for a fold of {fold.actual.shape}.")
    return forecast_metrics(fold.actual, predicted, fold.mase_scale)


def score_forecaster(
    predict: Callable[[pd.DataFrame], np.ndarray], folds: list[CvFold]
) -> dict[str, float]:
    """Mean over folds of `score_fold` for a forecaster that needs no refit (e.g. a champion)."""
    scores = [score_fold(fold, predict(model_inputs(fold))) for fold in folds]
    return {k: float(np.mean([s[k] for s in scores])) for k in scores[0]}
