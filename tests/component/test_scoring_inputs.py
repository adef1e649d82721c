"""The stream builds and sends only the health arrays the scoring models read."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from models.data import simulated_readings
from models.features import HEALTH_HISTORY_COLUMNS
from streaming import transforms
from streaming.scoring import ModelTracker, PinnedModel, RegistryTarget, score_windows

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
        scored = score_windows(windows, ref, target).collect()
        assert len(scored) == targets.count() > 0
        assert all(len(r.forecast) == 30 and min(r.forecast) >= 0 for r in scored)
        assert {r.model_version for r in scored} == {ref.version}
