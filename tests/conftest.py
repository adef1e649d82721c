"""Shared fixtures: one test configuration (temporary lake and MLflow store) and one Spark."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import PitstopConfig, StorageConfig, load_config


def make_test_config(root: Path, **stream_updates) -> PitstopConfig:
    """The local configuration with its lake, checkpoints and MLflow store under `root`.

    `home` stays the project's own .pitstop so the resolved jars are reused.
    """
    cfg = load_config("local")
    return cfg.model_copy(
        update={
            "storage": StorageConfig(
                lake=str(root / "lake"), checkpoints=str(root / "checkpoints")
            ),
            "mlflow": cfg.mlflow.model_copy(
                update={
                    "tracking_uri": f"sqlite:///{root / 'mlflow.db'}",
                    "artifact_root": str(root / "mlflow-artifacts"),
                }
            ),
            "stream": cfg.stream.model_copy(update=stream_updates),
        }
    )


@pytest.fixture(scope="session")
def test_config(tmp_path_factory: pytest.TempPathFactory) -> PitstopConfig:
    """A configuration whose outputs all live in one temporary folder for the session."""
    return make_test_config(tmp_path_factory.mktemp("pitstop"))


@pytest.fixture(scope="session")
def spark(test_config: PitstopConfig):
    """The one SparkSession of the test run: local[2], 2 shuffle partitions, UI off, Delta on."""
    from streaming.session import build_spark_session

    session = build_spark_session(test_config, app_name="pitstop-tests")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def trained_config(tmp_path_factory: pytest.TempPathFactory) -> PitstopConfig:
    """A configuration whose MLflow store holds a small trained champion LSTM.

    Trained once per session on a simulated fleet (a few epochs: the tests check the
    plumbing around the model, the benchmarks check its quality).
    """
    from apps.training_data import simulated_readings
    from models.training.rnn import train_rnn

    cfg = make_test_config(tmp_path_factory.mktemp("registry"))
    readings = simulated_readings(batteries=40, days=200, seed=3)
    train_rnn(cfg, readings, epochs=2, max_windows=2000, time_budget_s=30, seed=0)
    return cfg


@pytest.fixture(scope="session")
def console_lake(spark, trained_config: PitstopConfig, tmp_path_factory) -> PitstopConfig:
    """A lake for the console's tests, written by the stream's own code: the small fixture
    fleet replayed through the battery flow with `trained_config`'s champion (and a
    quarantined `<script>` payload), the accuracy monitor run over it, compliance alerts
    appended with Spark and a few more open alerts through the stream's alert MERGE."""
    from streaming.replay import run_replay
    from tests.console_fixtures import (
        SCRIPT_PAYLOAD,
        add_compliance_and_accuracy,
        add_open_alerts,
    )

    fixtures = Path(__file__).resolve().parent / "fixtures"
    folder = tmp_path_factory.mktemp("console-lake")
    recording = folder / "battery-telemetry.jsonl"
    lines = (fixtures / "small-fleet" / "battery-telemetry.jsonl").read_text(encoding="utf-8")
    recording.write_text(lines + SCRIPT_PAYLOAD + "\n" + '{"schema_version": 1}\n', "utf-8")
    # Scored by the registry's champion, so forecasts, accuracy and health name its version.
    replayed = run_replay(spark, trained_config, recording, folder / "out")
    add_compliance_and_accuracy(spark, replayed)
    add_open_alerts(replayed, ["B000005", "B000007", "B000010", "B000012"])
    return replayed
