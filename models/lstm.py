"""One global PyTorch LSTM that forecasts every battery's next days of cycle use.

Windows are scale-free: each is divided by its own mean daily use and the forecast is
multiplied back, so one model serves light and heavy users alike. A window shorter than
`window_days` (a new battery) is left-padded with its own mean level (1.0 once scaled) and
a mask channel marks the padded steps, so the network can tell "no history" from "average
day". The head emits the whole horizon at once: a direct multi-output head is 1.2-1.9x
faster than rolling the LSTM forward (DESIGN.md).

The network learns a correction on top of a fixed weekly baseline repeated over the
horizon, named by `LstmSpec.baseline`: by default each weekday's share of the window's last
(up to) eight whole weeks at the level of its last two ("profile_level"). Models saved
before the setting existed correct the median of each weekday over the last four weeks
("weekday_median"). Usage is dominated by a per-battery weekday pattern, so starting from
it lets a few epochs on two cores reach what many epochs of learning the pattern from
scratch would.

Per-timestep channels are the scaled daily cycles, the padding mask, then any
`extra_channels`: array columns aligned with `daily_cycles` (the `<signal>_history` health
arrays of `models.features`), standardised with statistics frozen at training time. A
missing value, a null array or an absent column is the training mean (0 once standardised):
health signals are optional input, so a reading without them still gets a forecast.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from models.features import HISTORY_COLUMN, flat_rows
from pitstop.errors import PitstopError

log = logging.getLogger(__name__)

WEIGHTS_FILE = "weights.pt"
SPEC_FILE = "spec.json"
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


class CycleLstm(nn.Module):
    """Stacked LSTM over the window, a linear head from the last hidden state to the horizon."""

    def __init__(self, spec: LstmSpec) -> None:
        super().__init__()
        self.lstm = nn.LSTM(
            input_size=spec.input_size,
            hidden_size=spec.hidden_size,
            num_layers=spec.num_layers,
            dropout=spec.dropout if spec.num_layers > 1 else 0.0,
            batch_first=True,
        )
        self.head = nn.Linear(spec.hidden_size, spec.horizon_days)

        # Start as the baseline itself: the correction grows only where it helps.
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, windows: torch.Tensor, baseline: torch.Tensor) -> torch.Tensor:
        """(n, window, channels) scaled windows and (n, horizon) baseline -> scaled forecast."""
        out, _ = self.lstm(windows)
        return baseline + self.head(out[:, -1, :])


def _as_arrays(values: Sequence[object]) -> list[np.ndarray]:
    return [np.asarray(v, dtype=np.float64).ravel() for v in values]


def _optional_arrays(values: Sequence[object]) -> list[np.ndarray]:
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
        arrays = _optional_arrays(values) if optional else _as_arrays(values)
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
    count as parked days, as in `models.features`. Extra channels are right-aligned with the
    history (their last value is the reading's day); a missing value, a null array or an
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


# Windows per forward pass when scoring. A small batch keeps the LSTM's activations in the
# core's cache: on this project's 2-core machine 2x1 processes scored ~37k windows/s in chunks
# of 250 against ~24k/s in chunks of 1,000 (benchmarks/lstm_ceiling.py --batch).
PREDICT_CHUNK = 256


def predict_lstm(
    model: CycleLstm, spec: LstmSpec, frame: pd.DataFrame, batch_size: int = PREDICT_CHUNK
) -> np.ndarray:
    """Forecast (n, horizon) daily cycles for model-input rows; never negative."""
    if len(frame) == 0:
        return np.zeros((0, spec.horizon_days))
    windows, baseline, scale = encode_windows(frame, spec)
    model.eval()
    parts = []
    with torch.inference_mode():
        for start in range(0, len(windows), batch_size):
            chunk = slice(start, start + batch_size)
            x, base = torch.from_numpy(windows[chunk]), torch.from_numpy(baseline[chunk])
            parts.append(model(x, base).numpy())
    scaled = np.concatenate(parts).astype(np.float64)
    return np.clip(scaled, 0.0, None) * scale[:, None]


@dataclass
class FitResult:
    """A trained model with its loss history (scaled MSE per epoch)."""

    model: CycleLstm
    spec: LstmSpec
    train_loss: list[float]
    val_loss: list[float]
    baseline_val_loss: float
    best_epoch: int
    stopped_early: bool
    train_windows: int
    val_windows: int
    val_batteries: list[str]
    seconds: float


def _split_batteries(ids: np.ndarray, val_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask of rows whose battery is held out for validation."""
    batteries = np.unique(ids)
    if len(batteries) < 2:
        raise LstmError("Training needs at least 2 batteries: some are held out for validation.")
    count = min(len(batteries) - 1, max(1, round(len(batteries) * val_fraction)))
    held = rng.choice(batteries, size=count, replace=False)
    return np.isin(ids, held)


