"""The forecast accuracy monitor on real Spark, Delta and MLflow: the battery flow writes
telemetry and forecasts (champion and a shadow), the monitor pairs them once, restarts and
replays add nothing, and `models compare` moves the alias on live accuracy."""

from __future__ import annotations

import datetime as dt
import json
import shutil

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from core.lake import read_table
from models.registry import configure_mlflow
from models.reporting.live_compare import DECISION_TAG, compare_champion, latest_model_health
from streaming import tables
from streaming.battery.flow import build_job, process_battery_batch
from streaming.battery.readings import battery_history, parse_telemetry
from streaming.monitor.flow import build_monitor_job, process_monitor_batch, start_monitor_query

pytestmark = pytest.mark.component

SHADOW = "battery-cycles-shadow"


def messages(spark, readings: pd.DataFrame, first_offset: int):
    """Kafka-shaped rows of these readings, one JSON message each."""
    rows = []
    for i, reading in enumerate(readings.to_dict("records")):
        reading = {k: (v.isoformat() if isinstance(v, dt.date) else v) for k, v in reading.items()}
        value = json.dumps({"schema_version": 1, **reading}).encode()
        stamp = dt.datetime.now(dt.timezone.utc)
        rows.append((reading["battery_id"].encode(), value, "t", 0, first_offset + i, stamp))
    schema = (
        "key binary, value binary, topic string, partition int, offset long, timestamp timestamp"
    )
    return spark.createDataFrame(rows, schema)


@pytest.fixture(scope="module")
def monitored(spark, trained_config, tmp_path_factory):
    """A lake the battery flow filled in three micro-batches, a reading held back to the last
    (out of order), with the monitor run after each."""
    from apps.training_data import simulated_readings

    root = tmp_path_factory.mktemp("monitor")
    # A copy of the session's registry: this module moves the champion alias.
    store = trained_config.mlflow.tracking_uri.removeprefix("sqlite:///")
    shutil.copyfile(store, root / "mlflow.db")
    mlflow_cfg = trained_config.mlflow.model_copy(
        update={"tracking_uri": f"sqlite:///{root / 'mlflow.db'}"}
    )
    session_config = trained_config
    trained_config = trained_config.model_copy(update={"mlflow": mlflow_cfg})
    configure_mlflow(trained_config)
    client = MlflowClient()
    champion = client.get_model_version_by_alias(trained_config.mlflow.models.rnn, "champion")
    if not client.search_registered_models(f"name='{SHADOW}'"):
        client.create_registered_model(SHADOW)
        copy = client.copy_model_version(f"models:/{champion.name}/{champion.version}", SHADOW)
        client.set_registered_model_alias(SHADOW, "champion", copy.version)
    cfg = trained_config.model_copy(
        update={
            "storage": trained_config.storage.model_copy(
                update={"lake": str(root / "lake"), "checkpoints": str(root / "checkpoints")}
            ),
            "stream": trained_config.stream.model_copy(
                update={"publish_alerts": False, "metrics_port": 0}
            ),
            "forecast": trained_config.forecast.model_copy(update={"shadow_models": [SHADOW]}),
            "monitor": trained_config.monitor.model_copy(update={"wait_seconds": 5}),
        }
    )
    readings = simulated_readings(batteries=6, days=90, seed=11)
    readings["date"] = pd.to_datetime(readings["date"]).dt.date
    start = readings["date"].min()
    day = (pd.to_datetime(readings["date"]) - pd.Timestamp(start)).dt.days
    held = readings.index[(readings["battery_id"] == readings["battery_id"].iloc[0]) & (day == 70)]
    parts = [
        readings[(day < 40)],
        readings[(day >= 40) & (day < 75) & ~readings.index.isin(held)],
        pd.concat([readings.loc[held], readings[day >= 75]]),
    ]
    job = build_job(spark, cfg)
    offset = 0
    for batch_id, part in enumerate(parts):
        decided = battery_history(parse_telemetry(messages(spark, part, offset)), job.rules, 90)
        process_battery_batch(job, decided, batch_id)
        offset += len(part)
        # The monitor restarts from its checkpoint each time, as a scheduled `--once` would.
        query = start_monitor_query(spark, build_monitor_job(spark, cfg), available_now=True)
        query.awaitTermination()
    yield cfg
    configure_mlflow(session_config)  # MLflow's global store back to the session's


