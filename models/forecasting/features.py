"""Pure window and failure-date functions shared by training and scoring.

Model input contract (DESIGN.md): one row per (battery, reading date) with the battery's
recent daily cycle use, oldest first, ending on that date, plus the static fields a
model needs. Days with no reading inside the window count as parked days (0 cycles).
Every forecaster returns an (n, horizon) array of daily cycles for the days after.

Readings that carry the contract's optional health signals also give, per signal, an array
`<signal>_history` aligned day by day with the cycles window (NaN on days without a value).
They are optional model input: a forecaster that does not use them ignores them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from core.contract import HEALTH_SIGNALS
from core.errors import PitstopError

HISTORY_COLUMN = "daily_cycles"
STATIC_COLUMNS: tuple[str, ...] = (
    "lifetime_cycles_used",
    "battery_rated_cycles",
    "battery_age_days",
)
MODEL_INPUT_COLUMNS: tuple[str, ...] = (HISTORY_COLUMN, *STATIC_COLUMNS)
# The contract's optional per-reading health signals (its fields that may be null).
HEALTH_COLUMNS: tuple[str, ...] = HEALTH_SIGNALS
HEALTH_HISTORY_SUFFIX = "_history"
# Optional model input: one array per signal, aligned with the HISTORY_COLUMN window.
HEALTH_HISTORY_COLUMNS: tuple[str, ...] = tuple(
    f"{c}{HEALTH_HISTORY_SUFFIX}" for c in HEALTH_COLUMNS
)
# Train on a signal only when at least this share of the readings carries it.
HEALTH_MIN_SHARE = 0.5


class FeatureError(PitstopError, ValueError):
    """Readings cannot be turned into model input."""


def _require(frame: pd.DataFrame, columns: tuple[str, ...] | list[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise FeatureError(f"{what} needs column(s) {', '.join(missing)}.")


def daily_series(readings: pd.DataFrame) -> pd.DataFrame:
    """Readings -> one row per battery per calendar day between its first and last reading.

    Days without a reading get 0 daily cycles (the car was parked) and `observed=False`.
    A repeated (battery_id, date) keeps its first row. Rows come sorted by battery and date.
    """
    _require(readings, ("battery_id", "date", "daily_cycles_used"), "daily_series")
    frame = readings.assign(date=pd.to_datetime(readings["date"]))
    frame = frame.drop_duplicates(["battery_id", "date"], keep="first")
    if frame.empty:
        return frame.assign(observed=pd.Series(dtype=bool)).iloc[0:0]
    # One calendar grid for all batteries at once: a Python loop per battery cost ~20 us
    # per reading, which the streaming job would pay every micro-batch.
    frame = frame.sort_values(["battery_id", "date"], kind="stable")
    ids, codes = np.unique(frame["battery_id"].to_numpy(), return_inverse=True)
    dates = frame["date"].to_numpy()
    day = (dates - dates.min()) // np.timedelta64(1, "D")
    first = np.full(len(ids), day.max())
    np.minimum.at(first, codes, day)
    lengths = np.zeros(len(ids), dtype=np.int64)
    np.maximum.at(lengths, codes, day - first[codes] + 1)
    block = np.cumsum(lengths) - lengths
    slots = block[codes] + day - first[codes]
    dense = frame.set_axis(slots).reindex(np.arange(lengths.sum()))
    offsets = np.arange(len(dense)) - np.repeat(block, lengths)
    dense["battery_id"] = np.repeat(ids, lengths)
    dense["date"] = dates.min() + (np.repeat(first, lengths) + offsets) * np.timedelta64(1, "D")
    observed = np.zeros(len(dense), dtype=bool)
    observed[slots] = True
    dense["observed"] = observed
    dense["daily_cycles_used"] = dense["daily_cycles_used"].fillna(0.0)
    order = ["date", *[c for c in frame.columns if c != "date"], "observed"]
    return dense[order].reset_index(drop=True)


def _battery_starts(dense: pd.DataFrame) -> np.ndarray:
    """For each row of a daily series, the row index where its battery's series begins."""
    ids = dense["battery_id"].to_numpy()
    first = np.ones(len(ids), dtype=bool)
    first[1:] = ids[1:] != ids[:-1]
    return np.maximum.accumulate(np.where(first, np.arange(len(ids)), 0))


def flat_rows(values: Sequence[object]) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-row arrays as one flat float64 array and the rows' lengths, in a few C-speed
    steps; None when some row is not a 1-D array or list of numbers (null, scalar, nested),
    for the caller's row-by-row path. None inside an array becomes NaN, as `np.asarray` does.
    """
    try:
        lengths = np.fromiter(map(len, values), dtype=np.int64, count=len(values))
        flat = np.asarray(np.concatenate(values), dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if flat.ndim != 1 or flat.size != lengths.sum():
        return None
    return flat, lengths


def split_rows(flat: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    """The rows of `flat_rows`' output again, as views."""
    ends = np.cumsum(lengths).tolist()
    # Plain slicing: np.split pays a swapaxes per row, ~4x slower at 80k rows.
    return [flat[end - n : end] for end, n in zip(ends, lengths.tolist(), strict=True)]


