"""The forecast contract with optional health arrays: signature, coercion, scoring."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from apps.training_data import simulated_readings
from models.forecasting.candidates import FitRequest, TrainedLstm, lstm_candidate, select_candidates
from models.forecasting.features import (
    HEALTH_HISTORY_COLUMNS,
    MODEL_INPUT_COLUMNS,
    build_history_windows,
)
from models.forecasting.lstm import save_lstm
from models.forecasting.pyfunc import (
    LSTM_ARTIFACT,
    Forecaster,
    ForecastInputError,
    LstmForecastModel,
    coerce_model_input,
    forecast_input_example,
    forecast_signature,
)

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("one_torch_thread")]

WINDOW, HORIZON = 14, 5
# One epoch on a few hundred windows: these tests check the plumbing, not the quality.
TINY = {"epochs": 1, "max_windows": 200}


@pytest.fixture(scope="module")
def readings() -> pd.DataFrame:
    return simulated_readings(batteries=6, days=60, seed=3)


@pytest.fixture(scope="module")
def rows(readings: pd.DataFrame) -> pd.DataFrame:
    """Contract rows at each battery's last reading, with the four health arrays."""
    last = readings.groupby("battery_id", as_index=False)["date"].max()
    windows = build_history_windows(readings, WINDOW, last)
    return windows.drop(columns=["battery_id", "date"])


def _fit(readings: pd.DataFrame, **options) -> TrainedLstm:
    request = FitRequest(readings, window_days=WINDOW, horizon_days=HORIZON, seed=1)
    model = lstm_candidate(**TINY, **options).fit(request)
    assert isinstance(model, TrainedLstm)
    return model


@pytest.fixture(scope="module")
def with_health(readings: pd.DataFrame) -> TrainedLstm:
    return _fit(readings)


@pytest.fixture(scope="module")
def without_health(readings: pd.DataFrame) -> TrainedLstm:
    return _fit(readings, health_signals=False)


def test_simulated_readings_carry_every_health_signal(rows: pd.DataFrame) -> None:
    assert list(rows.columns) == [*MODEL_INPUT_COLUMNS, *HEALTH_HISTORY_COLUMNS]


def test_signature_declares_health_arrays_as_optional() -> None:
    plain = forecast_signature(HORIZON).inputs
    assert plain.input_names() == list(MODEL_INPUT_COLUMNS)
    health = forecast_signature(HORIZON, HEALTH_HISTORY_COLUMNS).inputs
    assert health.required_input_names() == list(MODEL_INPUT_COLUMNS)
    assert health.optional_input_names() == list(HEALTH_HISTORY_COLUMNS)


def test_input_example_aligns_health_arrays_with_each_history() -> None:
    example = forecast_input_example(WINDOW, HEALTH_HISTORY_COLUMNS)
    for name in HEALTH_HISTORY_COLUMNS:
        assert [len(v) for v in example[name]] == [len(h) for h in example["daily_cycles"]]
    assert 12 < np.mean(example["resting_voltage_history"].iloc[0]) < 13
    assert list(forecast_input_example(WINDOW).columns) == list(MODEL_INPUT_COLUMNS)


def test_lstm_trained_on_health_signals_uses_them_as_channels(
    with_health: TrainedLstm, without_health: TrainedLstm
) -> None:
    assert with_health.spec.extra_channels == HEALTH_HISTORY_COLUMNS
    assert with_health.extra_inputs == HEALTH_HISTORY_COLUMNS
    assert set(with_health.spec.channel_stats) == set(HEALTH_HISTORY_COLUMNS)
    mean, std = with_health.spec.channel_stats["resting_voltage_history"]
    assert 11.5 < mean < 13.5 and std > 0
    assert without_health.spec.extra_channels == () and without_health.extra_inputs == ()


def test_health_model_scores_with_and_without_the_health_arrays(
    with_health: TrainedLstm, rows: pd.DataFrame
) -> None:
    full = with_health.predict(None, rows)
    bare = with_health.predict(None, rows[list(MODEL_INPUT_COLUMNS)])
    assert full.shape == bare.shape == (len(rows), HORIZON)
    assert np.isfinite(full).all() and np.isfinite(bare).all() and (bare >= 0).all()
    # A battery without health values (null arrays) scores as if they were absent.
    nulls = rows.assign(**{c: [None] * len(rows) for c in HEALTH_HISTORY_COLUMNS})
    assert np.allclose(with_health.predict(None, nulls), bare)
    # The stream's Arrow path turns a null list into an empty one: also missing.
    empty = rows.assign(**{c: [np.zeros(0)] * len(rows) for c in HEALTH_HISTORY_COLUMNS})
    assert np.allclose(with_health.predict(None, empty), bare)
    # As does one the stream sends with a single signal missing on one day.
    gap = rows.copy()
    gap.at[0, "resting_voltage_history"] = [None, *gap.at[0, "resting_voltage_history"][1:]]
    assert np.isfinite(with_health.predict(None, gap)).all()


