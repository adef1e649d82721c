"""What drives a forecaster's 30-day forecasts, measured by scrambling one kind of input at a time.

Permutation importance, model-agnostic: any `predict` that honours the forecast contract
(contract rows in, (n, horizon) daily cycles out) can be explained, the LSTM and every
AutoML candidate alike. For each group of inputs (the last week of history, the weeks
before, the weekday alignment, the battery's lifetime/rating/age, health signals when the
rows carry them, as `<signal>_history` arrays or single values) the rows' values are shuffled
between batteries, the forecast is redone,
and the growth of the 30-day forecast error is that group's importance. A group the model
ignores scores about 0; one it cannot do without scores high.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from core.errors import PitstopError
from models.forecasting.features import (
    HEALTH_COLUMNS,
    HEALTH_HISTORY_COLUMNS,
    HEALTH_HISTORY_SUFFIX,
    HISTORY_COLUMN,
    STATIC_COLUMNS,
)

log = logging.getLogger(__name__)

Predict = Callable[[pd.DataFrame], np.ndarray]

IMPORTANCE_FILE = "explanation/feature_importance.png"
IMPORTANCE_JSON = "explanation/feature_importance.json"


class ExplanationError(PitstopError, ValueError):
    """Rows or forecasts that cannot be explained."""


@dataclass(frozen=True)
class FeatureGroup:
    """One kind of input: a key for metrics, a plain-language label, and how to scramble it."""

    key: str
    label: str
    scramble: Callable[[pd.DataFrame, np.random.Generator], pd.DataFrame]


def _lag_block(first: int, last: int | None) -> Callable[[pd.DataFrame, np.random.Generator], Any]:
    """Scrambler that swaps history days `first`..`last` back from the end between rows."""

    def scramble(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        histories = [np.asarray(h, dtype=np.float64) for h in frame[HISTORY_COLUMN]]
        donors = rng.permutation(len(histories))
        out = []
        for own, donor_row in zip(histories, donors, strict=True):
            donor = histories[donor_row]
            mixed = own.copy()
            stop = len(own) if last is None else min(last, len(own))
            # Lag k is position -k; a donor too short for a lag leaves the row's own value.
            for lag in range(first, stop + 1):
                if lag <= len(donor):
                    mixed[-lag] = donor[-lag]
            out.append(mixed)
        return frame.assign(**{HISTORY_COLUMN: out})

    return scramble


def _shift_weekdays(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Roll each history's whole weeks by 1-6 days, so its weekly rhythm no longer lines up
    with the days being forecast while its levels stay the same."""
    out = []
    for history in frame[HISTORY_COLUMN]:
        history = np.asarray(history, dtype=np.float64).copy()
        weeks = len(history) // 7
        if weeks:
            tail = history[-7 * weeks :]
            history[-7 * weeks :] = np.roll(tail, int(rng.integers(1, 7)))
        out.append(history)
    return frame.assign(**{HISTORY_COLUMN: out})


