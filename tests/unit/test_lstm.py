"""The LSTM: input encoding (padding, scaling, baseline), shapes, training, save/load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from models.forecasting.features import build_training_windows
from models.forecasting.lstm import (
    CycleLstm,
    fit_lstm,
    load_lstm,
    predict_lstm,
    save_lstm,
)
from models.forecasting.lstm_windows import (
    DEFAULT_BASELINE,
    LstmError,
    LstmSpec,
    _left_pad,
    _padded_rows,
    encode_windows,
    optional_arrays,
    weekly_baseline,
)

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("one_torch_thread")]

SMALL = LstmSpec(window_days=14, horizon_days=5, hidden_size=8, num_layers=2)
FIXTURE_LSTM = Path(__file__).resolve().parents[1] / "fixtures" / "model" / "artifacts" / "lstm"
# A weekday pattern with mean 1, as a scaled window has.
WEEK = np.array([1.0, 1.0, 1.0, 1.0, 1.5, 0.5, 0.0])


def _rows(*histories: list[float]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "daily_cycles": [np.array(h, dtype=float) for h in histories],
            "lifetime_cycles_used": 10.0,
            "battery_rated_cycles": 500.0,
            "battery_age_days": 10.0,
        }
    )


def _fleet(batteries: int = 6, days: int = 70, seed: int = 0) -> pd.DataFrame:
    """A small fleet: per-battery level x weekday pattern x 5 % noise."""
    rng = np.random.default_rng(seed)
    weekday = np.array([1.1, 1.1, 1.1, 1.1, 1.2, 0.8, 0.6])
    frames = []
    for b in range(batteries):
        level = rng.uniform(0.5, 3.0)
        cycles = level * weekday[np.arange(days) % 7] * rng.normal(1.0, 0.05, days)
        frames.append(
            pd.DataFrame(
                {
                    "battery_id": f"b{b}",
                    "date": pd.date_range("2024-01-01", periods=days, freq="D"),
                    "daily_cycles_used": cycles,
                    "lifetime_cycles_used": np.cumsum(cycles),
                    "battery_rated_cycles": 1000.0,
                    "battery_age_days": np.arange(days),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def test_short_window_is_left_padded_with_its_mean_level_and_masked() -> None:
    x, baseline, scale = encode_windows(_rows([2.0, 4.0]), SMALL)
    assert x.shape == (1, 14, 2)
    assert scale.tolist() == [3.0]
    assert np.allclose(x[0, -2:, 0], [2 / 3, 4 / 3])
    assert np.all(x[0, :-2, 0] == 1.0)  # padding: the window's own mean level
    assert x[0, :, 1].tolist() == [0.0] * 12 + [1.0, 1.0]  # mask: real days only
    assert np.all(baseline == 1.0)  # under a week of history: flat at the mean


def test_long_history_keeps_the_most_recent_days() -> None:
    x, _, scale = encode_windows(_rows(list(range(1, 21))), SMALL)
    assert scale[0] == pytest.approx(np.mean(range(7, 21)))
    assert np.allclose(x[0, :, 0] * scale[0], range(7, 21))
    assert np.all(x[0, :, 1] == 1.0)


def test_missing_days_count_as_parked_and_empty_history_is_rejected() -> None:
    x, _, scale = encode_windows(_rows([np.nan, 2.0]), SMALL)
    assert scale[0] == 1.0 and x[0, -2, 0] == 0.0
    with pytest.raises(LstmError, match="at least one day"):
        encode_windows(_rows([]), SMALL)


def test_encode_needs_the_history_column() -> None:
    with pytest.raises(LstmError, match="daily_cycles"):
        encode_windows(pd.DataFrame({"x": [1]}), SMALL)


def test_weekly_baseline_repeats_each_weekday_median() -> None:
    two_weeks = np.tile(WEEK, 2)[None, :]
    base = weekly_baseline(two_weeks, np.array([14]), 9, "weekday_median")
    # Forecast day 1 falls on the weekday of the window's first column, and so on.
    assert base[0].tolist() == [*WEEK.tolist(), 1.0, 1.0]


def _windows(width: int, *tails: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Right-aligned scaled windows, left-padded with 1.0 as `encode_windows` does."""
    out = np.ones((len(tails), width))
    for row, tail in enumerate(tails):
        out[row, width - len(tail) :] = tail
    return out, np.array([len(t) for t in tails])