def test_health_arrays_that_break_the_contract_are_refused(
    with_health: TrainedLstm, rows: pd.DataFrame
) -> None:
    short = rows.copy()
    short.at[0, "ambient_temp_c_history"] = short.at[0, "ambient_temp_c_history"][:-1]
    with pytest.raises(ForecastInputError, match="as long as its 'daily_cycles'"):
        with_health.predict(None, short)
    text = rows.assign(resting_voltage_history=[["high"] * WINDOW] * len(rows))
    with pytest.raises(ForecastInputError, match="array of numbers"):
        with_health.predict(None, text)
    infinite = rows.copy()
    days = len(infinite.at[1, "daily_cycles"])
    infinite.at[1, "charge_acceptance_history"] = np.full(days, np.inf)
    with pytest.raises(ForecastInputError, match="finite"):
        with_health.predict(None, infinite)


def test_models_without_health_channels_ignore_extra_columns(
    without_health: TrainedLstm, readings: pd.DataFrame, rows: pd.DataFrame
) -> None:
    bare = rows[list(MODEL_INPUT_COLUMNS)]
    # Even arrays that would break a health model's contract: this model never reads them.
    odd = rows.assign(resting_voltage_history="not an array", battery_note="spare")
    naive = select_candidates(["seasonal_naive"])[0].fit(
        FitRequest(readings, window_days=WINDOW, horizon_days=HORIZON)
    )
    for model in (without_health, naive):
        expected = model.predict(None, bare)
        assert np.array_equal(model.predict(None, rows), expected)
        assert np.array_equal(model.predict(None, odd), expected)


def test_logged_lstm_class_reads_its_channels_and_warns_once_without_them(
    with_health: TrainedLstm, rows: pd.DataFrame, tmp_path: Path, caplog
) -> None:
    folder = save_lstm(with_health.model, with_health.spec, tmp_path / LSTM_ARTIFACT)
    logged = LstmForecastModel()
    logged.load_context(SimpleNamespace(artifacts={LSTM_ARTIFACT: str(folder)}))
    assert logged.extra_inputs == HEALTH_HISTORY_COLUMNS
    assert np.allclose(logged.predict(None, rows), with_health.predict(None, rows))
    forecaster = Forecaster("rnn", "1", "runs:/x/model", logged)
    bare = rows[list(MODEL_INPUT_COLUMNS)]
    with caplog.at_level(logging.WARNING, logger="models.forecasting.pyfunc"):
        first = forecaster.predict(bare)
        second = forecaster.predict(bare)
    assert np.allclose(first, second) and np.allclose(first, with_health.predict(None, bare))
    warnings = [r for r in caplog.records if "Scoring without" in r.getMessage()]
    assert len(warnings) == 1


def test_coerce_leaves_arrays_the_model_does_not_read_untouched() -> None:
    example = forecast_input_example(WINDOW).assign(resting_voltage_history=["x", None])
    out = coerce_model_input(example)
    assert out["resting_voltage_history"].tolist() == ["x", None]
    with pytest.raises(ForecastInputError, match="array of numbers"):
        coerce_model_input(example, array_columns=("resting_voltage_history",))
    absent = coerce_model_input(forecast_input_example(WINDOW), array_columns=("x_history",))
    assert "x_history" not in absent.columns


def test_coerce_of_whole_columns_of_numbers_keeps_every_row_rule() -> None:
    example = forecast_input_example(WINDOW)  # windows of different lengths
    volts = [np.full(len(h), 12.5) for h in example["daily_cycles"]]
    volts[0] = volts[0].astype(object)
    volts[0][3] = None
    out = coerce_model_input(
        example.assign(resting_voltage_history=volts), array_columns=("resting_voltage_history",)
    )
    assert all(isinstance(h, np.ndarray) and h.dtype == np.float64 for h in out["daily_cycles"])
    assert np.isnan(out["resting_voltage_history"][0][3])
    assert np.allclose(out["daily_cycles"][1], example["daily_cycles"][1])
    negative = example.copy()
    negative.at[0, "daily_cycles"] = [-1.0] * len(example["daily_cycles"][0])
    with pytest.raises(ForecastInputError, match="0 or more"):
        coerce_model_input(negative)
    with pytest.raises(ForecastInputError, match="at most"):
        coerce_model_input(example, max_days=WINDOW - 1)
    infinite = [np.full(len(h), np.inf) for h in example["daily_cycles"]]
    with pytest.raises(ForecastInputError, match="finite"):
        coerce_model_input(
            example.assign(resting_voltage_history=infinite),
            array_columns=("resting_voltage_history",),
        )
    misaligned = [np.full(3, 12.5) for _ in range(len(example))]
    with pytest.raises(ForecastInputError, match="as long as"):
        coerce_model_input(
            example.assign(resting_voltage_history=misaligned),
            array_columns=("resting_voltage_history",),
        )


def test_a_version_pickled_under_the_flat_module_names_still_loads() -> None:
    """The fixture model was logged when the class lived in `models.pyfunc`."""
    import cloudpickle

    from models.forecasting.pyfunc import LstmForecastModel

    pickled = Path(__file__).resolve().parents[1] / "fixtures" / "model" / "python_model.pkl"
    assert b"models.pyfunc" in pickled.read_bytes()
    with pickled.open("rb") as handle:
        assert isinstance(cloudpickle.load(handle), LstmForecastModel)