def health_history_columns(columns: pd.Index | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The `<signal>_history` names, in contract order, of the health signals in `columns`."""
    return tuple(f"{c}{HEALTH_HISTORY_SUFFIX}" for c in HEALTH_COLUMNS if c in set(columns))


def model_input_columns(frame: pd.DataFrame) -> list[str]:
    """MODEL_INPUT_COLUMNS plus the optional health history arrays `frame` carries."""
    present = set(frame.columns)
    return [*MODEL_INPUT_COLUMNS, *(c for c in HEALTH_HISTORY_COLUMNS if c in present)]


def health_channels(readings: pd.DataFrame, min_share: float = HEALTH_MIN_SHARE) -> tuple[str, ...]:
    """The `<signal>_history` columns worth training on: signals set in >= `min_share` of rows."""
    if readings.empty:
        return ()
    return tuple(
        f"{c}{HEALTH_HISTORY_SUFFIX}"
        for c in HEALTH_COLUMNS
        if c in readings.columns and readings[c].notna().mean() >= min_share
    )


def _windows_at(dense: pd.DataFrame, positions: np.ndarray, window_days: int) -> pd.DataFrame:
    """Model input rows for the daily-series rows at `positions` (windows are views).

    Each health signal in `dense` gets a `<signal>_history` array over the same days as
    the cycles window; days without a value (no reading, or a null one) are NaN.
    """
    begins = np.maximum(_battery_starts(dense)[positions], positions - window_days + 1)
    spans = [slice(b, p + 1) for b, p in zip(begins, positions, strict=False)]
    series = {HISTORY_COLUMN: dense["daily_cycles_used"].to_numpy(dtype=np.float64)}
    for signal in (c for c in HEALTH_COLUMNS if c in dense.columns):
        # Nullable input (None, pd.NA from JSON or Delta) becomes NaN, as a missing day.
        values = pd.to_numeric(dense[signal], errors="coerce")
        series[f"{signal}{HEALTH_HISTORY_SUFFIX}"] = values.to_numpy(
            dtype=np.float64, na_value=np.nan
        )
    arrays = {name: [values[s] for s in spans] for name, values in series.items()}
    return pd.DataFrame(
        {
            "battery_id": dense["battery_id"].to_numpy()[positions],
            "date": dense["date"].to_numpy()[positions],
            HISTORY_COLUMN: arrays.pop(HISTORY_COLUMN),
            **{c: dense[c].to_numpy(dtype=np.float64)[positions] for c in STATIC_COLUMNS},
            **arrays,
        }
    )


def build_history_windows(
    readings: pd.DataFrame,
    window_days: int,
    targets: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Model input rows: for each target reading, the window of daily cycles ending on its date.

    `readings` holds the history (and the targets themselves); `targets` (default: every
    reading) selects the (battery_id, date) rows to build windows for. Windows are
    shorter than `window_days` for batteries with less history. The output keeps
    battery_id, date and the static columns beside the window, then a `<signal>_history`
    array for each health signal column the readings have.
    """
    if window_days < 1:
        raise FeatureError(f"window_days must be at least 1, got {window_days}.")
    _require(readings, ("battery_id", "date", "daily_cycles_used", *STATIC_COLUMNS), "windows")
    dense = daily_series(readings)
    if targets is None:
        positions = np.flatnonzero(dense["observed"].to_numpy())
    else:
        _require(targets, ("battery_id", "date"), "window targets")
        wanted = pd.MultiIndex.from_arrays(
            [targets["battery_id"].to_numpy(), pd.to_datetime(targets["date"]).to_numpy()]
        )
        index = pd.MultiIndex.from_arrays(
            [dense["battery_id"].to_numpy(), dense["date"].to_numpy()]
        )
        positions = index.get_indexer(wanted) if len(dense) else np.full(len(wanted), -1)
        positions = np.sort(positions[positions >= 0], kind="stable")
    if len(positions) == 0:
        columns = ["battery_id", "date", *MODEL_INPUT_COLUMNS]
        return pd.DataFrame(columns=[*columns, *health_history_columns(readings.columns)])
    return _windows_at(dense, positions, window_days)


# A stored day of a battery as the stream's state step hands it over (packed, little-endian):
# days since 1970-01-01, daily cycles, and each health signal (NaN where none was sent).
WINDOW_DAY = np.dtype(
    [("day", "<i4"), ("cycles", "<f8"), *[(signal, "<f8") for signal in HEALTH_COLUMNS]]
)


def windows_from_days(
    days: np.ndarray,
    counts: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    signals: Sequence[str] = (),
) -> dict[str, list[np.ndarray]]:
    """Model input windows from the stored days behind each of n readings.

    `days` (WINDOW_DAY) holds every reading's days one reading after another, `counts` how
    many each has; reading i's window covers days `starts[i]` to `ends[i]`. Days without a
    reading are parked (0 cycles) and have no health values (NaN), as in
    `build_history_windows`. Returns HISTORY_COLUMN and the `<signal>_history` of each of
    `signals` (HEALTH_COLUMNS names), a list of n arrays each.
    """
    starts, ends = np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.int64)
    lengths = ends - starts + 1
    if len(lengths) and lengths.min() < 1:
        raise FeatureError("A window must end on or after the day it starts.")
    offsets = np.cumsum(lengths) - lengths
    owner = np.repeat(np.arange(len(lengths)), np.asarray(counts, dtype=np.int64))
    slots = offsets[owner] + days["day"].astype(np.int64) - starts[owner]
    cycles = np.zeros(int(lengths.sum()))
    cycles[slots] = days["cycles"]
    windows = {HISTORY_COLUMN: split_rows(cycles, lengths)}
    for signal in signals:
        values = np.full(len(cycles), np.nan)
        values[slots] = days[signal]
        windows[f"{signal}{HEALTH_HISTORY_SUFFIX}"] = split_rows(values, lengths)
    return windows