def _extra_stats(frame: pd.DataFrame, names: Sequence[str]) -> dict[str, tuple[float, float]]:
    stats = {}
    for name in names:
        if name not in frame.columns:
            raise LstmError(f"Extra channel '{name}' is not a column of the training windows.")
        values = np.concatenate([np.zeros(0), *_optional_arrays(frame[name].tolist())])
        values = values[np.isfinite(values)]
        if len(values) == 0:
            raise LstmError(f"Extra channel '{name}' has no values in the training windows.")
        std = float(values.std())
        stats[name] = (float(values.mean()), std if std > 0 else 1.0)
    return stats


def fit_lstm(
    windows: pd.DataFrame,
    futures: np.ndarray,
    spec: LstmSpec | None = None,
    *,
    epochs: int = 30,
    batch_size: int = 256,
    learning_rate: float = 3e-3,
    val_fraction: float = 0.15,
    patience: int = 4,
    max_windows: int | None = 30_000,
    max_val_windows: int | None = 5_000,
    time_budget_s: float | None = None,
    seed: int = 0,
) -> FitResult:
    """Train on `build_training_windows` output with a by-battery validation split.

    Stops after `patience` epochs without a better validation loss, or when the time
    budget is spent, and returns the weights of the best epoch. `max_windows` and
    `max_val_windows` sample the training and validation windows to bound epoch time.
    """
    spec = spec or LstmSpec()
    if len(windows) != len(futures):
        raise LstmError(f"{len(windows)} windows but {len(futures)} futures.")
    if futures.ndim != 2 or futures.shape[1] != spec.horizon_days:
        raise LstmError(f"futures must be (n, {spec.horizon_days}), got {futures.shape}.")
    if epochs < 1 or batch_size < 1:
        raise LstmError("epochs and batch_size must be at least 1.")
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    if spec.extra_channels:
        spec = LstmSpec(
            **{**asdict(spec), "channel_stats": _extra_stats(windows, spec.extra_channels)}
        )
    ids = windows["battery_id"].astype(str).to_numpy()
    is_val = _split_batteries(ids, val_fraction, rng)
    train_rows, val_rows = np.flatnonzero(~is_val), np.flatnonzero(is_val)
    if max_windows is not None and len(train_rows) > max_windows:
        train_rows = np.sort(rng.choice(train_rows, size=max_windows, replace=False))
    if max_val_windows is not None and len(val_rows) > max_val_windows:
        val_rows = np.sort(rng.choice(val_rows, size=max_val_windows, replace=False))
    x_all, base_all, scale = encode_windows(windows, spec)
    y_all = (futures / scale[:, None]).astype(np.float32)
    train = [torch.from_numpy(a[train_rows]) for a in (x_all, base_all, y_all)]
    val = [torch.from_numpy(a[val_rows]) for a in (x_all, base_all, y_all)]

    model = CycleLstm(spec)
    optimiser = torch.optim.Adam(model.parameters(), lr=learning_rate)
    # Halve the step when validation stalls: the last epochs refine the weekday shape.
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimiser, factor=0.5, patience=1)
    shuffler = torch.Generator().manual_seed(seed)
    # The untrained network forecasts the weekly baseline exactly (zero-initialised head).
    baseline_val_loss = _evaluate(model, *val)
    train_loss: list[float] = []
    val_loss: list[float] = []
    # Epoch 0, the baseline itself, is a candidate too: a correction that never beats it on
    # validation is not kept.
    best, best_epoch, stopped_early = baseline_val_loss, 0, False
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    for epoch in range(1, epochs + 1):
        model.train()
        total = 0.0
        for batch in torch.randperm(len(train_rows), generator=shuffler).split(batch_size):
            x, base, y = (t[batch] for t in train)
            loss = _masked_mse(model(x, base), y)
            optimiser.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimiser.step()
            total += loss.item() * len(batch)
        train_loss.append(total / len(train_rows))
        val_loss.append(_evaluate(model, *val))
        scheduler.step(val_loss[-1])
        log.info(
            "epoch %d: train loss %.5f, val loss %.5f (%.1fs)",
            epoch,
            train_loss[-1],
            val_loss[-1],
            time.perf_counter() - started,
        )
        if val_loss[-1] < best:
            best, best_epoch = val_loss[-1], epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        elif epoch - best_epoch >= patience:
            stopped_early = True
            log.info("Early stop: no better validation loss for %d epochs", patience)
            break
        if time_budget_s is not None and time.perf_counter() - started > time_budget_s:
            stopped_early = True
            log.info("Time budget of %.0fs spent after epoch %d", time_budget_s, epoch)
            break
    model.load_state_dict(best_state)
    model.eval()
    return FitResult(
        model=model,
        spec=spec,
        train_loss=train_loss,
        val_loss=val_loss,
        baseline_val_loss=baseline_val_loss,
        best_epoch=best_epoch,
        stopped_early=stopped_early,
        train_windows=len(train_rows),
        val_windows=len(val_rows),
        val_batteries=sorted(set(ids[val_rows])),
        seconds=time.perf_counter() - started,
    )


