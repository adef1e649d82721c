"""Whichever family wins drives the stream: each one, calibrated and registered, replays the
fixture fleet through the battery flow and writes forecasts with quantiles and a risk, and
alerts at its own threshold."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from core.lake import read_table
from models.forecasting.calibration import fit_calibrated
from models.forecasting.candidates import log_forecaster, select_candidates
from models.registry import configure_mlflow, register_version
from streaming.replay import run_replay
from tests.conftest import make_test_config

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "small-fleet"
FAMILIES = ("lstm", "arima", "lightgbm", "rule")
# Tiny settings: these tests check the plumbing, the benchmarks check quality.
FAST_LSTM = {"epochs": 2, "max_windows": 2000, "time_budget_s": 30.0}


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory):
    """A configuration whose registry holds one calibrated version of each family."""
    from apps.training_data import simulated_readings

    cfg = make_test_config(tmp_path_factory.mktemp("families"))
    configure_mlflow(cfg)
    readings = simulated_readings(batteries=60, days=300, seed=3)
    thresholds = {}
    for family in FAMILIES:
        (candidate,) = select_candidates([family], **FAST_LSTM)
        model, calibration = fit_calibrated(candidate, readings, target_precision=0.9)
        with mlflow.start_run(run_name=f"test-{family}") as run:
            log_forecaster(model, "model")
        register_version(run.info.run_id, "model", f"battery-{family}")
        thresholds[family] = calibration.threshold
    return cfg, thresholds


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture fleet's first 8 batteries: enough to alert, quick to replay four times."""
    frame = pd.read_csv(FIXTURES / "battery-telemetry.csv")
    keep = sorted(frame["Battery_ID"].unique())[:8]
    path = tmp_path_factory.mktemp("recording") / "fleet.csv"
    frame[frame["Battery_ID"].isin(keep)].to_csv(path, index=False)
    return path


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_scores_and_alerts_through_the_stream(
    spark, tmp_path, registered, recording, family
):
    cfg, thresholds = registered
    uri = f"models:/battery-{family}/1"
    replayed = run_replay(spark, cfg, recording, tmp_path / "out", uri)

    forecasts = read_table(replayed, "battery_forecasts")
    readings = pd.read_csv(recording)
    assert len(forecasts) == len(readings)
    assert (forecasts["model_name"] == f"battery-{family}").all()
    for column in ("forecast", "daily_q10", "daily_q90", "cum_q10", "cum_q50", "cum_q90"):
        assert forecasts[column].map(len).eq(30).all(), column
    low, mid, high = (np.stack(forecasts[c].to_numpy()) for c in ("cum_q10", "cum_q50", "cum_q90"))
    assert (low <= mid + 1e-9).all() and (mid <= high + 1e-9).all()
    assert (np.diff(mid, axis=1) >= -1e-9).all()  # a running total never falls
    risk = forecasts["failure_risk"]
    assert risk.notna().all() and risk.between(0.0, 1.0).all()

    alerts = read_table(replayed, "battery_alerts")
    threshold = thresholds[family]
    assert (alerts["failure_risk"] >= threshold - 1e-9).all()
    # Each alert opened on the first reading whose risk reached this version's threshold.
    for alert in alerts.itertuples():
        mine = forecasts[forecasts["battery_id"] == alert.battery_id].sort_values("date")
        first = mine.loc[mine["failure_risk"] >= threshold, "date"].min()
        assert str(first) == str(alert.alert_date)
    assert risk.max() >= threshold or alerts.empty
