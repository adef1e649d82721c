"""The model card's text (pure): sections, numbers against baselines, registry-sized copy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.reporting.card_text import DESCRIPTION_LIMIT
from models.reporting.model_card import (
    CARD_FILE,
    DEFAULT_LIMITS,
    ModelCardError,
    registry_description,
    render_model_card,
    seasonal_naive_forecast,
)

pytestmark = pytest.mark.unit

METRICS = {"nrmse": 0.08, "rmse": 0.35, "mae": 0.14, "smape": 9.7, "mase": 1.2}
BASELINES = {
    "seasonal naive": {"nrmse": 0.10, "rmse": 0.4, "mae": 0.16, "smape": 10.1, "mase": 1.4},
    "weekly baseline": {"nrmse": 0.07, "rmse": 0.3, "mae": 0.12, "smape": 9.0, "mase": 1.1},
}
DATA = {
    "source": "daily-battery-time-series-v2.csv",
    "batteries": 1200,
    "rows": 438_000,
    "first_date": "2024-01-01",
    "last_date": "2024-12-01",
    "holdout_rows": 36_000,
    "holdout_first_date": "2024-12-02",
    "holdout_last_date": "2024-12-31",
}


def card(**changes) -> str:
    arguments = {
        "model_name": "battery-cycles-rnn",
        "version": "7",
        "run_id": "abc123",
        "description": "One LSTM shared by all batteries.",
        "training_data": DATA,
        "metrics": METRICS,
        "baselines": BASELINES,
        "limits": DEFAULT_LIMITS,
        "explanation_png": "explanation/feature_importance.png",
        "importance": {"last 7 days of use (lags 1-7)": 42.0, "battery age": 0.3},
    }
    return render_model_card(**{**arguments, **changes})


def test_card_has_every_section_in_plain_words() -> None:
    text = card()
    assert text.startswith("# Model card: battery-cycles-rnn, version 7")
    for heading in (
        "## What it predicts",
        "## What it looks at",
        "## Training data and period",
        "## How good it is",
        "## What drives its forecasts",
        "## How alerts are derived",
        "## Intended use",
        "## Limits",
    ):
        assert heading in text
    assert "1,200 batteries, 438,000 daily readings, 2024-01-01 to 2024-12-01" in text
    assert "between 2024-12-02 and 2024-12-31" in text
    assert all(limit in text for limit in DEFAULT_LIMITS)
    assert "![What drives the forecast](explanation/feature_importance.png)" in text
    assert "last 7 days of use (lags 1-7): error +42.0% when scrambled (relies on it)" in text
    assert "battery age: error +0.3% when scrambled (barely uses it)" in text


def test_metrics_table_and_verdict_compare_with_each_baseline() -> None:
    text = card()
    assert "| measure (lower is better) | this model | seasonal naive | weekly baseline |" in text
    assert "| Typical daily error (MAE, cycles per day) | 0.14 | 0.16 | 0.12 |" in text
    assert "20.0% better than seasonal naive" in text
    assert "14.3% worse than weekly baseline" in text
    assert "meets the lab's bar of 0.1355" in text


def test_card_lists_the_health_signals_among_the_inputs() -> None:
    looks_at = card(extra_inputs=("resting_voltage_history", "ambient_temp_c_history"))
    looks_at = looks_at.split("## What it looks at")[1].split("## ")[0]
    assert "the voltage at rest (`resting_voltage_history`)" in looks_at
    assert "the outside temperature (`ambient_temp_c_history`)" in looks_at
    assert "a day or a battery without them counts as an average one" in looks_at
    plain = card().split("## What it looks at")[1].split("## ")[0]
    assert "health" not in plain and "Nothing else: not the owner's plans, the weather" in plain


def test_card_without_nrmse_is_refused() -> None:
    with pytest.raises(ModelCardError, match="nrmse"):
        card(metrics={"mae": 0.1})


def test_card_without_explanation_says_so() -> None:
    text = card(importance=None, explanation_png=None)
    assert "Not measured for this version." in text
    assert "![" not in text


def test_registry_description_drops_the_image_and_fits_the_store() -> None:
    short = registry_description(card(), "abc123")
    assert "![" not in short and short.startswith("# Model card")
    long_limits = [f"Limit number {i}: " + "words " * 40 for i in range(40)]
    text = card(limits=long_limits)
    assert len(text) > DESCRIPTION_LIMIT
    shortened = registry_description(text, "abc123")
    assert len(shortened) <= DESCRIPTION_LIMIT
    assert f"`{CARD_FILE}` in run `abc123`" in shortened


def test_seasonal_naive_repeats_the_last_week() -> None:
    week = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    frame = pd.DataFrame({"daily_cycles": [np.array([9.0] * 3 + week), np.array([1.0, 3.0])]})
    forecast = seasonal_naive_forecast(frame, horizon_days=10)
    assert forecast.shape == (2, 10)
    np.testing.assert_allclose(forecast[0], week + week[:3])
    np.testing.assert_allclose(forecast[1], np.full(10, 2.0))  # short: its average day
