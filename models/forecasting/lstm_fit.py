"""Training the LSTM: windows in, the best epoch's weights out.

The trunk and the point head learn the point forecast alone (squared error); the best epoch
is the one with the lowest validation error, the weekly baseline itself (epoch 0) included.
Then, with the trunk frozen at that epoch, the quantile head learns its quantiles with the
pinball loss, on the same windows' features computed once -- a few seconds -- so quantiles
never trade away point accuracy.

Validation is time-based when the caller names a day (`val_since`): the network learns from
windows whose next `horizon_days` all lie on or before it and is judged on windows after it,
the way it will be used -- forecasting days it has never seen, of every battery. Without
one, whole batteries are held out instead (small fleets, tests). Each epoch draws a fresh
sample of `max_windows` from every training window, so a fixed time per epoch still visits
the whole history over the run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from models.forecasting.lstm import CycleLstm
from models.forecasting.lstm_windows import (
    LstmError,
    LstmSpec,
    encode_windows,
    optional_arrays,
    static_features,
)

log = logging.getLogger(__name__)

# The quantile head's training: passes at most, passes without a better validation loss
# before stopping, learning rate, windows per step.
QUANTILE_EPOCHS, QUANTILE_PATIENCE, QUANTILE_LR, QUANTILE_BATCH = 60, 5, 1e-2, 1024


@dataclass
class FitResult:
    """A trained model with its loss history per epoch (scaled squared error of the point
    forecast, plus the pinball losses of the quantiles when the spec has them)."""

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
    # Windows the epochs drew from (each epoch samples `train_windows` of them).
    train_pool: int = 0
    validation: str = "batteries"
    # The quantile head's validation pinball loss per pass (empty without quantiles).
    quantile_val_loss: tuple[float, ...] = ()


def _split_batteries(ids: np.ndarray, val_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask of rows whose battery is held out for validation."""
    batteries = np.unique(ids)
    if len(batteries) < 2:
        raise LstmError("Training needs at least 2 batteries: some are held out for validation.")
    count = min(len(batteries) - 1, max(1, round(len(batteries) * val_fraction)))
    held = rng.choice(batteries, size=count, replace=False)
    return np.isin(ids, held)


def _split_time(
    dates: pd.Series, val_since: pd.Timestamp, horizon: int
) -> tuple[np.ndarray, np.ndarray]:
    """Training rows (their whole future on or before `val_since`) and validation rows
    (based after it)."""
    days = pd.to_datetime(dates)
    train = (days + pd.Timedelta(days=horizon) <= val_since).to_numpy()
    val = (days > val_since).to_numpy()
    if not train.any() or not val.any():
        raise LstmError(
            f"A time-based validation from {val_since.date()} leaves no training or no "
            "validation windows; train on a longer period."
        )
    return np.flatnonzero(train), np.flatnonzero(val)


def _extra_stats(frame: pd.DataFrame, names: Sequence[str]) -> dict[str, tuple[float, float]]:
    stats = {}
    for name in names:
        if name not in frame.columns:
            raise LstmError(f"Extra channel '{name}' is not a column of the training windows.")
        values = np.concatenate([np.zeros(0), *optional_arrays(frame[name].tolist())])
        values = values[np.isfinite(values)]
        if len(values) == 0:
            raise LstmError(f"Extra channel '{name}' has no values in the training windows.")
        std = float(values.std())
        stats[name] = (float(values.mean()), std if std > 0 else 1.0)
    return stats


def _tensors(windows: pd.DataFrame, futures: np.ndarray, spec: LstmSpec) -> list[np.ndarray]:
    """Network input, baseline, static inputs and scaled targets of every window."""
    x, base, scale = encode_windows(windows, spec)
    statics = (
        static_features(windows, scale)
        if spec.static_inputs
        else np.zeros((len(windows), 0), dtype=np.float32)
    )
    y = (futures / scale[:, None]).astype(np.float32)
    return [x, base, statics, y]