def test_weekday_mean_baseline_averages_up_to_four_weeks() -> None:
    five_weeks = np.concatenate([9 * WEEK, WEEK, WEEK, 2 * WEEK, 4 * WEEK])
    scaled, used = _windows(35, five_weeks, np.concatenate([WEEK, 2 * WEEK]), WEEK[:5])
    base = weekly_baseline(scaled, used, 8, "weekday_mean")
    # The oldest of five weeks is left out; the median would be 1.5 x WEEK.
    assert np.allclose(base[0], 2 * np.resize(WEEK, 8))
    assert np.allclose(base[1], 1.5 * np.resize(WEEK, 8))
    assert base[2].tolist() == [1.0] * 8  # under a week: flat at the mean


def test_profile_level_baseline_is_the_weekday_shape_at_the_last_two_weeks_level() -> None:
    shape = WEEK + 0.5 * (WEEK == 0)  # a weekday of use 0 in all but the first week
    nine_weeks = np.concatenate([5 * shape, np.tile(WEEK, 6), 2 * WEEK, 4 * WEEK])
    scaled, used = _windows(63, nine_weeks, np.tile(WEEK, 3), 3 * WEEK, np.zeros(20), WEEK[:6])
    base = weekly_baseline(scaled, used, 9, "profile_level")
    # The last eight weeks average 1.5 x WEEK (shape WEEK); the last two weeks' level is 3.
    assert np.allclose(base[0], 3 * np.resize(WEEK, 9))
    assert np.allclose(base[1], np.resize(WEEK, 9))
    assert np.allclose(base[2], 3 * np.resize(WEEK, 9))  # one week gives back that week
    assert base[3].tolist() == [0.0] * 9  # parked for two weeks: no use
    assert base[4].tolist() == [1.0] * 9


def test_unknown_baseline_is_rejected() -> None:
    with pytest.raises(LstmError, match="Unknown LSTM baseline 'mode'"):
        LstmSpec(baseline="mode")
    with pytest.raises(LstmError, match="choose from weekday_median"):
        weekly_baseline(np.ones((1, 7)), np.array([7]), 7, "mode")


def test_spec_round_trips_through_json() -> None:
    spec = LstmSpec(
        window_days=28,
        extra_channels=("resting_voltage_history",),
        channel_stats={"resting_voltage_history": (12.4, 0.3)},
        baseline="weekday_mean",
    )
    assert LstmSpec.from_json(spec.to_json()) == spec
    assert LstmSpec().baseline == DEFAULT_BASELINE == "profile_level"


def test_spec_saved_without_a_baseline_corrects_the_weekday_median() -> None:
    old = '{"window_days": 14, "horizon_days": 5, "hidden_size": 8, "num_layers": 2}'
    assert LstmSpec.from_json(old).baseline == "weekday_median"
    model, spec = load_lstm(FIXTURE_LSTM)  # registered before the baseline was a setting
    assert "baseline" not in (FIXTURE_LSTM / "spec.json").read_text(encoding="utf-8")
    assert spec.baseline == "weekday_median"
    rows = _rows([3.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0] * 2 + [1.0] * 7)
    x, _, scale = encode_windows(rows, spec)
    median = weekly_baseline(x[:, :, 0], np.array([21]), 30, "weekday_median")
    with torch.inference_mode():
        expected = model(torch.from_numpy(x), torch.from_numpy(median.astype(np.float32)))
    assert np.allclose(predict_lstm(model, spec, rows), expected.numpy() * scale[:, None])


