"""The LSTM's quantile heads, static inputs and time-based validation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from models.forecasting.distribution import CUM_LEVELS, DAILY_LEVELS
from models.forecasting.features import build_training_windows
from models.forecasting.lstm import CycleLstm, predict_lstm, predict_lstm_distribution
from models.forecasting.lstm_fit import fit_lstm, time_validation_start
from models.forecasting.lstm_windows import LstmError, LstmSpec
from tests.unit.test_lstm import _fleet

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("one_torch_thread")]

SPEC = LstmSpec(window_days=14, horizon_days=5, hidden_size=8, num_layers=1)


def test_quantile_heads_forecast_ordered_daily_and_running_total_quantiles() -> None:
    torch.manual_seed(0)
    model = CycleLstm(SPEC)
    with torch.no_grad():
        model.head.weight.normal_(0, 0.1)
    windows, _ = build_training_windows(_fleet(), 14, 5)
    dist = predict_lstm_distribution(model, SPEC, windows.head(10))
    assert dist.daily.shape == (10, 5, len(DAILY_LEVELS))
    assert dist.cumulative.shape == (10, 5, len(CUM_LEVELS))
    assert (np.diff(dist.daily, axis=2) >= 0).all() and (
        np.diff(dist.cumulative, axis=2) >= 0
    ).all()
    assert (np.diff(dist.cumulative, axis=1) >= 0).all()
    np.testing.assert_allclose(dist.point, predict_lstm(model, SPEC, windows.head(10)))


def test_an_untrained_network_puts_every_quantile_on_the_baseline() -> None:
    windows, _ = build_training_windows(_fleet(), 14, 5)
    dist = predict_lstm_distribution(CycleLstm(SPEC), SPEC, windows.head(3))
    np.testing.assert_allclose(dist.daily[:, :, 1], dist.point, rtol=1e-5)
    np.testing.assert_allclose(dist.cumulative[:, :, 0], np.cumsum(dist.point, axis=1), rtol=1e-5)


def test_a_spec_saved_before_quantiles_has_none() -> None:
    old = LstmSpec.from_json('{"window_days": 14, "horizon_days": 5, "hidden_size": 8}')
    assert not old.quantiles and not old.static_inputs and old.outputs_per_day == 1
    windows, _ = build_training_windows(_fleet(), 14, 5)
    dist = predict_lstm_distribution(CycleLstm(old), old, windows.head(2))
    assert dist.daily is None and dist.cumulative is None
    with pytest.raises(LstmError, match="without quantile heads"):
        CycleLstm(old).distribution(torch.zeros(1, 14, 2), torch.zeros(1, 5))


def test_pinball_training_spreads_the_quantiles_around_the_futures() -> None:
    windows, futures = build_training_windows(_fleet(), 14, 5)
    fit = fit_lstm(windows, futures, SPEC, epochs=6, max_windows=None, patience=6, seed=1)
    dist = predict_lstm_distribution(fit.model, fit.spec, windows)
    low, high = dist.daily[:, :, 0], dist.daily[:, :, -1]
    inside = ((futures >= low) & (futures <= high)).mean()
    assert 0.5 < inside < 0.98  # an 80% band, roughly
    assert (dist.cumulative[:, -1, -1] > dist.cumulative[:, -1, 0]).all()


def test_time_based_validation_learns_before_and_judges_after() -> None:
    readings = _fleet(days=120)
    windows, futures = build_training_windows(readings, 14, 5)
    since = time_validation_start(readings["date"], 5)
    assert since == pd.Timestamp("2024-04-29") - pd.Timedelta(days=29)  # a quarter of 119 days
    fit = fit_lstm(windows, futures, SPEC, epochs=1, val_since=since, max_windows=None)
    dates = pd.to_datetime(windows["date"])
    assert fit.val_windows == int((dates > since).sum())
    assert fit.train_pool == int((dates + pd.Timedelta(days=5) <= since).sum())
    assert fit.validation == f"after {since.date()}" and len(fit.val_batteries) == 6
    with pytest.raises(LstmError, match="leaves no training"):
        fit_lstm(windows, futures, SPEC, epochs=1, val_since="2024-01-02")


def test_static_inputs_read_the_lifetime_mean() -> None:
    spec = LstmSpec(window_days=14, horizon_days=5, hidden_size=8, static_inputs=True)
    assert spec.static_size == 2
    windows, futures = build_training_windows(_fleet(), 14, 5)
    fit = fit_lstm(windows, futures, spec, epochs=1, max_windows=200)
    assert predict_lstm(fit.model, fit.spec, windows.head(4)).shape == (4, 5)
