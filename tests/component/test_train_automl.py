"""The AutoML sweep end to end into a temporary MLflow store: runs, artifacts, registry, CLI."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from apps.cli import train_app
from apps.training_data import simulated_readings
from core.config import PitstopConfig
from models.forecasting.distribution import OUTPUT_COLUMNS, ForecastDistribution
from models.forecasting.features import MODEL_INPUT_COLUMNS
from models.forecasting.loader import load_forecaster
from models.forecasting.pyfunc import forecast_input_example
from models.registry import resolve_alias
from models.training.automl import AutomlResult, AutomlSettings, train_automl
from tests.conftest import make_test_config

pytestmark = pytest.mark.component

LAB_CSV = Path(__file__).parents[1] / "fixtures" / "lab" / "daily-battery-time-series-v2.csv"
CHEAP = AutomlSettings(
    candidates=("naive", "seasonal_naive"), metric_threshold=None, time_budget_s=120.0
)


@pytest.fixture(scope="module")
def cfg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PitstopConfig]:
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    yield make_test_config(tmp_path_factory.mktemp("automl"))
    mlflow.set_tracking_uri(previous[0])
    mlflow.set_registry_uri(previous[1])


@pytest.fixture(scope="module")
def readings() -> pd.DataFrame:
    return simulated_readings(batteries=10, days=150, seed=5)


@pytest.fixture(scope="module")
def first(cfg: PitstopConfig, readings: pd.DataFrame) -> AutomlResult:
    return train_automl(cfg, readings, CHEAP)


def test_sweep_logs_parent_children_and_artifacts(cfg: PitstopConfig, first: AutomlResult) -> None:
    client = MlflowClient()
    assert first.best == "seasonal_naive" and first.stopped_reason == "all candidates ran"
    assert first.leaderboard["candidate"].tolist() == ["seasonal_naive", "naive"]
    parent = client.get_run(first.run_id)
    assert parent.data.params["primary_metric"] == "normalized_root_mean_squared_error"
    assert parent.data.params["cv_folds"] == "3" and parent.data.params["horizon_days"] == "30"
    assert parent.data.tags["pitstop.best_candidate"] == "seasonal_naive"
    for key in ("holdout_nrmse", "holdout_mae", "holdout_smape", "holdout_mase", "best_cv_nrmse"):
        assert np.isfinite(parent.data.metrics[key])
    artifacts = {a.path for a in client.list_artifacts(first.run_id)}
    expected = {"leaderboard.csv", "leaderboard.png", "best_predicted_vs_true.png"}
    assert expected | {"best_residuals.png", "model_card.md"} <= artifacts
    assert "pitstop.model_card" not in parent.data.tags  # set only when the card failed
    board = pd.read_csv(
        mlflow.artifacts.download_artifacts(run_id=first.run_id, artifact_path="leaderboard.csv")
    )
    assert board["cv_nrmse"].tolist() == pytest.approx(first.leaderboard["cv_nrmse"].tolist())
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{first.run_id}'"
    )
    assert sorted(r.info.run_name for r in children) == ["naive", "seasonal_naive"]
    for child in children:
        metrics = child.data.metrics
        assert {"cv_nrmse", "cv_mae", "cv_smape", "cv_mase", "fold3_nrmse"} <= set(metrics)
        assert metrics["predict_s_per_1k"] > 0 and "fit_seconds" in metrics
        assert child.data.params["library"] == "statsforecast"
        assert [m.step for m in client.get_metric_history(child.info.run_id, "fold_nrmse")] == [
            1,
            2,
            3,
        ]


def test_best_is_registered_with_the_contract_and_promoted(
    cfg: PitstopConfig, first: AutomlResult
) -> None:
    name = cfg.mlflow.models.automl
    assert (first.model_name, first.version, first.promoted) == (name, "1", True)
    assert resolve_alias(name, "champion")[0] == "1"
    info = mlflow.models.get_model_info(f"models:/{name}/1")
    assert info.signature.inputs.input_names() == list(MODEL_INPUT_COLUMNS)
    assert info.signature.outputs.input_names() == list(OUTPUT_COLUMNS)
    model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    assert model.input_example is not None
    forecast = ForecastDistribution.from_output(model.predict(forecast_input_example())).point
    assert forecast.shape == (2, 30) and np.isfinite(forecast).all()
    forecaster = load_forecaster(f"models:/{name}@champion", torch_threads=None)
    assert np.allclose(forecaster.predict(forecast_input_example()), forecast)


def test_challenger_promoted_only_if_better_or_forced(
    cfg: PitstopConfig, readings: pd.DataFrame, first: AutomlResult
) -> None:
    name = cfg.mlflow.models.automl
    # The same winner again: equal, not better, so the champion stays.
    same = train_automl(cfg, readings, CHEAP)
    assert same.version == "2" and same.champion_version == "1" and not same.promoted
    assert same.champion_metrics["holdout_nrmse"] == pytest.approx(first.metrics["holdout_nrmse"])
    assert resolve_alias(name, "champion")[0] == "1"
    worse_settings = AutomlSettings(candidates=("naive",), metric_threshold=None, force=True)
    forced = train_automl(cfg, readings, worse_settings)
    assert forced.metrics["holdout_nrmse"] > first.metrics["holdout_nrmse"]
    assert forced.promoted and resolve_alias(name, "champion")[0] == "3"
    tags = MlflowClient().get_run(forced.run_id).data.tags
    assert tags["pitstop.promotion_reason"] == "forced" and tags["pitstop.forced"] == "true"


def test_cli_sweeps_the_lab_csv_and_prints_the_leaderboard(
    cfg: PitstopConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PITSTOP__MLFLOW__TRACKING_URI", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("PITSTOP__MLFLOW__ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    args = ["automl", "--data", str(LAB_CSV), "--candidates", "naive,seasonal_naive"]
    result = CliRunner().invoke(train_app, [*args, "--time-budget", "2m"])
    assert result.exit_code == 0, result.output
    assert "AutoML leaderboard" in result.output and "seasonal_naive*" in result.output
    assert "version 1" in result.output and "Promoted" in result.output
    # The baselines meet the default threshold: both ran, and the sweep stopped there.
    assert "Stopped: all candidates ran" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--candidates", "naive,prophet"], "Unknown candidate(s) prophet"),
        (["--time-budget", "soon"], "is not a duration"),
        (["--horizon", "200"], "lower --cv or --horizon"),
    ],
)
def test_cli_errors_are_one_sentence(
    args: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PITSTOP__MLFLOW__TRACKING_URI", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("PITSTOP__MLFLOW__ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    result = CliRunner().invoke(train_app, ["automl", "--data", str(LAB_CSV), *args])
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output


def test_train_rnn_logs_the_sweeps_cv_metrics_when_asked(
    cfg: PitstopConfig, readings: pd.DataFrame
) -> None:
    from models.training.rnn import train_rnn

    fast = {"epochs": 1, "max_windows": 200, "time_budget_s": 10.0}
    result = train_rnn(cfg, readings, cv_folds=2, **fast)
    logged = MlflowClient().get_run(result.run_id).data.metrics
    for key in ("cv_nrmse", "cv_mae", "cv_smape", "cv_mase"):
        assert np.isfinite(result.metrics[key]) and logged[key] == result.metrics[key]


def test_candidates_are_ranked_on_alerts_with_the_rule_among_them(cfg: PitstopConfig) -> None:
    """On a fleet whose folds hold failures every candidate's alerts are judged on the same
    folds; the registered best carries its calibrated threshold."""
    other = cfg.model_copy(
        update={
            "mlflow": cfg.mlflow.model_copy(
                update={"models": cfg.mlflow.models.model_copy(update={"automl": "alerts-automl"})}
            )
        }
    )
    fleet = simulated_readings(batteries=60, days=240, seed=6)
    settings = AutomlSettings(
        candidates=("seasonal_naive", "rule"), metric_threshold=None, time_budget_s=300.0
    )
    result = train_automl(other, fleet, settings)
    board = result.leaderboard.set_index("candidate")
    assert set(board.index) == {"seasonal_naive", "rule"}
    for column in ("alert_recall", "alert_precision", "alert_lead_days", "risk_ece"):
        assert board[column].notna().all(), column
    assert result.best == result.leaderboard["candidate"].iloc[0]
    assert result.alert_threshold is not None
    info = mlflow.models.get_model_info(f"models:/alerts-automl/{result.version}")
    assert info.metadata["pitstop"]["alert_threshold"] == pytest.approx(result.alert_threshold)
    card = MlflowClient().get_model_version("alerts-automl", result.version).description
    assert "cycle rule (N=" in card