def _swap_columns(columns: tuple[str, ...]) -> Callable[[pd.DataFrame, np.random.Generator], Any]:
    """Scrambler that gives each row the `columns` of another row (kept together)."""

    def scramble(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        donors = rng.permutation(len(frame))
        present = [c for c in columns if c in frame.columns]
        swapped = {c: frame[c].to_numpy()[donors] for c in present}
        return frame.assign(**{c: list(v) if v.dtype == object else v for c, v in swapped.items()})

    return scramble


def _swap_health(
    histories: tuple[str, ...], values: tuple[str, ...]
) -> Callable[[pd.DataFrame, np.random.Generator], Any]:
    """Scrambler that gives each row the health signals of another row, all together.

    Day-by-day `histories` are fitted to the row's own history length (the donor's most
    recent days, NaN before them), so they stay aligned with the row's daily cycles.
    """

    def fit(donor: Any, days: int) -> np.ndarray:
        out = np.full(days, np.nan)
        if donor is None or np.ndim(donor) != 1 or days == 0:
            return out
        tail = np.asarray(donor, dtype=np.float64)[-days:]
        out[days - len(tail) :] = tail
        return out

    def scramble(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        donors = rng.permutation(len(frame))
        days = [len(h) for h in frame[HISTORY_COLUMN]]
        swapped: dict[str, Any] = {}
        for column in histories:
            donated = frame[column].tolist()
            swapped[column] = [fit(donated[d], n) for d, n in zip(donors, days, strict=True)]
        for column in values:
            donated = frame[column].to_numpy()[donors]
            swapped[column] = list(donated) if donated.dtype == object else donated
        return frame.assign(**swapped)

    return scramble


def feature_groups(frame: pd.DataFrame) -> list[FeatureGroup]:
    """The input groups a contract frame carries: lags, weekday alignment, statics, health."""
    longest = max((len(h) for h in frame[HISTORY_COLUMN]), default=0)
    groups = [
        FeatureGroup("recent_days", "last 7 days of use (lags 1-7)", _lag_block(1, 7)),
        FeatureGroup("weeks_2_to_4", "days 8-28 before (lags 8-28)", _lag_block(8, 28)),
    ]
    if longest > 28:
        older = FeatureGroup("older_days", "days 29+ before (older lags)", _lag_block(29, None))
        groups.append(older)
    groups.append(FeatureGroup("weekday", "day-of-week rhythm (weekday position)", _shift_weekdays))
    statics = tuple(c for c in STATIC_COLUMNS if c in frame.columns)
    if statics:
        label = "battery lifetime, rated cycles and age"
        groups.append(FeatureGroup("battery_statics", label, _swap_columns(statics)))
    # One group for every health signal, day-by-day arrays and single values alike: they
    # move together in a failing battery, so scrambling one alone would understate them.
    histories = tuple(c for c in HEALTH_HISTORY_COLUMNS if c in frame.columns)
    values = tuple(c for c in HEALTH_COLUMNS if c in frame.columns)
    if histories or values:
        names = [c.removesuffix(HEALTH_HISTORY_SUFFIX) for c in histories]
        names += [c for c in values if c not in names]
        label = "health signals (" + ", ".join(names) + ")"
        groups.append(FeatureGroup("health_signals", label, _swap_health(histories, values)))
    return groups


def forecast_rmse(actual: np.ndarray, predicted: np.ndarray) -> float:
    """RMSE over every forecast day with a known actual (NaN days are skipped)."""
    actual = np.asarray(actual, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    if actual.shape != predicted.shape:
        raise ExplanationError(
            f"The model returned {predicted.shape} forecasts for {actual.shape} actual values."
        )
    known = np.isfinite(actual)
    if not known.any():
        raise ExplanationError("There are no actual values to measure forecast error against.")
    return float(np.sqrt(np.mean((actual[known] - predicted[known]) ** 2)))


def permutation_importance(
    predict: Predict,
    frame: pd.DataFrame,
    actual: np.ndarray,
    *,
    repeats: int = 3,
    seed: int = 0,
) -> pd.DataFrame:
    """Per input group: the % growth of 30-day forecast RMSE when that group is scrambled.

    Returns one row per group (key, label, importance_pct, rmse, spread_pct) sorted by
    importance, plus the unscrambled error as the frame's `attrs["base_rmse"]`.
    """
    if HISTORY_COLUMN not in frame.columns:
        raise ExplanationError(f"Rows to explain need a '{HISTORY_COLUMN}' column.")
    if len(frame) < 2:
        raise ExplanationError("Explaining a model needs at least two rows to shuffle between.")
    if repeats < 1:
        raise ExplanationError(f"repeats must be at least 1, got {repeats}.")
    frame = frame.reset_index(drop=True)
    base = forecast_rmse(actual, predict(frame))
    if base == 0:
        raise ExplanationError("The model forecasts these rows perfectly; nothing to compare.")
    rng = np.random.default_rng(seed)
    rows = []
    for group in feature_groups(frame):
        errors = [
            forecast_rmse(actual, predict(group.scramble(frame, rng))) for _ in range(repeats)
        ]
        growth = 100.0 * (np.asarray(errors) / base - 1.0)
        rows.append(
            {
                "key": group.key,
                "label": group.label,
                "importance_pct": float(growth.mean()),
                "spread_pct": float(growth.std()),
                "rmse": float(np.mean(errors)),
            }
        )
    result = pd.DataFrame(rows).sort_values("importance_pct", ascending=False, ignore_index=True)
    result.attrs["base_rmse"] = base
    return result


def importance_figure(importance: pd.DataFrame, title: str = "What drives the forecast") -> Any:
    """A horizontal bar chart of `permutation_importance`, biggest driver on top."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    from matplotlib import pyplot as plt
    from matplotlib.ticker import PercentFormatter

    ordered = importance.iloc[::-1]
    fig, ax = plt.subplots(figsize=(9, 0.55 * len(ordered) + 1.8), dpi=110)
    colors = ["tab:blue" if v > 0 else "tab:gray" for v in ordered["importance_pct"]]
    ax.barh(
        ordered["label"],
        ordered["importance_pct"],
        xerr=ordered["spread_pct"],
        color=colors,
        ecolor="0.4",
        capsize=3,
    )
    pairs = zip(ordered["importance_pct"], ordered["spread_pct"], strict=True)
    for y, (value, spread) in enumerate(pairs):
        ax.annotate(
            f"{value:+.1f}%",
            (max(value, 0.0) + spread, y),
            xytext=(6, 0),
            textcoords="offset points",
            va="center",
            fontsize="small",
        )
    ax.axvline(0, color="black", linewidth=0.8)
    ax.xaxis.set_major_formatter(PercentFormatter(decimals=0))
    base = importance.attrs.get("base_rmse")
    note = f"\n(forecast error with nothing scrambled: {base:.3f} cycles a day)" if base else ""
    ax.set_xlabel(
        "how much worse the 30-day forecast gets when this input is scrambled" + note,
        fontsize="small",
    )
    ax.set_title(title)
    ax.margins(x=0.18)
    fig.tight_layout()
    plt.close(fig)
    return fig


def log_explanation(
    predict: Predict,
    frame: pd.DataFrame,
    actual: np.ndarray,
    *,
    run_id: str | None = None,
    repeats: int = 3,
    seed: int = 0,
    max_rows: int = 300,
    title: str = "What drives the 30-day forecast",
) -> dict[str, float]:
    """Explain `predict` on `frame` (with its actual next days) and log it to an MLflow run.

    Logs a bar chart (`explanation/feature_importance.png`), the numbers as JSON and one
    `importance_pct_<group>` metric per group, to `run_id` or the active run. At most
    `max_rows` rows are used (a seeded sample) to keep it to a few seconds. Returns
    group label -> % growth of forecast error.
    """
    import mlflow
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    actual = np.asarray(actual, dtype=np.float64)
    if len(frame) != len(actual):
        raise ExplanationError(f"{len(frame)} rows to explain but {len(actual)} actual rows.")
    if len(frame) > max_rows:
        keep = np.sort(np.random.default_rng(seed).choice(len(frame), max_rows, replace=False))
        frame, actual = frame.iloc[keep], actual[keep]
    importance = permutation_importance(predict, frame, actual, repeats=repeats, seed=seed)
    run_id = run_id or _active_run_id(mlflow)
    client = MlflowClient()
    client.log_figure(run_id, importance_figure(importance, title), IMPORTANCE_FILE)
    client.log_dict(
        run_id,
        {
            "method": "permutation importance on the 30-day forecast RMSE",
            "rows": len(frame),
            "repeats": repeats,
            "base_rmse": importance.attrs["base_rmse"],
            "groups": importance.to_dict("records"),
        },
        IMPORTANCE_JSON,
    )
    stamp = int(time.time() * 1000)
    metrics = [
        Metric(f"importance_pct_{row.key}", row.importance_pct, stamp, 0)
        for row in importance.itertuples(index=False)
    ]
    client.log_batch(run_id, metrics=metrics)
    log.info("Logged the explanation of %d rows to run %s", len(frame), run_id)
    return dict(zip(importance["label"], importance["importance_pct"], strict=True))


def _active_run_id(mlflow: Any) -> str:
    run = mlflow.active_run()
    if run is None:
        raise ExplanationError("log_explanation needs a run_id or an active MLflow run.")
    return run.info.run_id