def test_predictions_have_horizon_columns_and_scale_with_usage() -> None:
    torch.manual_seed(0)
    model = CycleLstm(SMALL)
    with torch.no_grad():
        model.head.weight.normal_(0, 0.1)  # a non-trivial correction
    light = _rows([1.0, 2.0, 1.5] * 4, [0.5])
    heavy = _rows([10.0, 20.0, 15.0] * 4, [5.0])
    forecast_light = predict_lstm(model, SMALL, light)
    forecast_heavy = predict_lstm(model, SMALL, heavy)
    assert forecast_light.shape == (2, 5)
    assert np.all(forecast_light >= 0)
    assert np.allclose(forecast_heavy, 10 * forecast_light, rtol=1e-5)
    assert predict_lstm(model, SMALL, light.iloc[0:0]).shape == (0, 5)


def test_untrained_model_forecasts_the_weekly_baseline() -> None:
    history = [1.0, 1.0, 1.0, 1.0, 2.0, 0.5, 0.5] * 2
    forecast = predict_lstm(CycleLstm(SMALL), SMALL, _rows(history))
    assert np.allclose(forecast[0], history[:5], rtol=1e-5)


def test_fit_learns_records_losses_and_is_reproducible() -> None:
    windows, futures = build_training_windows(
        _fleet(days=50), SMALL.window_days, SMALL.horizon_days
    )
    options = dict(epochs=2, batch_size=64, patience=5, max_windows=None, seed=3)
    first = fit_lstm(windows, futures, SMALL, **options)
    again = fit_lstm(windows, futures, SMALL, **options)
    assert len(first.train_loss) == len(first.val_loss) == 2
    assert first.train_loss == again.train_loss and first.val_loss == again.val_loss
    assert first.baseline_val_loss > 0 and np.isfinite(first.baseline_val_loss)
    # The best epoch is the best validation loss, the untrained baseline (epoch 0) included.
    losses = [first.baseline_val_loss, *first.val_loss]
    assert first.best_epoch == int(np.argmin(losses))
    assert first.spec.baseline == DEFAULT_BASELINE
    # Validation holds out whole batteries.
    val_ids = set(first.val_batteries)
    assert val_ids and first.val_windows == windows["battery_id"].isin(val_ids).sum()
    assert first.train_windows + first.val_windows == len(windows)
    forecast = predict_lstm(first.model, first.spec, windows.iloc[:3])
    assert forecast.shape == (3, SMALL.horizon_days)
    assert np.sqrt(np.mean((forecast - futures[:3]) ** 2)) < 0.5 * futures[:3].mean()


def test_fit_caps_training_windows_and_stops_on_time_budget() -> None:
    windows, futures = build_training_windows(_fleet(), SMALL.window_days, SMALL.horizon_days)
    result = fit_lstm(windows, futures, SMALL, epochs=50, max_windows=40, time_budget_s=0.0)
    assert result.train_windows == 40
    assert len(result.train_loss) == 1 and result.stopped_early


def test_fit_needs_two_batteries() -> None:
    windows, futures = build_training_windows(_fleet(batteries=1), 14, 5)
    with pytest.raises(LstmError, match="at least 2 batteries"):
        fit_lstm(windows, futures, SMALL, epochs=1)


def test_fit_rejects_futures_of_the_wrong_horizon() -> None:
    windows, futures = build_training_windows(_fleet(batteries=2), 14, 4)
    with pytest.raises(LstmError, match="futures must be"):
        fit_lstm(windows, futures, SMALL, epochs=1)


# A tiny network with one extra channel, standardised around 12.0 V with spread 0.5 V.
VOLTAGE_SPEC = LstmSpec(
    window_days=4,
    horizon_days=2,
    hidden_size=4,
    extra_channels=("resting_voltage",),
    channel_stats={"resting_voltage": (12.0, 0.5)},
)


def test_extra_channels_hook_adds_standardised_inputs() -> None:
    spec = VOLTAGE_SPEC
    rows = _rows([1.0, 1.0]).assign(resting_voltage=[np.array([12.5, 11.5])])
    x, _, _ = encode_windows(rows, spec)
    assert spec.input_size == 3 and x.shape == (1, 4, 3)
    assert x[0, :, 2].tolist() == [0.0, 0.0, 1.0, -1.0]
    assert predict_lstm(CycleLstm(spec), spec, rows).shape == (1, 2)


