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
    inputs) to the horizon: the point forecast, then the quantiles when the spec has them."""

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
        self.head = nn.Linear(
            spec.hidden_size + spec.static_size, spec.horizon_days * spec.outputs_per_day
        )

        # Start as the baseline itself: the correction grows only where it helps.
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def _corrections(self, windows: torch.Tensor, statics: torch.Tensor | None) -> torch.Tensor:
        """(n, horizon, outputs_per_day) corrections of the baseline."""
        out, _ = self.lstm(windows)
        last = out[:, -1, :]
        if self.spec.static_inputs:
            if statics is None:
                statics = torch.zeros(len(last), STATIC_FEATURES, dtype=last.dtype)
            last = torch.cat([last, statics], dim=1)
        return self.head(last).view(len(last), self.spec.horizon_days, self.spec.outputs_per_day)

    def forward(
        self, windows: torch.Tensor, baseline: torch.Tensor, statics: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(n, window, channels) scaled windows and (n, horizon) baseline -> scaled forecast."""
        return baseline + self._corrections(windows, statics)[:, :, 0]

    def distribution(
        self, windows: torch.Tensor, baseline: torch.Tensor, statics: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Scaled point forecast (n, h), daily quantiles (n, h, q) and running-total quantiles
        as the mean day of the first h days (n, h, k), each a correction of the baseline."""
        if not self.spec.quantiles:
            raise LstmError("This LSTM was saved without quantile heads.")
        corrections = self._corrections(windows, statics)
        q = len(self.spec.daily_levels)
        days = torch.arange(1, baseline.shape[1] + 1, dtype=baseline.dtype)
        running_mean = torch.cumsum(baseline, dim=1) / days
        point = baseline + corrections[:, :, 0]
        daily = baseline[:, :, None] + corrections[:, :, 1 : 1 + q]
        totals = running_mean[:, :, None] + corrections[:, :, 1 + q :]
        return point, daily, totals


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