def build_training_windows(
    readings: pd.DataFrame,
    window_days: int,
    horizon_days: int,
    stride: int = 1,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Model input rows with their true next `horizon_days` of daily cycles, for training.

    Only observed dates followed by a full horizon of days inside the same battery's life
    (its first to last reading) are used; `stride` keeps every stride-th day per battery.
    Health signal columns give `<signal>_history` arrays, as in `build_history_windows`.
    """
    if horizon_days < 1 or stride < 1:
        raise FeatureError("horizon_days and stride must be at least 1.")
    if window_days < 1:
        raise FeatureError(f"window_days must be at least 1, got {window_days}.")
    _require(readings, ("battery_id", "date", "daily_cycles_used", *STATIC_COLUMNS), "windows")
    dense = daily_series(readings)
    starts = _battery_starts(dense)
    rows = np.arange(len(dense))
    day = rows - starts
    ends = np.r_[starts[1:] != starts[:-1], True] if len(dense) else np.zeros(0, dtype=bool)
    # Index of the battery's last row, carried back from its final row.
    last = np.minimum.accumulate(np.where(ends, rows, len(dense))[::-1])[::-1]
    eligible = dense["observed"].to_numpy() & (rows + horizon_days <= last) & (day % stride == 0)
    positions = np.flatnonzero(eligible)
    if len(positions) == 0:
        raise FeatureError(
            f"No battery has {horizon_days + 1} days of history; nothing to train on."
        )
    cycles = dense["daily_cycles_used"].to_numpy(dtype=np.float64)
    futures = np.lib.stride_tricks.sliding_window_view(cycles, horizon_days)[positions + 1]
    return _windows_at(dense, positions, window_days), futures.copy()


def forecast_failure_days(
    lifetime_cycles_used: np.ndarray,
    battery_rated_cycles: np.ndarray,
    forecast: np.ndarray,
) -> np.ndarray:
    """Days from the reading until lifetime + cumulative forecast reaches the rated cycles.

    0 when the battery is already at or past its rating; NaN when the horizon ends first.
    """
    forecast = np.asarray(forecast, dtype=np.float64)
    if forecast.ndim != 2:
        raise FeatureError(f"forecast must be a 2-D (rows, horizon) array, got {forecast.ndim}-D.")
    return failure_days_from_totals(
        lifetime_cycles_used, battery_rated_cycles, np.cumsum(forecast, axis=1)
    )


def failure_days_from_totals(
    lifetime_cycles_used: np.ndarray,
    battery_rated_cycles: np.ndarray,
    totals: np.ndarray,
) -> np.ndarray:
    """`forecast_failure_days` from running totals (rows, horizon) -- e.g. the median of a
    forecaster's running-total quantiles -- rather than daily cycles."""
    totals = np.asarray(totals, dtype=np.float64)
    lifetime = np.asarray(lifetime_cycles_used, dtype=np.float64)
    rated = np.asarray(battery_rated_cycles, dtype=np.float64)
    reached = (lifetime[:, None] + totals) >= rated[:, None]
    first = np.argmax(reached, axis=1).astype(np.float64) + 1.0
    days = np.where(reached.any(axis=1), first, np.nan)
    return np.where(lifetime >= rated, 0.0, days)


def forecast_failure_date(
    dates: pd.Series,
    lifetime_cycles_used: np.ndarray,
    battery_rated_cycles: np.ndarray,
    forecast: np.ndarray,
) -> pd.DataFrame:
    """`days_to_failure` and `predicted_failure_date` (NaT beyond the horizon) for each reading."""
    days = forecast_failure_days(lifetime_cycles_used, battery_rated_cycles, forecast)
    base = pd.to_datetime(pd.Series(dates).reset_index(drop=True))
    failure = base + pd.to_timedelta(pd.Series(days), unit="D")
    return pd.DataFrame({"days_to_failure": days, "predicted_failure_date": failure})
