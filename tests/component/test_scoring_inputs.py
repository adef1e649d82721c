"""The stream builds and sends only the health arrays the scoring models read."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from models.data import simulated_readings
from models.features import HEALTH_HISTORY_COLUMNS, MODEL_INPUT_COLUMNS, build_history_windows
from models.pyfunc import load_forecaster
from streaming import transforms
from streaming.scoring import ModelTracker, PinnedModel, RegistryTarget, score_history

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
    history = spark.createDataFrame(readings)
    targets = history.where("date >= '2024-03-20'")
    target = RegistryTarget(cfg.mlflow.tracking_uri, cfg.mlflow.registry_uri)
    for ref in (with_health, without):
        windows = transforms.build_windows(history, targets, 60, health=list(ref.inputs))
        assert [c for c in windows.columns if c in HEALTH_HISTORY_COLUMNS] == list(ref.inputs)

    # Both models in one pass (champion and shadow): each forecast is what the model itself
    # predicts for the window the training code builds.
    shadow = replace(without, role="shadow")
    scored = score_history(history, targets, 60, [with_health, shadow], target).toPandas()
    assert len(scored) == 2 * targets.count() > 0
    assert set(scored["model_role"]) == {"champion", "shadow"}
    windows = build_history_windows(readings, 60, targets.toPandas())
    for ref in (with_health, shadow):
        model = load_forecaster(ref.uri)
        expected = np.asarray(model.predict(windows[[*MODEL_INPUT_COLUMNS, *ref.inputs]]))
        ours = scored[scored["model_role"] == ref.role].sort_values(["battery_id", "date"])
        assert (ours["model_version"] == ref.version).all()
        assert ours["battery_id"].tolist() == windows["battery_id"].tolist()
        np.testing.assert_allclose(np.stack(ours["forecast"].to_numpy()), expected, rtol=1e-6)
        assert (np.stack(ours["forecast"].to_numpy()) >= 0).all()
