"""The simulator against a real Kafka broker: every event arrives, keyed, in date order;
a broker that vanishes mid-run gives an honest count, and one that comes back loses nothing."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from broker.process import start_broker, stop_broker
from core.config import PitstopConfig
from simulator.errors import SimulatorError
from simulator.run import run_simulation
from tests.integration.conftest import free_port

pytestmark = pytest.mark.integration


def _config(cfg: PitstopConfig, bootstrap: str, telemetry: str, notes: str) -> PitstopConfig:
    topics = cfg.kafka.topics.model_copy(update={"telemetry": telemetry, "notes": notes})
    kafka = cfg.kafka.model_copy(update={"bootstrap_servers": bootstrap, "topics": topics})
    return cfg.model_copy(update={"kafka": kafka})


def _consume_all(bootstrap: str, topic: str, expected: int, timeout_s: float = 60.0) -> list:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"sim-test-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    records, deadline = [], time.monotonic() + timeout_s
    try:
        while len(records) < expected and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=5000, timeout=1.0):
                if message.error() is None:
                    records.append(message)
        # Anything beyond `expected` would be a duplicate: give it a moment to show up.
        records.extend(m for m in consumer.consume(num_messages=5000, timeout=2.0) if not m.error())
    finally:
        consumer.close()
    return records


def test_every_event_reaches_kafka_keyed_and_in_date_order(
    broker_cfg, kafka_bootstrap, kafka_topic_factory, tmp_path
) -> None:
    cfg = _config(broker_cfg, kafka_bootstrap, kafka_topic_factory(4), kafka_topic_factory(2))
    summary = run_simulation(
        cfg, sink="kafka", batteries=80, days=45, seed=21, output_dir=tmp_path / "k", notes=False
    )
    assert summary.failed == 0 and summary.delivered == summary.events_sent > 3000
    records = _consume_all(kafka_bootstrap, cfg.kafka.topics.telemetry, summary.delivered)
    assert len(records) == summary.delivered
    values = [json.loads(r.value()) for r in records]
    assert all(r.key().decode() == v["battery_id"] for r, v in zip(records, values, strict=True))
    by_partition: dict[int, list[str]] = {}
    for record, value in zip(records, values, strict=True):
        by_partition.setdefault(record.partition(), []).append(value["date"])
    assert len(by_partition) == 4
    assert all(dates == sorted(dates) for dates in by_partition.values())

    # The same seed to files gives exactly the same messages.
    run_simulation(
        cfg, sink="files", batteries=80, days=45, seed=21, output_dir=tmp_path / "f", notes=False
    )
    lines = (tmp_path / "f" / f"{cfg.kafka.topics.telemetry}.jsonl").read_bytes().splitlines()
    assert sorted(lines) == sorted(r.value() for r in records)


def test_unreachable_broker_is_one_sentence(broker_cfg, tmp_path) -> None:
    cfg = _config(broker_cfg, f"127.0.0.1:{free_port()}", "t", "n")
    with pytest.raises(SimulatorError, match="is unreachable"):
        run_simulation(cfg, sink="kafka", batteries=5, days=2, output_dir=tmp_path)


@pytest.fixture
def own_broker(broker_cfg, local_broker, tmp_path):
    """A broker this test may stop and restart (the session broker must stay up)."""
    if local_broker is None:
        pytest.skip("Stopping a broker mid-run needs the project's own broker launcher.")
    data_dir = tmp_path / "own-broker"
    ports = (free_port(), free_port())
    topics = {"sim-telemetry": 2, "sim-notes": 1}
    handle = start_broker(
        broker_cfg, data_dir=data_dir, port=ports[0], controller_port=ports[1], topics=topics
    )

    def restart():
        return start_broker(
            broker_cfg, data_dir=data_dir, port=ports[0], controller_port=ports[1], topics=topics
        )

    yield handle, (lambda: stop_broker(broker_cfg, data_dir=data_dir)), restart
    stop_broker(broker_cfg, data_dir=data_dir)


def _run_while(cfg, action, tmp_path, timeout_s: float):
    worker = threading.Thread(target=action, daemon=True)
    worker.start()
    summary = run_simulation(
        cfg,
        sink="kafka",
        batteries=100,
        days=60,
        rate=1500.0,
        output_dir=tmp_path,
        notes=False,
        message_timeout_s=timeout_s,
    )
    worker.join(60)
    return summary


def test_broker_gone_mid_run_ends_with_an_honest_count(broker_cfg, own_broker, tmp_path) -> None:
    handle, stop, _restart = own_broker
    cfg = _config(broker_cfg, handle.bootstrap, "sim-telemetry", "sim-notes")

    def vanish():
        time.sleep(1.5)
        stop()

    summary = _run_while(cfg, vanish, tmp_path, timeout_s=3.0)
    assert summary.delivered > 0 and summary.failed > 0
    assert summary.delivered + summary.failed == summary.events_sent


def test_broker_back_within_the_timeout_loses_nothing(broker_cfg, own_broker, tmp_path) -> None:
    handle, stop, restart = own_broker
    cfg = _config(broker_cfg, handle.bootstrap, "sim-telemetry", "sim-notes")

    def bounce():
        time.sleep(1.5)
        stop()
        time.sleep(1.0)
        restart()

    summary = _run_while(cfg, bounce, tmp_path, timeout_s=60.0)
    assert summary.failed == 0 and summary.delivered == summary.events_sent
    records = _consume_all(handle.bootstrap, "sim-telemetry", summary.delivered)
    keys = [(r.key(), json.loads(r.value())["date"]) for r in records]
    assert len(keys) == len(set(keys)) == summary.delivered  # idempotent: no duplicates


def test_partition_offsets_match_delivered(
    broker_cfg, kafka_bootstrap, kafka_topic_factory, tmp_path
):
    """Delivered means written: the topic's end offsets add up to the delivered count."""
    cfg = _config(broker_cfg, kafka_bootstrap, kafka_topic_factory(3), kafka_topic_factory(1))
    summary = run_simulation(cfg, sink="kafka", batteries=30, days=10, output_dir=tmp_path)
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": "offsets-probe"})
    try:
        ends = [
            consumer.get_watermark_offsets(TopicPartition(cfg.kafka.topics.telemetry, p), 10)[1]
            for p in range(3)
        ]
    finally:
        consumer.close()
    assert sum(ends) == summary.telemetry_sent == summary.delivered - summary.notes_sent
    assert re.search(r"\d+ events to kafka", summary.line())
    assert Path(summary.truth_dir, "batteries.csv").exists()
