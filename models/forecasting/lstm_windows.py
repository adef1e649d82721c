"""What the LSTM sees of a window: its spec, and windows encoded as scaled channels.

Windows are scale-free: each is divided by its own mean daily use and the forecast is
multiplied back, so one model serves light and heavy users alike. A window shorter than
`window_days` (a new battery) is left-padded with its own mean level (1.0 once scaled) and
a mask channel marks the padded steps, so the network can tell "no history" from "average
day".

The network learns a correction on top of a fixed weekly baseline repeated over the
horizon, named by `LstmSpec.baseline`: by default each weekday's share of the window's last
(up to) eight whole weeks at the level of its last two ("profile_level"). Models saved
before the setting existed correct the median of each weekday over the last four weeks
("weekday_median"). Usage is dominated by a per-battery weekday pattern, so starting from
it lets a few epochs on two cores reach what many epochs of learning the pattern from
scratch would.

Per-timestep channels are the scaled daily cycles, the padding mask, then any
`extra_channels`: array columns aligned with `daily_cycles` (the `<signal>_history` health
arrays of `models.forecasting.features`), standardised with statistics frozen at training time. A
missing value, a null array or an absent column is the training mean (0 once standardised):
health signals are optional input, so a reading without them still gets a forecast.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from core.errors import PitstopError
from models.forecasting.features import HISTORY_COLUMN, flat_rows

# Below this mean use a window counts as parked; scaling by it keeps the forecast ~0.
MIN_SCALE = 1e-3
# The weekly patterns the network can correct (`weekly_baseline`). New specs use
# profile_level: on the simulated fleet's CV folds (300 batteries x 400 days) the LSTM scored
# NRMSE 0.0353 on it, 0.0356 on the weekday mean and 0.0363 on the median (mean of 2 seeds).
BASELINES = ("weekday_median", "weekday_mean", "profile_level")
DEFAULT_BASELINE = "profile_level"
# Specs saved before the baseline was a setting corrected the weekday median.
LEGACY_BASELINE = "weekday_median"
# Whole weeks the weekday median and mean look back; profile_level's shape looks back
# PROFILE_WEEKS and its level LEVEL_DAYS (see `_profile_level`).
WEEKDAY_WEEKS = 4
PROFILE_WEEKS = 8
LEVEL_DAYS = 14


class LstmError(PitstopError, ValueError):
    """Windows or settings the LSTM cannot work with."""


@dataclass(frozen=True)
class LstmSpec:
    """Architecture and input layout; saved beside the weights so a model rebuilds itself."""

    window_days: int = 60
    horizon_days: int = 30
    hidden_size: int = 64
    num_layers: int = 2
    dropout: float = 0.0
    extra_channels: tuple[str, ...] = ()
    # Per extra channel (mean, std) measured on the training windows.
    channel_stats: dict[str, tuple[float, float]] = field(default_factory=dict)
    # The weekly pattern the network corrects, one of `BASELINES`.
    baseline: str = DEFAULT_BASELINE

    def __post_init__(self) -> None:
        if self.baseline not in BASELINES:
            raise LstmError(
                f"Unknown LSTM baseline '{self.baseline}'; choose from {', '.join(BASELINES)}."
            )

    @property
    def input_size(self) -> int:
        """Channels per timestep: scaled cycles, padding mask, extras."""
        return 2 + len(self.extra_channels)

    def to_json(self) -> str:
        """The spec as JSON."""
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> LstmSpec:
        """A spec from `to_json` output; one saved without a baseline corrects the median."""
        raw = json.loads(text)
        raw.setdefault("baseline", LEGACY_BASELINE)
        raw["extra_channels"] = tuple(raw.get("extra_channels", ()))
        raw["channel_stats"] = {k: tuple(v) for k, v in raw.get("channel_stats", {}).items()}
        return cls(**raw)


def _as_arrays(values: Sequence[object]) -> list[np.ndarray]:
    return [np.asarray(v, dtype=np.float64).ravel() for v in values]


def optional_arrays(values: Sequence[object]) -> list[np.ndarray]:
    """Like `_as_arrays`, but a null row (None, NaN) is an empty array: no values at all."""
    return [
        np.zeros(0)
        if v is None or (np.ndim(v) == 0 and pd.isna(v))
        else np.asarray(v, dtype=np.float64).ravel()
        for v in values
    ]


def _padded_rows(
    values: Sequence[object], width: int, optional: bool
) -> tuple[np.ndarray, np.ndarray]:
    """`_left_pad` of the rows' arrays with NaN; a null row is empty when `optional`.

    Rows that are all arrays of numbers (the usual model input) skip the row-by-row
    conversion.
    """
    rows = flat_rows(values)
    if rows is None:
        arrays = optional_arrays(values) if optional else _as_arrays(values)
        return _left_pad(arrays, width, np.nan)
    return _left_pad_flat(*rows, width, np.nan)


def _left_pad(arrays: list[np.ndarray], width: int, fill: float) -> tuple[np.ndarray, np.ndarray]:
    """Right-align each array in a (n, width) matrix; returns the matrix and lengths used."""
    lengths = np.fromiter((len(a) for a in arrays), dtype=np.int64, count=len(arrays))
    flat = np.concatenate(arrays) if arrays else np.zeros(0)
    return _left_pad_flat(flat, lengths, width, fill)


def _left_pad_flat(
    flat: np.ndarray, lengths: np.ndarray, width: int, fill: float
) -> tuple[np.ndarray, np.ndarray]:
    """`_left_pad` of rows given as one flat array and their lengths."""
    used = np.minimum(lengths, width)
    out = np.full((len(lengths), width), fill, dtype=np.float64)
    if used.sum() == 0:
        return out, used
    # Vectorised scatter: element j of row i's kept tail goes to column width - used_i + j.
    row = np.repeat(np.arange(len(lengths)), used)
    within = np.arange(used.sum()) - np.repeat(np.cumsum(used) - used, used)
    source = np.repeat(np.cumsum(lengths) - used, used) + within
    out[row, width - used[row] + within] = flat[source]
    return out, used


def weekly_baseline(scaled: np.ndarray, used: np.ndarray, horizon: int, kind: str) -> np.ndarray:
    """Per row, the weekly pattern named by `kind` (one of `BASELINES`), tiled over the horizon.

    `scaled` holds right-aligned windows whose last `used` entries are real. Rows with
    less than a week of history get a flat 1.0 (their own mean level).
    """
    if kind not in BASELINES:
        raise LstmError(f"Unknown LSTM baseline '{kind}'; choose from {', '.join(BASELINES)}.")
    if kind == "profile_level":
        pattern = _profile_level(scaled, used)
    else:
        reduce = np.median if kind == "weekday_median" else np.mean
        pattern, _ = _weekday_profiles(scaled, used, WEEKDAY_WEEKS, reduce)
    # Column j of a pattern falls on the weekday of forecast day j+1, j+8, ...
    return np.tile(pattern, -(-horizon // 7))[:, :horizon]


def _weekday_profiles(
    scaled: np.ndarray, used: np.ndarray, max_weeks: int, reduce: Callable[..., np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """(n, 7) `reduce` of each weekday over each row's last whole weeks (up to `max_weeks`),
    1.0 for rows with less than a week; and the number of weeks each row used."""
    profiles = np.ones((len(scaled), 7), dtype=np.float64)
    weeks = np.minimum(used // 7, max_weeks)
    for k in range(1, max_weeks + 1):
        rows = np.flatnonzero(weeks == k)
        if len(rows):
            # Row r of the reshape covers days t-7(k-r)+1 .. t-7(k-r)+7.
            profiles[rows] = reduce(scaled[rows, -7 * k :].reshape(len(rows), k, 7), axis=1)
    return profiles, weeks


def _profile_level(scaled: np.ndarray, used: np.ndarray) -> np.ndarray:
    """The weekday shape of the last (up to) 8 weeks at the level of the last 2.

    Shape: each weekday's mean over the weeks, divided by their mean. Level: the mean of
    the last 14 days (7 with only one week, which gives back that week). A shape drawn
    from more weeks is less noisy; a level from fewer follows a change of use sooner.
    """
    profiles, weeks = _weekday_profiles(scaled, used, PROFILE_WEEKS, np.mean)
    days = np.clip(7 * weeks, 1, LEVEL_DAYS)
    recent = np.cumsum(scaled[:, ::-1], axis=1)
    level = recent[np.arange(len(scaled)), days - 1] / days
    shape_mean = profiles.mean(axis=1)
    # A row parked for all its weeks has a zero shape and level: it forecasts no use.
    ratio = np.divide(level, shape_mean, out=np.zeros_like(level), where=shape_mean > 0)
    ratio[weeks == 0] = 1.0
    return profiles * ratio[:, None]


def encode_windows(
    frame: pd.DataFrame, spec: LstmSpec
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Model-input rows -> float32 network input (n, window, channels), baseline, scale.

    Histories longer than the window keep their most recent days; missing values (NaN)
    count as parked days, as in `models.forecasting.features`. Extra channels are right-aligned
    with the history (their last value is the reading's day); a missing value, a null array or an
    absent column counts as the training mean.
    """
    if HISTORY_COLUMN not in frame.columns:
        raise LstmError(f"Model input needs a '{HISTORY_COLUMN}' column.")
    cycles, used = _padded_rows(frame[HISTORY_COLUMN].tolist(), spec.window_days, optional=False)
    if (used == 0).any():
        raise LstmError(f"Every '{HISTORY_COLUMN}' array needs at least one day.")
    cycles = np.nan_to_num(cycles, nan=0.0, copy=False)
    real = np.arange(spec.window_days)[None, :] >= (spec.window_days - used)[:, None]
    scale = np.maximum(cycles.sum(axis=1) / used, MIN_SCALE)
    scaled = np.where(real, cycles / scale[:, None], 1.0)
    channels = [scaled, real.astype(np.float64)]
    for name in spec.extra_channels:
        if name not in frame.columns:
            # Optional input (the stream may not carry it): the standardised mean, 0.
            channels.append(np.zeros_like(scaled))
            continue
        values, _ = _padded_rows(frame[name].tolist(), spec.window_days, optional=True)
        mean, std = spec.channel_stats.get(name, (0.0, 1.0))
        channels.append(np.nan_to_num((values - mean) / (std or 1.0), nan=0.0))
    baseline = weekly_baseline(scaled, used, spec.horizon_days, spec.baseline)
    return np.stack(channels, axis=-1).astype(np.float32), baseline.astype(np.float32), scale
