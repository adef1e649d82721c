"""One global PyTorch LSTM that forecasts every battery's next days of cycle use.

The network reads windows encoded by `models.forecasting.lstm_windows` (scale-free, padded,
with a mask and optional health channels) and learns a correction on top of a weekly
baseline repeated over the horizon. The head emits the whole horizon at once: a direct
multi-output head is 1.2-1.9x faster than rolling the LSTM forward (DESIGN.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from models.forecasting.lstm_windows import LstmError, LstmSpec, encode_windows, optional_arrays

log = logging.getLogger(__name__)

WEIGHTS_FILE = "weights.pt"
SPEC_FILE = "spec.json"


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
        values = np.concatenate([np.zeros(0), *optional_arrays(frame[name].tolist())])
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
    train_rows, val_rows = _sample_rows(ids, val_fraction, max_windows, max_val_windows, rng)
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
        train_loss.append(_train_epoch(model, optimiser, train, batch_size, shuffler))
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


def _sample_rows(
    ids: np.ndarray,
    val_fraction: float,
    max_windows: int | None,
    max_val_windows: int | None,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation rows: split by battery, each sampled down to its maximum."""
    is_val = _split_batteries(ids, val_fraction, rng)
    train_rows, val_rows = np.flatnonzero(~is_val), np.flatnonzero(is_val)
    if max_windows is not None and len(train_rows) > max_windows:
        train_rows = np.sort(rng.choice(train_rows, size=max_windows, replace=False))
    if max_val_windows is not None and len(val_rows) > max_val_windows:
        val_rows = np.sort(rng.choice(val_rows, size=max_val_windows, replace=False))
    return train_rows, val_rows


def _train_epoch(
    model: CycleLstm,
    optimiser: torch.optim.Optimizer,
    train: list[torch.Tensor],
    batch_size: int,
    shuffler: torch.Generator,
) -> float:
    """One pass over the training windows in a shuffled order; the mean training loss."""
    model.train()
    total = 0.0
    for batch in torch.randperm(len(train[0]), generator=shuffler).split(batch_size):
        x, base, y = (t[batch] for t in train)
        loss = _masked_mse(model(x, base), y)
        optimiser.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        total += loss.item() * len(batch)
    return total / len(train[0])


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
