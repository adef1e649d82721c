"""A deployment of stream v1 (a stateless query, history looked up in Delta) moves to v2.

The v2 job finds v1's checkpoint (commits, no state): it moves it aside, starts at its
committed offsets and seeds each battery's state from `telemetry`. Nothing is read twice,
no battery with an open alert gets a second one, and what v2 scores afterwards is what an
uninterrupted v2 stream scores.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka import Producer

from core.lake import read_table
from streaming.battery.flow import (
    battery_query,
    build_job,
    process_battery_batch,
    start_battery_query,
)
from streaming.battery.readings import battery_history, parse_telemetry
from streaming.sources import read_kafka_stream
from tests.integration.test_chaos import simulate
from tests.integration.test_replay import forecasts_by_key
from tests.integration.test_stream_e2e import stream_config

pytestmark = pytest.mark.integration


def produce(cfg, lines: list[bytes]) -> None:
    import json

    producer = Producer({"bootstrap.servers": cfg.kafka.bootstrap_servers, "acks": "all"})
    for line in lines:
        key = json.loads(line)["battery_id"].encode()
        producer.produce(cfg.kafka.topics.telemetry, key=key, value=line)
    assert producer.flush(30) == 0


def run_stream_v1(spark, cfg) -> None:
    """Stream v1's shape: a stateless Kafka query whose every micro-batch stores, scores and
    alerts -- it leaves a checkpoint with offsets and commits but no state."""
    job = build_job(spark, cfg)

    def batch(frame, batch_id: int) -> None:
        decided = battery_history(parse_telemetry(frame), job.rules, ttl_days=90)
        process_battery_batch(job, decided, batch_id)

    messages = read_kafka_stream(spark, cfg, cfg.kafka.topics.telemetry)
    (
        messages.writeStream.queryName(cfg.stream.query_name)
        .option("checkpointLocation", cfg.storage.checkpoint(cfg.stream.query_name))
        .foreachBatch(batch)
        .trigger(availableNow=True)
        .start()
        .awaitTermination()
    )


def test_v2_takes_over_a_v1_checkpoint_without_rereading_or_realerting(
    spark, tmp_path, kafka_bootstrap, kafka_topic_factory, trained_config
):
    simulate(trained_config, tmp_path / "fleet", batteries=30, days=300)
    lines = (tmp_path / "fleet" / "battery-telemetry.jsonl").read_bytes().splitlines()
    # Switch a few days before the busiest fortnight of failures: alerts are open then.
    split = switch_date(tmp_path / "fleet" / "truth" / "batteries.csv")
    first = [line for line, day in zip(lines, telemetry_dates(lines), strict=True) if day < split]
    second = lines[len(first) :]
    assert first and second and all(d >= split for d in telemetry_dates(second))

    cfg = stream_config(tmp_path / "deployed", kafka_bootstrap, kafka_topic_factory, trained_config)
    produce(cfg, first)
    run_stream_v1(spark, cfg)
    before = read_table(cfg, "battery_alerts")
    open_before = before[before["status"] == "open"]
    assert len(open_before) > 0, "the fleet has batteries near end of life by mid-run"

    produce(cfg, second)
    start_battery_query(spark, build_job(spark, cfg), available_now=True).awaitTermination()

    checkpoint = Path(cfg.storage.checkpoint(cfg.stream.query_name))
    assert (checkpoint / "state").is_dir()
    assert len(list(checkpoint.parent.glob(f"{checkpoint.name}.v1-*"))) == 1
    telemetry = read_table(cfg, "telemetry")
    assert len(telemetry) == len(lines)
    assert not telemetry.duplicated(["battery_id", "date"]).any()
    assert read_table(cfg, "quarantine").empty  # nothing read twice, so nothing rejected
    after = read_table(cfg, "battery_alerts")
    assert not after["alert_id"].duplicated().any()
    assert not after[after["status"] == "open"]["battery_id"].duplicated().any()
    # A battery whose alert was open before the switch has no alert but that one, unless
    # it was replaced since (then its old alert is closed, not doubled).
    for row in open_before.itertuples():
        mine = after[after["battery_id"] == row.battery_id]
        assert list(mine["alert_id"]) == [row.alert_id]

    # The seeded state gives the same windows as a stream that ran v2 all along.
    fresh = stream_config(tmp_path / "fresh", kafka_bootstrap, kafka_topic_factory, trained_config)
    produce(fresh, lines)
    job = build_job(spark, fresh)
    messages = read_kafka_stream(spark, fresh, fresh.kafka.topics.telemetry)
    checkpoint = fresh.storage.checkpoint(fresh.stream.query_name)
    battery_query(spark, job, messages, checkpoint, available_now=True).awaitTermination()
    want, got = forecasts_by_key(fresh), forecasts_by_key(cfg)
    assert want.keys() == got.keys()
    later = [key for key in got if key[1] > max(str(d) for d in telemetry_dates(first))]
    assert later
    for key in later:
        assert abs(want[key] - got[key]).max() < 1e-6


def switch_date(truth: Path) -> str:
    """Five days before the failure date with the most failures in the 14 days after it."""
    import pandas as pd

    failures = pd.to_datetime(pd.read_csv(truth)["failure_date"].dropna()).sort_values()
    busiest = max(
        failures, key=lambda f: ((failures >= f) & (failures < f + pd.Timedelta(days=14))).sum()
    )
    return (busiest - pd.Timedelta(days=5)).date().isoformat()


def telemetry_dates(lines: list[bytes]) -> list[str]:
    import json

    return [json.loads(line)["date"] for line in lines]
