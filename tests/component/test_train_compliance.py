"""Compliance training into a temporary MLflow store: run contents, registry, promotion rule."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import pytest
import typer
from mlflow import MlflowClient
from typer.testing import CliRunner

from apps.commands.classify import classify_command
from apps.training_data import train_compliance_on_simulated_notes
from models.training.compliance import ComplianceTrainingError
from tests.conftest import make_test_config

pytestmark = pytest.mark.component

TINY = {"train_size": 200, "val_size": 100, "holdout_size": 400, "epochs": 1}
SMALL = {"train_size": 2_500, "val_size": 300, "holdout_size": 400, "epochs": 3}


def champion_of(name: str) -> str:
    return str(MlflowClient().get_model_version_by_alias(name, "champion").version)


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    return make_test_config(tmp_path_factory.mktemp("compliance"))


@pytest.fixture(scope="module")
def first_run(cfg):
    """A deliberately weak first model: it becomes champion only because there is none."""
    return train_compliance_on_simulated_notes(cfg, seed=0, **TINY)


def test_first_version_becomes_champion_and_run_has_everything(cfg, first_run) -> None:
    assert first_run.version == "1" and first_run.promoted and first_run.champion_version is None
    client = MlflowClient()
    run = client.get_run(first_run.run_id)
    metrics = run.data.metrics
    for key in (
        "lr",
        "eval_loss",
        "eval_accuracy",
        "train_loss",
        "train_accuracy",
        "val_loss",
        "val_accuracy",
        "eval_precision_compliant",
        "eval_recall_compliant",
        "eval_precision_non_compliant",
        "eval_recall_non_compliant",
    ):
        assert key in metrics, key
    artifacts = {a.path for a in client.list_artifacts(first_run.run_id)}
    assert {"training_results.png", "training_history.csv", "training_history.json"} <= artifacts
    history = json.loads(
        open(client.download_artifacts(first_run.run_id, "training_history.json")).read()
    )
    assert [h["epoch"] for h in history] == [1]
    version = client.get_model_version_by_alias(cfg.mlflow.models.compliance, cfg.mlflow.alias)
    assert str(version.version) == "1" and version.run_id == first_run.run_id
    info = mlflow.models.get_model_info(f"models:/{cfg.mlflow.models.compliance}/1")
    assert info.signature.inputs.input_names() == ["text"]
    assert info.saved_input_example_info is not None


def test_pyfunc_scores_a_text_column(cfg, first_run) -> None:
    model = mlflow.pyfunc.load_model(f"models:/{cfg.mlflow.models.compliance}@champion")
    out = model.predict(pd.DataFrame({"text": ["steel pump mfd 2004 good", "iron pump 1980"]}))
    assert np.asarray(out).shape == (2,) and ((0 <= out) & (out <= 1)).all()


def test_champion_moves_only_when_better_unless_forced(cfg, first_run) -> None:
    name = cfg.mlflow.models.compliance
    better = train_compliance_on_simulated_notes(cfg, seed=1, **SMALL)
    assert better.promoted and better.champion_version == "1"
    assert better.metrics["eval_loss"] < better.champion_metrics["eval_loss"]
    assert better.metrics["eval_accuracy"] > 0.75

    worse = train_compliance_on_simulated_notes(cfg, seed=0, **TINY)
    assert not worse.promoted and worse.champion_version == better.version
    assert champion_of(name) == better.version
    tags = MlflowClient().get_run(worse.run_id).data.tags
    assert tags["pitstop.promoted"] == "false" and "eval_loss" in tags["pitstop.comparison"]

    forced = train_compliance_on_simulated_notes(cfg, seed=0, force=True, **TINY)
    assert forced.promoted
    assert champion_of(name) == forced.version


def test_classify_command_prints_json_lines(cfg, first_run, tmp_path, monkeypatch) -> None:
    app = typer.Typer()
    app.command()(classify_command)
    monkeypatch.setenv("PITSTOP__MLFLOW__TRACKING_URI", cfg.mlflow.tracking_uri)
    notes = tmp_path / "notes.jsonl"
    notes.write_text(
        json.dumps({"note_id": "a", "text": "iron pump mfd 1980, poor"}) + "\nnot json\n"
    )
    runner = CliRunner()
    single = runner.invoke(app, ["steel caliper, built 2010, good condition"])
    assert single.exit_code == 0, single.output
    verdict = json.loads(single.stdout)
    assert set(verdict) == {"note_id", "non_compliant", "probability"}
    from_file = runner.invoke(app, ["--file", str(notes)])
    assert from_file.exit_code == 1  # one line could not be classified
    lines = [json.loads(x) for x in from_file.stdout.splitlines() if x.startswith("{")]
    assert lines[0]["note_id"] == "a"
    assert lines[1] == {"line": 2, "note_id": None, "error": "not JSON"}
    neither = runner.invoke(app, [])
    assert neither.exit_code != 0 and "either" in str(neither.exception)


def test_bad_settings_are_refused(cfg) -> None:
    with pytest.raises(ComplianceTrainingError, match="at least 1"):
        train_compliance_on_simulated_notes(cfg, epochs=0)
