"""Model lifecycle against a real (temporary) MLflow SQLite store: register, promote, roll back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from apps.cli import models_app
from core.config import PitstopConfig
from models.forecasting.lstm import CycleLstm
from models.forecasting.lstm_windows import LstmSpec
from models.forecasting.pyfunc import forecast_input_example, load_forecaster, log_lstm_model
from models.registry import (
    PREVIOUS_TAG,
    RegistryError,
    configure_mlflow,
    list_models,
    promote_if_better,
    register_version,
    resolve_alias,
    rollback,
)
from tests.conftest import make_test_config

pytestmark = pytest.mark.component

NAME = "registry-test-rnn"
SPEC = LstmSpec(hidden_size=4, num_layers=1)


@pytest.fixture(scope="module")
def cfg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PitstopConfig]:
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    config = make_test_config(tmp_path_factory.mktemp("registry"))
    configure_mlflow(config)
    yield config
    mlflow.set_tracking_uri(previous[0])
    mlflow.set_registry_uri(previous[1])


def _log_version(bias: float, nrmse: float, tmp_path: Path) -> str:
    """Log and register a tiny untrained LSTM whose forecast is the baseline + `bias`."""
    torch.manual_seed(0)
    model = CycleLstm(SPEC)
    with torch.no_grad():
        model.head.bias.fill_(bias)
    with mlflow.start_run() as run:
        log_lstm_model(model, SPEC, tmp_path / f"v{bias}")
        mlflow.log_metric("holdout_nrmse", nrmse)
    return register_version(run.info.run_id, "model", NAME, tags={"purpose": "test"})


def test_configure_mlflow_creates_store_and_experiment(cfg: PitstopConfig) -> None:
    db = Path(cfg.mlflow.tracking_uri[len("sqlite:///") :])
    assert db.is_file()
    experiment = MlflowClient().get_experiment_by_name(cfg.mlflow.experiment)
    assert experiment is not None
    assert experiment.artifact_location.startswith(Path(cfg.mlflow.artifact_root).as_uri())
    assert configure_mlflow(cfg) == experiment.experiment_id  # idempotent


def test_unknown_model_and_missing_alias_are_one_sentence(
    cfg: PitstopConfig, tmp_path: Path
) -> None:
    with pytest.raises(RegistryError, match="No model named nope-rnn is registered"):
        resolve_alias("nope-rnn", "champion")
    MlflowClient().create_registered_model("empty-rnn")
    with pytest.raises(RegistryError) as caught:
        resolve_alias("empty-rnn", "champion")
    assert str(caught.value) == (
        "No version of model empty-rnn has alias champion; run `pitstop train rnn` first."
    )


def test_promote_only_when_better_then_force_then_roll_back(
    cfg: PitstopConfig, tmp_path: Path
) -> None:
    client = MlflowClient()
    v1 = _log_version(0.0, nrmse=0.40, tmp_path=tmp_path)
    assert promote_if_better(NAME, v1, "holdout_nrmse", 0.40, None)
    assert resolve_alias(NAME, "champion") == (v1, f"models:/{NAME}/{v1}")

    v2 = _log_version(0.5, nrmse=0.50, tmp_path=tmp_path)
    assert not promote_if_better(NAME, v2, "holdout_nrmse", 0.50, 0.40)
    assert resolve_alias(NAME, "champion")[0] == v1
    run = client.get_run(client.get_model_version(NAME, v2).run_id)
    assert run.data.tags["pitstop.promoted"] == "false"
    assert "0.5 vs champion v1 0.4" in run.data.tags["pitstop.comparison"]
    assert run.data.metrics["champion_holdout_nrmse"] == 0.40

    v3 = _log_version(0.1, nrmse=0.30, tmp_path=tmp_path)
    assert promote_if_better(NAME, v3, "holdout_nrmse", 0.30, 0.40)
    assert resolve_alias(NAME, "champion")[0] == v3
    assert client.get_model_version(NAME, v3).tags[PREVIOUS_TAG] == v1

    v4 = _log_version(0.9, nrmse=0.90, tmp_path=tmp_path)
    assert promote_if_better(NAME, v4, "holdout_nrmse", 0.90, 0.30, force=True)
    assert client.get_model_version(NAME, v4).tags["pitstop.promotion"].startswith("forced")

    # Higher-is-better metrics compare the other way round.
    assert not promote_if_better(NAME, v2, "r2", 0.1, 0.2, lower_is_better=False)

    table = list_models()
    mine = table[table["name"] == NAME].set_index("version")
    assert list(mine.index) == [1, 2, 3, 4]
    assert mine.loc[4, "aliases"] == "champion" and mine.loc[1, "aliases"] == ""
    assert mine.loc[3, "holdout_nrmse"] == pytest.approx(0.30)
    assert mine.loc[4, "previous_champion"] == v3

    assert rollback(NAME) == v3
    assert rollback(NAME) == v1
    assert resolve_alias(NAME, "champion")[0] == v1
    with pytest.raises(RegistryError, match="no earlier champion"):
        rollback(NAME)

    # The loaded champion is the rolled-back version, and says so.
    forecaster = load_forecaster(f"models:/{NAME}@champion", torch_threads=None)
    assert (forecaster.name, forecaster.version) == (NAME, v1)
    forecast = forecaster.predict(forecast_input_example())
    assert forecast.shape == (2, 30) and np.all(forecast > 0)


def test_models_cli_lists_promotes_and_fails_in_one_sentence(
    cfg: PitstopConfig, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PITSTOP__MLFLOW__TRACKING_URI", cfg.mlflow.tracking_uri)
    monkeypatch.setenv("PITSTOP__MLFLOW__ARTIFACT_ROOT", str(cfg.mlflow.artifact_root))
    runner = CliRunner()
    first = _log_version(0.2, nrmse=0.2, tmp_path=tmp_path)
    second = _log_version(0.3, nrmse=0.3, tmp_path=tmp_path)
    for version in (first, second):
        promoted = runner.invoke(models_app, ["promote", NAME, version])
        assert promoted.exit_code == 0, promoted.output
        assert f"version {version} is now champion" in promoted.output

    listed = runner.invoke(models_app, ["list"])
    assert listed.exit_code == 0 and NAME in listed.output and "champion" in listed.output

    rolled = runner.invoke(models_app, ["rollback", NAME])
    assert rolled.exit_code == 0 and f"rolled back to version {first}" in rolled.output

    missing = runner.invoke(models_app, ["rollback", "no-such-model"])
    assert missing.exit_code == 1
    assert "No model named no-such-model is registered" in missing.output
    assert "Traceback" not in missing.output

    bad_version = runner.invoke(models_app, ["promote", NAME, "99"])
    assert bad_version.exit_code == 1 and "has no version 99" in bad_version.output
