"""The local broker for real: messages round-trip, topics are as configured, start/stop behave."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from broker.errors import BrokerError
from broker.java import KAFKA_VERSION
from broker.jvm import BrokerHandle, read_broker_pid
from broker.process import broker_status, start_broker, stop_broker
from broker.topics import list_topics, recreate_topics
from core.config import PitstopConfig

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _needs_local(handle: BrokerHandle | None) -> BrokerHandle:
    if handle is None:
        pytest.skip("these tests drive Pitstop's own broker; the session uses another Kafka")
    return handle


def _consume(bootstrap: str, topic: str, expected: int, timeout_s: float = 30.0) -> list[bytes]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    values: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(values) < expected and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                values.append(message.value())
    finally:
        consumer.close()
    return values


def _message_count(bootstrap: str, topic: str, partitions: int) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "watermarks"})
    try:
        marks = [_watermarks(consumer, TopicPartition(topic, p)) for p in range(partitions)]
    finally:
        consumer.close()
    return sum(high - low for low, high in marks)


def _watermarks(consumer: Consumer, partition: TopicPartition) -> tuple[int, int]:
    # A partition created a moment ago can answer "not leader" while its leader settles;
    # that error is retriable, as for any Kafka client.
    deadline = time.monotonic() + 10
    while True:
        try:
            return consumer.get_watermark_offsets(partition, timeout=10)
        except KafkaException as exc:
            if not exc.args[0].retriable() or time.monotonic() > deadline:
                raise
            time.sleep(0.25)


def test_messages_round_trip(kafka_bootstrap: str, kafka_topic_factory: Callable[..., str]) -> None:
    topic = kafka_topic_factory(partitions=3)
    sent = [f"reading-{i}".encode() for i in range(12)]
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "acks": "all"})
    for i, value in enumerate(sent):
        producer.produce(topic, key=f"battery-{i % 4}".encode(), value=value)
    assert producer.flush(30) == 0

    received = _consume(kafka_bootstrap, topic, expected=len(sent))

    assert sorted(received) == sorted(sent)


def test_configured_topics_have_their_partition_counts(
    kafka_bootstrap: str, broker_cfg: PitstopConfig
) -> None:
    topics = list_topics(kafka_bootstrap)

    for name, partitions in broker_cfg.broker.partitions.items():
        assert topics.get(name) == partitions, name


def test_recreate_topics_starts_clean(
    kafka_bootstrap: str, kafka_topic_factory: Callable[..., str]
) -> None:
    topic = kafka_topic_factory(partitions=2)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(topic, value=b"old")
    assert producer.flush(30) == 0
    assert _message_count(kafka_bootstrap, topic, partitions=2) == 1

    recreate_topics(kafka_bootstrap, {topic: 3})

    assert list_topics(kafka_bootstrap)[topic] == 3
    assert _message_count(kafka_bootstrap, topic, partitions=3) == 0


def test_second_start_returns_the_running_broker(
    broker_cfg: PitstopConfig, local_broker: BrokerHandle | None
) -> None:
    first = _needs_local(local_broker)

    again = start_broker(
        broker_cfg,
        data_dir=first.data_dir,
        port=first.port,
        controller_port=first.controller_port,
    )

    assert again.reused is True
    assert again.pid == first.pid
    assert again.bootstrap == first.bootstrap


def test_status_reports_the_running_broker(
    broker_cfg: PitstopConfig, local_broker: BrokerHandle | None
) -> None:
    handle = _needs_local(local_broker)

    status = broker_status(broker_cfg, data_dir=handle.data_dir)

    assert status.running and status.reachable
    assert status.pid == handle.pid
    assert status.topics["battery-telemetry"] == broker_cfg.broker.partitions["battery-telemetry"]


def test_second_broker_runs_beside_the_first_and_stops_by_pid(
    broker_cfg: PitstopConfig, local_broker: BrokerHandle | None, tmp_path: Path
) -> None:
    _needs_local(local_broker)
    second = start_broker(
        broker_cfg,
        data_dir=tmp_path / "second",
        port=free_port(),
        controller_port=free_port(),
        topics={"only-here": 1},
    )
    try:
        assert second.pid != local_broker.pid
        assert list_topics(second.bootstrap) == {"only-here": 1}
    finally:
        stopped = stop_broker(broker_cfg, data_dir=second.data_dir)

    assert stopped is True
    assert not psutil.pid_exists(second.pid) or (
        psutil.Process(second.pid).status() == psutil.STATUS_ZOMBIE
    )
    assert read_broker_pid(second.data_dir) is None
    assert stop_broker(broker_cfg, data_dir=second.data_dir) is False
    # A clean stop leaves a class archive beside the jars for faster starts (if none was there).
    assert (Path(broker_cfg.home) / "broker" / "lib" / f"kafka-{KAFKA_VERSION}.jsa").is_file()
    assert broker_status(broker_cfg, data_dir=local_broker.data_dir).reachable


def test_start_on_a_taken_port_names_it(
    broker_cfg: PitstopConfig, local_broker: BrokerHandle | None, tmp_path: Path
) -> None:
    _needs_local(local_broker)
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]

        with pytest.raises(BrokerError, match=f"Port {port} on 127.0.0.1") as caught:
            start_broker(
                broker_cfg, data_dir=tmp_path / "blocked", port=port, controller_port=free_port()
            )

    assert "broker.port" in str(caught.value)
    assert read_broker_pid(tmp_path / "blocked") is None
