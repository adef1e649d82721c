"""Permutation importance of forecast inputs, and what a training run logs to explain a version."""

from __future__ import annotations

from collections.abc import Iterator

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from core.config import PitstopConfig
from models.registry import configure_mlflow
from models.reporting.explain import (
    IMPORTANCE_FILE,
    IMPORTANCE_JSON,
    ExplanationError,
    feature_groups,
    log_explanation,
    permutation_importance,
)
from tests.conftest import make_test_config

pytestmark = pytest.mark.component

HORIZON = 30


def contract_rows(n: int = 80, days: int = 60, seed: int = 1) -> pd.DataFrame:
    """Batteries of different levels with a weekly rhythm, plus the static columns."""
    rng = np.random.default_rng(seed)
    level = rng.uniform(0.5, 3.0, n)
    rhythm = np.array([1.0, 1.1, 1.0, 1.2, 1.3, 0.5, 0.4])
    histories = [lv * np.resize(rhythm, days) + rng.normal(0, 0.05, days) for lv in level]
    return pd.DataFrame(
        {
            "daily_cycles": histories,
            "lifetime_cycles_used": rng.uniform(10, 400, n),
            "battery_rated_cycles": np.full(n, 500.0),
            "battery_age_days": rng.uniform(10, 700, n),
        }
    )


def last_week_repeated(frame: pd.DataFrame) -> np.ndarray:
    """A forecaster that only looks at the last 7 days."""
    return np.stack([np.resize(np.asarray(h)[-7:], HORIZON) for h in frame["daily_cycles"]])


def truth(frame: pd.DataFrame) -> np.ndarray:
    return last_week_repeated(frame) * 1.02 + 0.01


def test_a_model_of_the_last_week_depends_on_the_last_week_only() -> None:
    frame = contract_rows()
    importance = permutation_importance(last_week_repeated, frame, truth(frame), repeats=2)
    by_key = importance.set_index("key")["importance_pct"]
    assert importance["key"].iloc[0] == "recent_days"
    assert by_key["recent_days"] > 100
    assert by_key["weekday"] > 20  # the weekly rhythm moved under it
    for ignored in ("weeks_2_to_4", "older_days", "battery_statics"):
        assert abs(by_key[ignored]) < 1e-9
    assert importance.attrs["base_rmse"] > 0


def test_a_model_of_the_battery_statics_depends_on_them() -> None:
    frame = contract_rows()

    def by_lifetime(rows: pd.DataFrame) -> np.ndarray:
        return np.repeat(rows["lifetime_cycles_used"].to_numpy()[:, None] / 100, HORIZON, axis=1)

    actual = by_lifetime(frame) + 0.1
    by_key = permutation_importance(by_lifetime, frame, actual).set_index("key")["importance_pct"]
    assert by_key["battery_statics"] > 100
    assert abs(by_key["recent_days"]) < 1e-9


def test_groups_follow_what_the_rows_carry() -> None:
    short = contract_rows(days=20).drop(columns=["battery_age_days"])
    assert [g.key for g in feature_groups(short)] == [
        "recent_days",
        "weeks_2_to_4",
        "weekday",
        "battery_statics",
    ]
    with_health = contract_rows().assign(resting_voltage=lambda f: list(np.ones((len(f), 60))))
    keys = [g.key for g in feature_groups(with_health)]
    assert keys[-1] == "health_signals" and "older_days" in keys


def test_health_history_arrays_are_one_group_kept_aligned() -> None:
    frame = contract_rows(n=40)
    frame["daily_cycles"] = [h[-(10 + i % 30) :] for i, h in enumerate(frame["daily_cycles"])]
    level = np.random.default_rng(2).uniform(11.0, 13.0, len(frame))
    frame["resting_voltage_history"] = [
        np.full(len(h), v) for h, v in zip(frame["daily_cycles"], level, strict=True)
    ]
    frame["ambient_temp_c_history"] = [np.zeros(len(h)) for h in frame["daily_cycles"]]
    group = feature_groups(frame)[-1]
    assert group.key == "health_signals"
    assert group.label == "health signals (resting_voltage, ambient_temp_c)"
    scrambled = group.scramble(frame, np.random.default_rng(0))
    for column in ("resting_voltage_history", "ambient_temp_c_history"):
        assert [len(a) for a in scrambled[column]] == [len(h) for h in frame["daily_cycles"]]

    def by_voltage(rows: pd.DataFrame) -> np.ndarray:
        voltage = np.array([np.nanmean(a) for a in rows["resting_voltage_history"]])
        return np.repeat(voltage[:, None], HORIZON, axis=1)

    by_key = permutation_importance(by_voltage, frame, by_voltage(frame) + 0.1)
    by_key = by_key.set_index("key")["importance_pct"]
    assert by_key["health_signals"] > 100 and abs(by_key["recent_days"]) < 1e-9


def test_explaining_needs_rows_to_shuffle_and_matching_shapes() -> None:
    frame = contract_rows(n=1)
    with pytest.raises(ExplanationError, match="at least two rows"):
        permutation_importance(last_week_repeated, frame, truth(frame))
    frame = contract_rows(n=5)
    with pytest.raises(ExplanationError, match="returned"):
        permutation_importance(last_week_repeated, frame, truth(frame)[:, :10])


@pytest.fixture()
def tracked(tmp_path) -> Iterator[PitstopConfig]:
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    cfg = make_test_config(tmp_path)
    configure_mlflow(cfg)
    yield cfg
    mlflow.set_tracking_uri(previous[0])
    mlflow.set_registry_uri(previous[1])


def test_log_explanation_logs_chart_numbers_and_metrics(tracked: PitstopConfig) -> None:
    frame = contract_rows(n=120)
    with mlflow.start_run() as run:
        result = log_explanation(last_week_repeated, frame, truth(frame), max_rows=50)
    client = MlflowClient()
    paths = {a.path for a in client.list_artifacts(run.info.run_id, "explanation")}
    assert {IMPORTANCE_FILE, IMPORTANCE_JSON} <= paths
    logged = client.get_run(run.info.run_id).data.metrics
    assert logged["importance_pct_recent_days"] == pytest.approx(
        result["last 7 days of use (lags 1-7)"]
    )
    numbers = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/{IMPORTANCE_JSON}")
    assert numbers["rows"] == 50


def test_log_explanation_without_a_run_is_refused(tracked: PitstopConfig) -> None:
    frame = contract_rows(n=5)
    with pytest.raises(ExplanationError, match="active MLflow run"):
        log_explanation(last_week_repeated, frame, truth(frame))


def test_trained_versions_carry_a_model_card_and_an_explanation(
    trained_config: PitstopConfig,
) -> None:
    configure_mlflow(trained_config)
    client = MlflowClient()
    name = trained_config.mlflow.models.rnn
    version = client.get_model_version_by_alias(name, trained_config.mlflow.alias)
    assert version.description.startswith(f"# Model card: {name}, version {version.version}")
    assert "seasonal naive" in version.description
    paths = {a.path for a in client.list_artifacts(version.run_id)}
    assert "model_card.md" in paths
    explained = {a.path for a in client.list_artifacts(version.run_id, "explanation")}
    assert IMPORTANCE_FILE in explained
    metrics = client.get_run(version.run_id).data.metrics
    assert "seasonal_naive_nrmse" in metrics and "importance_pct_recent_days" in metrics
