"""The stream decodes only the health arrays its models read, and scores what training builds."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from apps.training_data import simulated_readings
from models.forecasting.features import (
    HEALTH_HISTORY_COLUMNS,
    MODEL_INPUT_COLUMNS,
    build_history_windows,
)
from models.forecasting.loader import load_forecaster
from streaming.battery.history import HistoryRules
from streaming.battery.readings import battery_history, parse_telemetry
from streaming.battery.scoring import model_input, score_readings
from streaming.files import messages_from_rows
from streaming.model_refs import ModelTracker, PinnedModel, RegistryTarget

pytestmark = pytest.mark.component

FIXTURE_MODEL = Path(__file__).resolve().parents[1] / "fixtures" / "model"


def test_models_declare_the_health_arrays_they_read_and_both_kinds_score(
    spark, trained_config, caplog
):
    cfg = trained_config
    client = MlflowClient(tracking_uri=cfg.mlflow.tracking_uri)
    with_health = ModelTracker(client, cfg.forecast.model, cfg.mlflow.alias).refresh()
    without = PinnedModel(client, str(FIXTURE_MODEL)).refresh()
    # The session's champion trained on simulated readings, which carry every signal; the
    # recorded fixture model predates health inputs.
    assert with_health.inputs == HEALTH_HISTORY_COLUMNS
    assert without.inputs == ()
    assert "Cannot read the signature" not in caplog.text  # read, not the fallback

    readings = simulated_readings(batteries=3, days=90, seed=5)
    messages = messages_from_rows(spark.createDataFrame(readings), "test")
    decided = battery_history(parse_telemetry(messages), HistoryRules(60, 14), ttl_days=90)
    new = decided.where("fate = 'new'").toArrow().to_batches()
    for ref in (with_health, without):
        frame = model_input(new[0], list(ref.inputs))
        assert [c for c in frame.columns if c in HEALTH_HISTORY_COLUMNS] == list(ref.inputs)

    # Both models in one pass (champion and shadow): each forecast is what the model itself
    # predicts for the window the training code builds.
    shadow = replace(without, role="shadow")
    target = RegistryTarget(cfg.mlflow.tracking_uri, cfg.mlflow.registry_uri)
    scored = score_readings(decided, [with_health, shadow], target)
    scored = scored.where("kind = 'forecast' AND date >= '2024-03-20'").toPandas()
    targets = readings[readings["date"] >= "2024-03-20"]
    assert len(scored) == 2 * len(targets) > 0
    assert set(scored["model_role"]) == {"champion", "shadow"}
    windows = build_history_windows(readings, 60, targets)
    for ref in (with_health, shadow):
        model = load_forecaster(ref.uri)
        expected = np.asarray(model.predict(windows[[*MODEL_INPUT_COLUMNS, *ref.inputs]]))
        ours = scored[scored["model_role"] == ref.role].sort_values(["battery_id", "date"])
        assert (ours["model_version"] == ref.version).all()
        assert ours["battery_id"].tolist() == windows["battery_id"].tolist()
        np.testing.assert_allclose(np.stack(ours["forecast"].to_numpy()), expected, rtol=1e-6)
        assert (np.stack(ours["forecast"].to_numpy()) >= 0).all()
