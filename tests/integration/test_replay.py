"""Replay and batch scoring give what the broker-fed stream gives, on the same recording."""

from __future__ import annotations

import numpy as np
import pytest
from confluent_kafka import Producer

from core.lake import read_table
from streaming.battery.flow import build_job, start_battery_query
from streaming.replay import run_batch_score, run_replay
from tests.integration.test_stream_e2e import stream_config

pytestmark = pytest.mark.integration


def forecasts_by_key(cfg) -> dict:
    frame = read_table(cfg, "battery_forecasts")
    return {
        (r.battery_id, str(r.date)): np.asarray(r.forecast) for r in frame.itertuples(index=False)
    }


def alert_keys(cfg) -> set:
    frame = read_table(cfg, "battery_alerts")
    return {
        (r.battery_id, str(r.alert_date), str(r.predicted_failure_date), r.status)
        for r in frame.itertuples(index=False)
    }


def assert_same_output(expected, actual) -> None:
    want, got = forecasts_by_key(expected), forecasts_by_key(actual)
    assert want.keys() == got.keys()
    worst = max(float(np.max(np.abs(want[k] - got[k]))) for k in want)
    assert worst < 1e-6, f"forecasts differ by up to {worst}"
    assert alert_keys(expected) == alert_keys(actual)


def test_replay_and_batch_scoring_match_the_broker_fed_stream(
    spark, tmp_path, kafka_bootstrap, kafka_topic_factory, trained_config
):
    from simulator.run import run_simulation

    recording = tmp_path / "recording"
    run_simulation(
        trained_config,
        sink="files",
        batteries=25,
        days=200,
        seed=5,
        output_dir=recording,
        notes=False,
    )
    lines = (recording / "battery-telemetry.jsonl").read_bytes().splitlines()
    lines.insert(40, lines[10])  # a duplicate reading
    lines.insert(90, b'{"schema_version": 1}')  # a broken one
    (recording / "battery-telemetry.jsonl").write_bytes(b"\n".join(lines) + b"\n")

    cfg = stream_config(tmp_path / "stream", kafka_bootstrap, kafka_topic_factory, trained_config)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
    for line in lines:
        producer.produce(cfg.kafka.topics.telemetry, value=line)
    assert producer.flush(30) == 0
    job = build_job(spark, cfg)
    start_battery_query(spark, job, available_now=True).awaitTermination()

    replayed = run_replay(spark, cfg, recording, tmp_path / "replay")
    assert_same_output(cfg, replayed)
    assert len(read_table(replayed, "quarantine")) == len(read_table(cfg, "quarantine")) == 2

    scored = run_batch_score(spark, cfg, recording / "battery-telemetry.jsonl", tmp_path / "batch")
    assert_same_output(cfg, scored)

    # The same fleet as a lab-schema CSV: same windows, so the same forecasts.
    from_csv = run_batch_score(spark, cfg, recording / "battery-telemetry.csv", tmp_path / "csv")
    assert forecasts_by_key(from_csv).keys() == forecasts_by_key(cfg).keys()


def test_replay_rejects_what_it_cannot_read(spark, tmp_path, trained_config):
    from streaming.files import RecordingError

    with pytest.raises(RecordingError, match="does not exist"):
        run_replay(spark, trained_config, tmp_path / "missing", tmp_path / "out")
    odd = tmp_path / "odd.parquet"
    odd.write_bytes(b"PAR1")
    with pytest.raises(RecordingError, match="neither JSONL"):
        run_replay(spark, trained_config, odd, tmp_path / "out")
