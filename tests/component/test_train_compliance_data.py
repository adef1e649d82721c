"""`pitstop train compliance` on the user's labelled notes, into a temporary MLflow store:
bad rows set aside, every candidate logged, the model card with its failure cases, and no
silent training on simulated notes when the lake is remote."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
import pytest
import typer
from mlflow import MlflowClient
from typer.testing import CliRunner

from apps.commands.train import train_compliance_command
from simulator.notes import notes_dataset
from tests.conftest import make_test_config

pytestmark = pytest.mark.component

HANDWRITTEN = Path(__file__).resolve().parents[1] / "fixtures" / "notes" / "handwritten.csv"


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command()(train_compliance_command)
    return app


@pytest.fixture
def cfg(tmp_path, monkeypatch):
    cfg = make_test_config(tmp_path)
    monkeypatch.setenv("PITSTOP__MLFLOW__TRACKING_URI", cfg.mlflow.tracking_uri)
    monkeypatch.setenv("PITSTOP__MLFLOW__ARTIFACT_ROOT", str(cfg.mlflow.artifact_root))
    monkeypatch.setenv("PITSTOP__STORAGE__LAKE", cfg.storage.lake)
    return cfg


def test_training_on_a_labelled_file(cfg, tmp_path) -> None:
    notes = notes_dataset(600, seed=5, shapes="all", messy=0.6)
    rows = notes[["text"]].assign(label=notes["non_compliant"].map({True: "non-compliant"}))
    rows["label"] = rows["label"].fillna("compliant")
    bad = pd.DataFrame({"text": ["", "steel pump 2004 good"], "label": ["compliant", "maybe"]})
    data = tmp_path / "labelled.csv"
    pd.concat([rows, bad], ignore_index=True).to_csv(data, index=False)

    result = CliRunner().invoke(
        _app(), ["--data", str(data), "--eval-data", str(HANDWRITTEN), "--epochs", "2"]
    )
    out = " ".join(result.output.split())
    assert result.exit_code == 0, out
    assert "Set aside 2 row(s)" in out and "row 602: no 'text'" in out
    assert "'label' is 'maybe'" in out
    assert "handwritten (evaluation only): accuracy" in out

    name = cfg.mlflow.models.compliance
    client = MlflowClient()
    version = client.get_model_version_by_alias(name, "champion")
    run = client.get_run(version.run_id)
    metrics, params = run.data.metrics, run.data.params
    for candidate in ("tfidf_year", "tfidf", "network"):
        for key in ("val_loss", "eval_accuracy", "eval_recall_compliant", "handwritten_accuracy"):
            assert f"{candidate}.{key}" in metrics, (candidate, key)
    chosen = run.data.tags["pitstop.compliance_candidate"]
    assert metrics["eval_accuracy"] == metrics[f"{chosen}.eval_accuracy"]
    assert metrics["handwritten_accuracy"] == metrics[f"{chosen}.handwritten_accuracy"]
    assert params["data_source"] == str(data) and params["handwritten_notes"] == "200"
    assert version.tags["model_kind"] == f"compliance-{chosen}"

    card = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/model_card.md")
    for section in ("## How good it is", "## Against the other candidates", "## Known failure"):
        assert section in card
    assert "handwritten (evaluation only)" in card and f"**{chosen}** (chosen)" in card
    assert version.description.startswith(f"# Model card: {name}, version {version.version}")

    model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    probs = model.predict(pd.DataFrame({"text": ["cast iron pump mfd 1980", "steel hub 2015 ok"]}))
    assert probs.shape == (2,) and probs[0] > 0.5 > probs[1]


def test_a_remote_lake_without_data_is_refused(cfg, monkeypatch) -> None:
    monkeypatch.setenv("PITSTOP__STORAGE__LAKE", "abfss://lake@account.dfs.core.windows.net/x")
    result = CliRunner().invoke(_app(), [])
    out = " ".join(result.output.split())
    assert result.exit_code == 1
    assert "The lake is remote" in out and "--data" in out and "--simulated" in out
    assert "account" not in out  # the location is not echoed
    mlflow.set_tracking_uri(cfg.mlflow.tracking_uri)
    assert mlflow.search_runs(search_all_experiments=True).empty


def test_an_unusable_file_is_one_sentence(cfg, tmp_path) -> None:
    result = CliRunner().invoke(_app(), ["--data", str(tmp_path / "missing.csv")])
    assert result.exit_code == 1
    assert "missing.csv does not exist" in " ".join(result.output.split())
    few = tmp_path / "few.jsonl"
    few.write_text('{"text": "iron pump 1980", "non_compliant": 1}\n', encoding="utf-8")
    result = CliRunner().invoke(_app(), ["--data", str(few)])
    assert result.exit_code == 1 and "too few labelled notes" in " ".join(result.output.split())
