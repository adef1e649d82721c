"""One global PyTorch LSTM that forecasts every battery's next days of cycle use.

The network reads windows encoded by `models.forecasting.lstm_windows` (scale-free, padded,
with a mask and optional health channels) and learns a correction on top of a weekly
baseline repeated over the horizon. The head emits the whole horizon at once: a direct
multi-output head is 1.2-1.9x faster than rolling the LSTM forward (DESIGN.md).

With `LstmSpec.quantiles` (new specs) the head also emits quantiles, trained with the pinball
loss beside the point forecast's squared error (`models.forecasting.lstm_fit`): of each day's
use (`DAILY_LEVELS`) and of the running total's (`CUM_LEVELS`, as the mean day over the
first h days, so every horizon weighs alike). The totals' quantiles are the network's own
forecast, not sums of the daily ones. Training lives in `models.forecasting.lstm_fit`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from models.forecasting.distribution import (
    ForecastDistribution,
    monotone_cumulative,
    sorted_quantiles,
)
from models.forecasting.lstm_windows import (
    STATIC_FEATURES,
    LstmError,
    LstmSpec,
    encode_windows,
    static_features,
)

log = logging.getLogger(__name__)

WEIGHTS_FILE = "weights.pt"
SPEC_FILE = "spec.json"


class CycleLstm(nn.Module):
    """Stacked LSTM over the window, a linear head from the last hidden state (and the static
    inputs) to the horizon's correction of the baseline: the point forecast. With quantiles,
    a second linear head reads the same state, detached, with two measures of the window's
    volatility, and places the quantiles around the point forecast: the trunk is trained for
    the point forecast alone, and the quantiles cannot pull it off it."""

    def __init__(self, spec: LstmSpec) -> None:
        super().__init__()
        self.spec = spec
        self.lstm = nn.LSTM(
            input_size=spec.input_size,
            hidden_size=spec.hidden_size,
            num_layers=spec.num_layers,
            dropout=spec.dropout if spec.num_layers > 1 else 0.0,
            batch_first=True,
        )
        features = spec.hidden_size + spec.static_size
        self.head = nn.Linear(features, spec.horizon_days)
        # Start as the baseline itself: the correction grows only where it helps.
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        if spec.quantiles:
            levels = len(spec.daily_levels) + len(spec.cum_levels)
            self.quantile_head = nn.Linear(
                features + VOLATILITY_FEATURES, spec.horizon_days * levels
            )
            # Every quantile starts on the point forecast; the pinball loss spreads them.
            nn.init.zeros_(self.quantile_head.weight)
            nn.init.zeros_(self.quantile_head.bias)

    def features(self, windows: torch.Tensor, statics: torch.Tensor | None) -> torch.Tensor:
        """(n, hidden + static) what the heads read: the last hidden state and the statics."""
        out, _ = self.lstm(windows)
        last = out[:, -1, :]
        if self.spec.static_inputs:
            if statics is None:
                statics = torch.zeros(len(last), STATIC_FEATURES, dtype=last.dtype)
            last = torch.cat([last, statics], dim=1)
        return last

    def forward(
        self, windows: torch.Tensor, baseline: torch.Tensor, statics: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(n, window, channels) scaled windows and (n, horizon) baseline -> scaled forecast."""
        return baseline + self.head(self.features(windows, statics))

    def quantile_inputs(self, features: torch.Tensor, windows: torch.Tensor) -> torch.Tensor:
        """What the quantile head reads: the features, detached, and the window's volatility."""
        return torch.cat([features.detach(), volatility(windows)], dim=1)

    def quantiles_from(
        self, point: torch.Tensor, inputs: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Daily quantiles (n, h, q) and running-total quantiles as the mean day of the first
        h days (n, h, k), around a (scaled) point forecast, from `quantile_inputs`."""
        if not self.spec.quantiles:
            raise LstmError("This LSTM was saved without quantile heads.")
        q, h = len(self.spec.daily_levels), self.spec.horizon_days
        spread = self.quantile_head(inputs).view(len(point), h, -1)
        point = point.detach()
        days = torch.arange(1, h + 1, dtype=point.dtype)
        running_mean = torch.cumsum(point, dim=1) / days
        return point[:, :, None] + spread[:, :, :q], running_mean[:, :, None] + spread[:, :, q:]

    def distribution(
        self, windows: torch.Tensor, baseline: torch.Tensor, statics: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Scaled point forecast (n, h), daily quantiles (n, h, q) and running-total quantiles
        as the mean day of the first h days (n, h, k)."""
        if not self.spec.quantiles:
            raise LstmError("This LSTM was saved without quantile heads.")
        features = self.features(windows, statics)
        point = baseline + self.head(features)
        daily, totals = self.quantiles_from(point, self.quantile_inputs(features, windows))
        return point, daily, totals


# Inputs of the quantile head beside the hidden state: how much the window's days vary.
VOLATILITY_FEATURES = 2


def volatility(windows: torch.Tensor) -> torch.Tensor:
    """(n, 2): the spread of the window's last 28 scaled days, and how far its last week's
    level is from its last four weeks' (padded days, mask 0, left out)."""
    days, real = windows[:, -28:, 0], windows[:, -28:, 1]
    count = real.sum(dim=1).clamp(min=1)
    mean = (days * real).sum(dim=1) / count
    spread = torch.sqrt(((days - mean[:, None]) ** 2 * real).sum(dim=1) / count)
    week = (days[:, -7:] * real[:, -7:]).sum(dim=1) / real[:, -7:].sum(dim=1).clamp(min=1)
    return torch.stack([spread, (week - mean).abs()], dim=1)


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
    statics = static_features(frame, scale) if spec.static_inputs else None
    model.eval()
    parts = []
    with torch.inference_mode():
        for start in range(0, len(windows), batch_size):
            x, base, extra = _chunk(windows, baseline, statics, start, batch_size)
            parts.append(model(x, base, extra).numpy())
    scaled = np.concatenate(parts).astype(np.float64)
    return np.clip(scaled, 0.0, None) * scale[:, None]


def _chunk(
    windows: np.ndarray, baseline: np.ndarray, statics: np.ndarray | None, start: int, size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    part = slice(start, start + size)
    extra = None if statics is None else torch.from_numpy(statics[part])
    return torch.from_numpy(windows[part]), torch.from_numpy(baseline[part]), extra


def predict_lstm_distribution(
    model: CycleLstm, spec: LstmSpec, frame: pd.DataFrame, batch_size: int = PREDICT_CHUNK
) -> ForecastDistribution:
    """Point forecast and quantiles (daily, running totals) for model-input rows, in cycles.

    A spec without quantile heads (saved before them) gives the point forecast alone.
    """
    if not spec.quantiles or len(frame) == 0:
        return ForecastDistribution(predict_lstm(model, spec, frame, batch_size))
    windows, baseline, scale = encode_windows(frame, spec)
    statics = static_features(frame, scale) if spec.static_inputs else None
    model.eval()
    parts: list[tuple[np.ndarray, ...]] = []
    with torch.inference_mode():
        for start in range(0, len(windows), batch_size):
            chunk = _chunk(windows, baseline, statics, start, batch_size)
            parts.append(tuple(t.numpy() for t in model.distribution(*chunk)))
    stacked = zip(*parts, strict=True)
    point, daily, means = (np.concatenate(part).astype(np.float64) for part in stacked)
    s = scale[:, None, None]
    days = np.arange(1, spec.horizon_days + 1, dtype=np.float64)[None, :, None]
    return ForecastDistribution(
        np.clip(point, 0.0, None) * scale[:, None],
        daily=sorted_quantiles(np.clip(daily, 0.0, None) * s),
        cumulative=monotone_cumulative(sorted_quantiles(means * days * s)),
        daily_levels=spec.daily_levels,
        cum_levels=spec.cum_levels,
    )


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