def _masked_mse(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE over the target days that had a reading (NaN marks a day without one)."""
    known = ~torch.isnan(target)
    return ((predicted - target.nan_to_num()) ** 2 * known).sum() / known.sum().clamp(min=1)


def _evaluate(
    model: CycleLstm, x: torch.Tensor, base: torch.Tensor, y: torch.Tensor, batch_size: int = 4096
) -> float:
    model.eval()
    total = 0.0
    with torch.inference_mode():
        for start in range(0, len(x), batch_size):
            chunk = slice(start, start + batch_size)
            pred = model(x[chunk], base[chunk])
            total += _masked_mse(pred, y[chunk]).item() * len(pred)
    return total / max(1, len(y))


def save_lstm(model: CycleLstm, spec: LstmSpec, folder: str | Path) -> Path:
    """Write weights and spec into `folder` (created); returns the folder."""
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path / WEIGHTS_FILE)
    (path / SPEC_FILE).write_text(spec.to_json(), encoding="utf-8")
    return path


def load_lstm(folder: str | Path) -> tuple[CycleLstm, LstmSpec]:
    """Rebuild a model saved by `save_lstm`, in eval mode."""
    path = Path(folder)
    if not (path / SPEC_FILE).is_file() or not (path / WEIGHTS_FILE).is_file():
        raise LstmError(f"{path} holds no saved LSTM ({SPEC_FILE} and {WEIGHTS_FILE}).")
    spec = LstmSpec.from_json((path / SPEC_FILE).read_text(encoding="utf-8"))
    model = CycleLstm(spec)
    model.load_state_dict(torch.load(path / WEIGHTS_FILE, map_location="cpu", weights_only=True))
    model.eval()
    return model, spec