def expected_pairs(cfg) -> set[tuple]:
    """Every (model, battery, forecast date, horizon day) whose target day has a reading."""
    telemetry = read_table(cfg, tables.TELEMETRY, columns=["battery_id", "date"])
    stored = {
        (b, pd.Timestamp(d).date())
        for b, d in zip(telemetry.battery_id, telemetry.date, strict=True)
    }
    forecasts = read_table(cfg, tables.FORECASTS)
    pairs = set()
    for row in forecasts.itertuples(index=False):
        origin = pd.Timestamp(row.date).date()
        for h in range(1, len(row.forecast) + 1):
            if (row.battery_id, origin + dt.timedelta(days=h)) in stored:
                pairs.add((row.model_name, row.model_role, row.battery_id, origin, h))
    return pairs


def test_each_forecast_day_with_a_reading_is_paired_once(monitored):
    accuracy = read_table(monitored, tables.FORECAST_ACCURACY)
    keys = list(
        zip(
            accuracy.model_name,
            accuracy.model_role,
            accuracy.battery_id,
            [pd.Timestamp(d).date() for d in accuracy.forecast_date],
            accuracy.horizon_day,
            strict=True,
        )
    )
    assert len(keys) == len(set(keys)), "duplicate accuracy rows"
    assert set(keys) == expected_pairs(monitored)
    assert set(accuracy.model_role) == {"champion", "shadow"}
    assert accuracy.monitor_batch.nunique() == 3  # one monitor batch per stream batch
    np.testing.assert_allclose(accuracy.error, accuracy.forecast - accuracy.actual)
    lead = pd.to_datetime(accuracy.target_date) - pd.to_datetime(accuracy.forecast_date)
    assert (lead.dt.days == accuracy.horizon_day).all()
    assert accuracy.horizon_day.between(1, monitored.forecast.horizon_days).all()


def test_a_replayed_or_restarted_monitor_adds_nothing(spark, monitored):
    before = len(read_table(monitored, tables.FORECAST_ACCURACY))
    job = build_monitor_job(spark, monitored)
    telemetry = spark.read.format("delta").load(job.paths[tables.TELEMETRY])
    job.context.checkpoint = monitored.storage.checkpoint(monitored.monitor.query_name)
    process_monitor_batch(job, telemetry, 2)  # the last batch again: a crash before its commit
    start_monitor_query(spark, job, available_now=True).awaitTermination()
    assert len(read_table(monitored, tables.FORECAST_ACCURACY)) == before


def test_the_champion_health_is_recorded_against_its_holdout(monitored):
    health = read_table(monitored, tables.MODEL_HEALTH)
    assert len(health) == 3
    last = health.sort_values("monitor_batch").iloc[-1]
    assert last.model_role == "champion" and last.holdout_nrmse > 0
    assert last.status in ("ok", "degraded", "unknown") and last.live_nrmse > 0
    assert np.isfinite(last.drift_psi) and 0 <= last.drift_ks <= 1
    # What the console shows: the newest verdict per version.
    newest = latest_model_health(monitored)
    assert len(newest) == 1 and newest.iloc[0].monitor_batch == last.monitor_batch


def test_compare_logs_a_run_and_promotes_a_better_challenger(spark, monitored):
    cfg = monitored
    kept = compare_champion(cfg, days=30, min_pairs=10, promote_better=True)
    # The shadow is a copy of the champion: equal live NRMSE, no move.
    assert kept.decision == "kept"
    assert set(kept.scores.model_role) == {"champion", "shadow"}
    nrmse = kept.scores.set_index("model_role")["nrmse"]
    assert nrmse["champion"] == pytest.approx(nrmse["shadow"])
    run = MlflowClient().get_run(kept.run_id)
    assert run.data.tags[DECISION_TAG] == "kept"
    assert run.data.params["challenger_name"] == SHADOW
    assert run.data.metrics["champion_live_nrmse"] == pytest.approx(nrmse["champion"])

    too_many = compare_champion(cfg, days=30, min_pairs=10**9, promote_better=True)
    assert too_many.decision in ("too_few_pairs", "kept")

    # Make the shadow's forecasts better than the champion's in the table itself.
    spark.sql(
        f"UPDATE delta.`{cfg.storage.table(tables.FORECAST_ACCURACY)}` "
        "SET forecast = actual + (forecast - actual) * 0.5, error = error * 0.5 "
        "WHERE model_role = 'shadow'"
    )
    name = cfg.forecast.model
    before = MlflowClient().get_model_version_by_alias(name, "champion").version
    moved = compare_champion(cfg, days=30, min_pairs=10, promote_better=True)
    assert moved.decision == "promoted"
    after = MlflowClient().get_model_version_by_alias(name, "champion")
    assert after.version != before and moved.promoted == (name, str(after.version))
    assert after.tags["pitstop.copied_from"].startswith(f"{SHADOW}/")
    assert MlflowClient().get_run(moved.run_id).data.tags[DECISION_TAG] == "promoted"