def test_missing_extra_channels_count_as_the_training_mean() -> None:
    spec = VOLTAGE_SPEC
    absent, _, _ = encode_windows(_rows([1.0, 1.0]), spec)
    assert absent.shape == (1, 4, 3) and not absent[0, :, 2].any()
    rows = _rows([1.0, 1.0], [1.0, 1.0]).assign(resting_voltage=[None, np.array([np.nan, 12.5])])
    x, _, _ = encode_windows(rows, spec)
    assert x[0, :, 2].tolist() == [0.0, 0.0, 0.0, 0.0]
    assert x[1, :, 2].tolist() == [0.0, 0.0, 0.0, 1.0]


def test_fit_freezes_channel_stats_and_refuses_an_empty_channel() -> None:
    windows, futures = build_training_windows(_fleet(), SMALL.window_days, SMALL.horizon_days)
    level = [np.full(len(h), 12.0) + np.arange(len(h)) % 2 for h in windows["daily_cycles"]]
    spec = LstmSpec(**{**SMALL.__dict__, "extra_channels": ("resting_voltage_history",)})
    fitted = fit_lstm(
        windows.assign(resting_voltage_history=level), futures, spec, epochs=1, max_windows=50
    )
    mean, std = fitted.spec.channel_stats["resting_voltage_history"]
    assert 12.0 < mean < 13.0 and std > 0
    empty = [np.full(len(h), np.nan) for h in windows["daily_cycles"]]
    with pytest.raises(LstmError, match="no values"):
        fit_lstm(windows.assign(resting_voltage_history=empty), futures, spec, epochs=1)


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = CycleLstm(SMALL)
    with torch.no_grad():
        model.head.bias.fill_(0.25)
    folder = save_lstm(model, SMALL, tmp_path / "lstm")
    loaded, spec = load_lstm(folder)
    rows = _rows([1.0, 2.0, 3.0] * 5)
    assert spec == SMALL
    assert np.allclose(predict_lstm(loaded, spec, rows), predict_lstm(model, SMALL, rows))


def test_load_from_an_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(LstmError, match="no saved LSTM"):
        load_lstm(tmp_path)


def test_a_correction_that_never_beats_the_baseline_is_not_kept() -> None:
    windows, futures = build_training_windows(
        _fleet(days=50), SMALL.window_days, SMALL.horizon_days
    )
    # A learning rate this large wrecks the correction in the first epoch.
    fit = fit_lstm(
        windows, futures, SMALL, epochs=2, learning_rate=50.0, patience=5, max_windows=None
    )
    assert min(fit.val_loss) > fit.baseline_val_loss
    assert fit.best_epoch == 0
    _, baseline, scale = encode_windows(windows.head(20), fit.spec)
    forecast = predict_lstm(fit.model, fit.spec, windows.head(20))
    np.testing.assert_allclose(forecast, baseline * scale[:, None], rtol=1e-5)


def test_rows_of_numbers_are_padded_at_once_as_they_are_row_by_row() -> None:
    rng = np.random.default_rng(3)
    rows = [rng.uniform(0, 3, n) for n in (20, 14, 3, 1, 0)]
    rows[1] = rows[1].astype(object)
    rows[1][9] = None  # a day without a value
    rows.append([1.0, 2.0])  # a plain list, as JSON gives
    at_once = _padded_rows(rows, 14, optional=True)
    by_row = _left_pad(optional_arrays(rows), 14, np.nan)
    for fast, slow in zip(at_once, by_row, strict=True):
        assert np.array_equal(fast, slow, equal_nan=True)
    assert at_once[1].tolist() == [14, 14, 3, 1, 0, 2]
    # A null row cannot go through at once; it still counts as no values at all.
    with_null = _padded_rows([*rows, None], 14, optional=True)
    assert np.array_equal(with_null[0][:-1], at_once[0], equal_nan=True)
    assert with_null[1][-1] == 0 and np.isnan(with_null[0][-1]).all()
