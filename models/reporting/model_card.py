"""A model card for every registered forecaster version, written for people who are not data
scientists: what it predicts, from what, how good it is against simple rules, what drives it,
how alerts follow from it, what it is for and where it falls short.

The card is Markdown, logged as the run's `model_card.md` and set as the registered
version's description, so the MLflow UI shows it on the version page.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from models.forecasting.features import HISTORY_COLUMN, MODEL_INPUT_COLUMNS
from models.reporting.card_text import (
    CARD_FILE,
    ModelCardError,
    registry_description,
    render_model_card,
)

log = logging.getLogger(__name__)

DEFAULT_LIMITS: tuple[str, ...] = (
    "It forecasts how much a battery will be used, not how healthy it is: a battery that "
    "fails early for another reason (a fault, extreme cold) is not foreseen.",
    "It looks 30 days ahead and no further: a battery expected to last longer gets no alert, "
    "however close it is.",
    "A battery with less than a week of history gets a rough forecast built mostly from its "
    "average day.",
    "Its accuracy was measured on one period (each battery's last 30 days); an unusual month, "
    "such as holidays, can be worse.",
    "A fleet that drives very differently from the training data needs retraining on its own "
    "telemetry before its forecasts are trusted.",
)


def log_model_card(
    *,
    model_name: str,
    version: str,
    run_id: str,
    description: str,
    training_data: Mapping[str, Any],
    metrics: Mapping[str, float],
    baselines: Mapping[str, Mapping[str, float]],
    limits: Sequence[str],
    explanation_png: str | None,
    importance: Mapping[str, float] | None = None,
    window_days: int = 60,
    horizon_days: int = 30,
    alert_within_days: int = 30,
    extra_inputs: Sequence[str] = (),
) -> str:
    """Write the card, log it as the run's `model_card.md` and make it the version's description.

    Returns the Markdown.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    card = render_model_card(
        model_name=model_name,
        version=version,
        run_id=run_id,
        description=description,
        training_data=training_data,
        metrics=metrics,
        baselines=baselines,
        limits=limits,
        explanation_png=explanation_png,
        importance=importance,
        window_days=window_days,
        horizon_days=horizon_days,
        alert_within_days=alert_within_days,
        extra_inputs=extra_inputs,
    )
    client = MlflowClient()
    try:
        client.get_model_version(model_name, version)
    except MlflowException:
        raise ModelCardError(
            f"Model {model_name} has no version {version} to write a card for."
        ) from None
    client.log_text(run_id, card, CARD_FILE)
    client.update_model_version(model_name, version, registry_description(card, run_id))
    log.info("Model card of %s version %s logged to run %s", model_name, version, run_id)
    return card


def seasonal_naive_forecast(
    frame: pd.DataFrame, horizon_days: int = 30, season: int = 7
) -> np.ndarray:
    """The simplest baseline: each battery's last `season` days repeated over the horizon.

    A history shorter than a season repeats its average day.
    """
    out = np.empty((len(frame), horizon_days))
    for row, history in enumerate(frame[HISTORY_COLUMN]):
        values = np.nan_to_num(np.asarray(history, dtype=np.float64), nan=0.0)
        if len(values) >= season:
            out[row] = np.resize(values[-season:], horizon_days)
        else:
            out[row] = values.mean() if len(values) else 0.0
    return out


def document_forecaster(
    *,
    predict: Callable[[pd.DataFrame], np.ndarray],
    model_name: str,
    version: str,
    run_id: str,
    description: str,
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    metrics: Mapping[str, float],
    baselines: Mapping[str, Mapping[str, float]] | None = None,
    data_source: str,
    window_days: int = 60,
    horizon_days: int = 30,
    alert_within_days: int = 30,
    limits: Sequence[str] = DEFAULT_LIMITS,
    max_rows: int = 300,
    extra_inputs: Sequence[str] = (),
) -> str:
    """Explain a registered forecaster on its holdout and log its model card; returns the card.

    `metrics` are the model's holdout metrics without prefix (nrmse, mae, ...); the seasonal
    naive baseline is scored on the same holdout and added to `baselines` (also logged as
    `seasonal_naive_*` metrics). Works for any forecaster of the contract; `extra_inputs`
    (the optional health arrays the model reads) are explained and listed on the card.
    """
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    from models.forecasting.metrics import evaluate_holdout, holdout_targets
    from models.reporting.explain import IMPORTANCE_FILE, log_explanation

    inputs, actual = holdout_targets(train, holdout, window_days, horizon_days)
    # Only what the model reads: health arrays it ignores would show as a 0% driver.
    columns = [*MODEL_INPUT_COLUMNS, *(c for c in extra_inputs if c in inputs.columns)]
    importance = log_explanation(predict, inputs[columns], actual, run_id=run_id, max_rows=max_rows)
    naive = evaluate_holdout(
        lambda frame: seasonal_naive_forecast(frame, horizon_days),
        train,
        holdout,
        window_days,
        horizon_days,
    )
    stamp = int(time.time() * 1000)
    MlflowClient().log_batch(
        run_id, metrics=[Metric(f"seasonal_naive_{k}", v, stamp, 0) for k, v in naive.items()]
    )
    dates = pd.to_datetime(train["date"])
    held = pd.to_datetime(holdout["date"])
    training_data = {
        "source": data_source,
        "batteries": int(train["battery_id"].nunique()),
        "rows": len(train),
        "first_date": dates.min().date().isoformat(),
        "last_date": dates.max().date().isoformat(),
        "holdout_rows": len(holdout),
        "holdout_first_date": held.min().date().isoformat(),
        "holdout_last_date": held.max().date().isoformat(),
    }
    return log_model_card(
        model_name=model_name,
        version=version,
        run_id=run_id,
        description=description,
        training_data=training_data,
        metrics=metrics,
        baselines={"seasonal naive": naive, **(baselines or {})},
        limits=limits,
        explanation_png=IMPORTANCE_FILE,
        importance=importance,
        window_days=window_days,
        horizon_days=horizon_days,
        alert_within_days=alert_within_days,
        extra_inputs=extra_inputs,
    )
