"""An alias move reaches a running job at the next micro-batch; models load once per worker."""

from __future__ import annotations

import json
import logging
import time

import mlflow
import pytest
from confluent_kafka import Producer
from mlflow import MlflowClient
from pyspark.sql import Row
from pyspark.testing import assertDataFrameEqual

from models.registry import configure_mlflow, promote
from streaming.battery.flow import build_job, start_battery_query
from streaming.progress import caught_up
from tests.integration.test_stream_e2e import stream_config

pytestmark = pytest.mark.integration


def produce(bootstrap: str, topic: str, lines: list[bytes]) -> dict[str, dict[int, int]]:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for line in lines:
        # Keyed by battery as the contract says, so a battery's readings stay in order
        # across micro-batches (unkeyed, an older reading can arrive late and be quarantined).
        producer.produce(topic, key=json.loads(line)["battery_id"].encode(), value=line)
    assert producer.flush(30) == 0
    from apps.demo import end_offsets

    return end_offsets(bootstrap, topic)


def wait_for(checkpoint: str, offsets, query, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while not caught_up(checkpoint, offsets):
        assert query.isActive, f"query stopped: {query.exception()}"
        assert time.monotonic() < deadline, "the job did not catch up in time"
        time.sleep(0.5)


def test_alias_move_switches_the_next_micro_batch_without_restart(
    spark, tmp_path, kafka_bootstrap, kafka_topic_factory, trained_config, caplog
):
    from simulator.run import run_simulation

    run_simulation(
        trained_config,
        sink="files",
        batteries=20,
        days=120,
        seed=9,
        output_dir=tmp_path / "fleet",
        notes=False,
    )
    lines = (tmp_path / "fleet" / "battery-telemetry.jsonl").read_bytes().splitlines()
    first, second = lines[: len(lines) // 2], lines[len(lines) // 2 :]

    cfg = stream_config(tmp_path, kafka_bootstrap, kafka_topic_factory, trained_config)
    cfg = cfg.model_copy(
        update={
            "stream": cfg.stream.model_copy(update={"trigger_seconds": 1}),
            # Ask the registry every micro-batch: the swap must show in the very next one
            # (the job's default asks at most every 10 s).
            "mlflow": cfg.mlflow.model_copy(update={"alias_refresh_seconds": 0}),
        }
    )
    configure_mlflow(cfg)
    client = MlflowClient()
    name = cfg.forecast.model
    old = client.get_model_version_by_alias(name, cfg.mlflow.alias)
    new = mlflow.register_model(old.source, name)
    checkpoint = cfg.storage.checkpoint(cfg.stream.query_name)

    job = build_job(spark, cfg, count_loads=True)
    query = start_battery_query(spark, job)
    try:
        wait_for(checkpoint, produce(kafka_bootstrap, cfg.kafka.topics.telemetry, first), query)
        loads_before = job.loads.value
        with caplog.at_level(logging.INFO, logger="streaming.model_refs"):
            promote(name, new.version, cfg.mlflow.alias, reason="hot-swap test")
            wait_for(
                checkpoint, produce(kafka_bootstrap, cfg.kafka.topics.telemetry, second), query
            )
    finally:
        query.stop()
        promote(name, old.version, cfg.mlflow.alias, reason="restore after hot-swap test")

    forecasts = spark.read.format("delta").load(job.paths["battery_forecasts"])
    assert forecasts.count() == len(lines)
    assert forecasts.select("battery_id", "date").distinct().count() == len(lines)
    versions = forecasts.select("model_version").distinct()
    assertDataFrameEqual(versions, [Row(model_version=str(v.version)) for v in (old, new)])
    last_date = forecasts.agg({"date": "max"}).first()[0]
    last_versions = forecasts.where(f"date = '{last_date}'").select("model_version").distinct()
    assertDataFrameEqual(last_versions, [Row(model_version=str(new.version))])
    assert any("moved" in m and str(new.version) in m for m in caplog.messages)
    # Each version loaded at most once per Python worker (local[2]: 2 workers).
    assert loads_before <= 2  # 0 if an earlier test left v1 in the reused workers
    assert 1 <= job.loads.value - loads_before <= 2  # the new version: once per worker


def test_missing_model_is_one_clear_error_at_start(spark, tmp_path, trained_config):
    from streaming.model_refs import ModelUnavailableError

    cfg = trained_config.model_copy(
        update={"forecast": trained_config.forecast.model_copy(update={"model": "no-such-model"})}
    )
    with pytest.raises(ModelUnavailableError, match="No version of model 'no-such-model'"):
        build_job(spark, cfg)