def fit_lstm(
    windows: pd.DataFrame,
    futures: np.ndarray,
    spec: LstmSpec | None = None,
    *,
    epochs: int = 30,
    batch_size: int = 256,
    learning_rate: float = 3e-3,
    val_fraction: float = 0.15,
    val_since: pd.Timestamp | str | None = None,
    patience: int = 4,
    max_windows: int | None = 30_000,
    max_val_windows: int | None = 5_000,
    time_budget_s: float | None = None,
    seed: int = 0,
) -> FitResult:
    """Train on `build_training_windows` output; see the module docstring for the validation.

    Stops after `patience` epochs without a better validation loss, or when the time budget
    is spent, and returns the weights of the best epoch (epoch 0, the weekly baseline, is a
    candidate too). `max_windows` windows are drawn afresh each epoch; `max_val_windows`
    samples the validation windows once.
    """
    spec = _checked_spec(windows, futures, spec, epochs, batch_size)
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    ids = windows["battery_id"].astype(str).to_numpy()
    pool, val_rows, validation = _split(windows, ids, spec, val_since, val_fraction, rng)
    if max_val_windows is not None and len(val_rows) > max_val_windows:
        val_rows = np.sort(rng.choice(val_rows, size=max_val_windows, replace=False))
    per_epoch = len(pool) if max_windows is None else min(max_windows, len(pool))
    arrays = _tensors(windows, futures, spec)
    train = [torch.from_numpy(a[pool]) for a in arrays]
    val = [torch.from_numpy(a[val_rows]) for a in arrays]
    model = CycleLstm(spec)
    schedule = _Schedule(
        epochs, per_epoch, batch_size, learning_rate, patience, time_budget_s, started, seed
    )
    history = _train(model, train, val, schedule)
    quantile_loss = _fit_quantile_head(model, train, val, schedule)
    return FitResult(
        model=model,
        spec=spec,
        train_windows=per_epoch,
        val_windows=len(val_rows),
        val_batteries=sorted(set(ids[val_rows])),
        seconds=time.perf_counter() - started,
        train_pool=len(pool),
        validation=validation,
        quantile_val_loss=tuple(quantile_loss),
        **history,
    )


def _checked_spec(
    windows: pd.DataFrame, futures: np.ndarray, spec: LstmSpec | None, epochs: int, batch: int
) -> LstmSpec:
    """The spec to train, with the extra channels' statistics; or why the input cannot train."""
    spec = spec or LstmSpec()
    if len(windows) != len(futures):
        raise LstmError(f"{len(windows)} windows but {len(futures)} futures.")
    if futures.ndim != 2 or futures.shape[1] != spec.horizon_days:
        raise LstmError(f"futures must be (n, {spec.horizon_days}), got {futures.shape}.")
    if epochs < 1 or batch < 1:
        raise LstmError("epochs and batch_size must be at least 1.")
    if spec.extra_channels:
        spec = LstmSpec(
            **{**asdict(spec), "channel_stats": _extra_stats(windows, spec.extra_channels)}
        )
    return spec


def _split(
    windows: pd.DataFrame,
    ids: np.ndarray,
    spec: LstmSpec,
    val_since: pd.Timestamp | str | None,
    val_fraction: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, str]:
    """Training pool, validation rows, and how they were split."""
    if val_since is not None:
        since = pd.Timestamp(val_since)
        pool, val_rows = _split_time(windows["date"], since, spec.horizon_days)
        return pool, val_rows, f"after {since.date()}"
    is_val = _split_batteries(ids, val_fraction, rng)
    return np.flatnonzero(~is_val), np.flatnonzero(is_val), "batteries"


@dataclass(frozen=True)
class _Schedule:
    """How long and how fast to train."""

    epochs: int
    per_epoch: int
    batch_size: int
    learning_rate: float
    patience: int
    time_budget_s: float | None
    started: float
    seed: int

    def out_of_time(self) -> bool:
        """Whether the time budget is spent."""
        budget = self.time_budget_s
        return budget is not None and time.perf_counter() - self.started > budget


def _train(
    model: CycleLstm, train: list[torch.Tensor], val: list[torch.Tensor], plan: _Schedule
) -> dict:
    """Epochs until early stopping or the budget; leaves `model` at its best epoch and returns
    the loss history (FitResult's fields)."""
    optimiser = torch.optim.Adam(model.parameters(), lr=plan.learning_rate)
    # Halve the step when validation stalls: the last epochs refine the weekday shape.
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimiser, factor=0.5, patience=1)
    shuffler = torch.Generator().manual_seed(plan.seed)
    # The untrained network forecasts the weekly baseline exactly (zero-initialised head).
    baseline_loss = _evaluate(model, *val)
    losses: dict[str, list[float]] = {"train": [], "val": []}
    best, best_epoch, stopped = baseline_loss, 0, False
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    for epoch in range(1, plan.epochs + 1):
        mean = _train_epoch(model, optimiser, train, plan.per_epoch, plan.batch_size, shuffler)
        losses["train"].append(mean)
        combined = _evaluate(model, *val)
        losses["val"].append(combined)
        scheduler.step(combined)
        log.info(
            "epoch %d: train loss %.5f, val loss %.5f (baseline %.5f) (%.1fs)",
            epoch,
            mean,
            combined,
            baseline_loss,
            time.perf_counter() - plan.started,
        )
        if combined < best:
            best, best_epoch = combined, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        elif epoch - best_epoch >= plan.patience:
            stopped = True
            log.info("Early stop: no better validation loss for %d epochs", plan.patience)
            break
        if plan.out_of_time():
            stopped = True
            log.info("Time budget of %.0fs spent after epoch %d", plan.time_budget_s, epoch)
            break
    model.load_state_dict(best_state)
    model.eval()
    return {
        "train_loss": losses["train"],
        "val_loss": losses["val"],
        "baseline_val_loss": baseline_loss,
        "best_epoch": best_epoch,
        "stopped_early": stopped,
    }


def _train_epoch(
    model: CycleLstm,
    optimiser: torch.optim.Optimizer,
    train: list[torch.Tensor],
    per_epoch: int,
    batch_size: int,
    shuffler: torch.Generator,
) -> float:
    """One pass over `per_epoch` windows drawn afresh from the pool; the mean training loss."""
    model.train()
    total = 0.0
    drawn = torch.randperm(len(train[0]), generator=shuffler)[:per_epoch]
    for batch in drawn.split(batch_size):
        loss = _loss(model, *(t[batch] for t in train))
        optimiser.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        total += loss.item() * len(batch)
    return total / per_epoch


def _masked_mse(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE over the target days that had a reading (NaN marks a day without one)."""
    known = ~torch.isnan(target)
    return ((predicted - target.nan_to_num()) ** 2 * known).sum() / known.sum().clamp(min=1)


def _pinball(
    quantiles: torch.Tensor, target: torch.Tensor, levels: Sequence[float]
) -> torch.Tensor:
    """Mean pinball loss of (n, h, k) quantiles at `levels` against (n, h) targets (NaN: none)."""
    tau = torch.tensor(levels, dtype=quantiles.dtype)
    known = ~torch.isnan(target)
    error = target.nan_to_num()[:, :, None] - quantiles
    loss = torch.maximum(tau * error, (tau - 1.0) * error) * known[:, :, None]
    return loss.sum() / (known.sum().clamp(min=1) * len(levels))


def _running_mean(target: torch.Tensor) -> torch.Tensor:
    """The mean day of the first h days, for each h (a day without a reading is parked)."""
    days = torch.arange(1, target.shape[1] + 1, dtype=target.dtype)
    return torch.cumsum(target.nan_to_num(), dim=1) / days


def _loss(
    model: CycleLstm,
    x: torch.Tensor,
    base: torch.Tensor,
    statics: torch.Tensor,
    y: torch.Tensor,
) -> torch.Tensor:
    """The point forecast's squared error (the trunk learns nothing else)."""
    return _masked_mse(model(x, base, statics if model.spec.static_inputs else None), y)


def _evaluate(
    model: CycleLstm,
    x: torch.Tensor,
    base: torch.Tensor,
    statics: torch.Tensor,
    y: torch.Tensor,
    batch_size: int = 4096,
) -> float:
    """The point forecast's scaled MSE on validation windows."""
    model.eval()
    total = 0.0
    with torch.inference_mode():
        for start in range(0, len(x), batch_size):
            chunk = slice(start, start + batch_size)
            total += _loss(model, x[chunk], base[chunk], statics[chunk], y[chunk]).item() * len(
                x[chunk]
            )
    return total / max(1, len(y))


def _head_data(
    model: CycleLstm, tensors: list[torch.Tensor], rows: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(point, quantile head inputs, targets) of windows, the trunk frozen: computed once."""
    x, base, statics, y = tensors if rows is None else (t[rows] for t in tensors)
    extra = statics if model.spec.static_inputs else None
    points, inputs = [], []
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(x), 4096):
            part = slice(start, start + 4096)
            features = model.features(x[part], None if extra is None else extra[part])
            points.append(base[part] + model.head(features))
            inputs.append(model.quantile_inputs(features, x[part]))
    return torch.cat(points), torch.cat(inputs), y


def _quantile_loss(
    model: CycleLstm, point: torch.Tensor, inputs: torch.Tensor, y: torch.Tensor
) -> torch.Tensor:
    spec = model.spec
    daily, totals = model.quantiles_from(point, inputs)
    return _pinball(daily, y, spec.daily_levels) + _pinball(
        totals, _running_mean(y), spec.cum_levels
    )


def _fit_quantile_head(
    model: CycleLstm, train: list[torch.Tensor], val: list[torch.Tensor], plan: _Schedule
) -> list[float]:
    """Train the quantile head on the frozen trunk; returns its validation loss per pass."""
    if not model.spec.quantiles:
        return []
    shuffler = torch.Generator().manual_seed(plan.seed + 1)
    rows = torch.randperm(len(train[0]), generator=shuffler)[: plan.per_epoch]
    point, inputs, y = _head_data(model, train, rows)
    val_point, val_inputs, val_y = _head_data(model, val)
    head = model.quantile_head
    optimiser = torch.optim.Adam(head.parameters(), lr=QUANTILE_LR)
    with torch.no_grad():
        best = _quantile_loss(model, val_point, val_inputs, val_y).item()
    best_state = {k: v.clone() for k, v in head.state_dict().items()}
    history, since_best = [], 0
    for _ in range(QUANTILE_EPOCHS):
        for batch in torch.randperm(len(y), generator=shuffler).split(QUANTILE_BATCH):
            loss = _quantile_loss(model, point[batch], inputs[batch], y[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        with torch.no_grad():
            history.append(_quantile_loss(model, val_point, val_inputs, val_y).item())
        if history[-1] < best:
            best, since_best = history[-1], 0
            best_state = {k: v.clone() for k, v in head.state_dict().items()}
        else:
            since_best += 1
            if since_best >= QUANTILE_PATIENCE:
                break
    head.load_state_dict(best_state)
    log.info("Quantile head: %d passes, validation pinball loss %.5f", len(history), best)
    return history


def time_validation_start(dates: pd.Series, horizon_days: int) -> pd.Timestamp:
    """Where a time-based validation of readings spanning `dates` starts: a quarter of the
    span before its end, at least a horizon plus two weeks and at most 120 days (enough
    windows to judge on, most of the history left to learn from)."""
    days = pd.to_datetime(dates)
    span = (days.max() - days.min()).days
    back = int(np.clip(span // 4, horizon_days + 14, 120))
    return days.max() - pd.Timedelta(days=back)
