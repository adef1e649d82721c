"""A real Kafka for the integration tests: $PITSTOP_TEST_KAFKA, else our broker, else Docker.

Our broker runs on free ports with its data under pytest's temp dir, so it never touches the
project's own broker on 9092 and can run while that one is up.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from broker.errors import BrokerError
from broker.jars import ensure_broker_jars
from broker.java import find_java
from broker.jvm import BrokerHandle
from broker.process import start_broker, stop_broker
from broker.topics import ensure_topics, wait_for_kafka
from core.config import PitstopConfig, load_config

_LOG = logging.getLogger(__name__)
EXTERNAL_KAFKA_VAR = "PITSTOP_TEST_KAFKA"


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _docker_reachable() -> bool:
    try:
        import docker  # optional: only needed without Java

        docker.from_env(timeout=3).ping()
    except Exception:  # any failure means "no usable engine"
        return False
    return True


@pytest.fixture(scope="session")
def broker_cfg() -> PitstopConfig:
    """The project configuration (jars are shared with the project's .pitstop/)."""
    return load_config("local")


@pytest.fixture(scope="session")
def local_broker(
    broker_cfg: PitstopConfig, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BrokerHandle | None]:
    """Our broker for this session, or None when the tests use another Kafka."""
    if os.environ.get(EXTERNAL_KAFKA_VAR):
        yield None
        return
    try:
        find_java()
        ensure_broker_jars(Path(broker_cfg.home))
    except BrokerError as exc:
        if _docker_reachable():
            yield None
            return
        pytest.skip(f"No Kafka for integration tests and no Docker engine: {exc}")
    handle = start_broker(
        broker_cfg,
        data_dir=tmp_path_factory.mktemp("kafka") / "broker",
        port=free_port(),
        controller_port=free_port(),
    )
    try:
        yield handle
    finally:
        from streaming.battery.publisher import close_producers

        # A cached alert producer would go on reconnecting to the stopped broker till exit.
        close_producers()
        stop_broker(broker_cfg, data_dir=handle.data_dir)


@pytest.fixture(scope="session")
def kafka_bootstrap(broker_cfg: PitstopConfig, local_broker: BrokerHandle | None) -> Iterator[str]:
    """Bootstrap servers of a Kafka that holds the configured topics."""
    external = os.environ.get(EXTERNAL_KAFKA_VAR)
    if local_broker is not None:
        yield local_broker.bootstrap
        return
    if external:
        wait_for_kafka(external, timeout_s=30)
        ensure_topics(external, broker_cfg.broker.partitions)
        yield external
        return
    # Neither env var nor Java: local_broker only gets here when Docker answered.
    from testcontainers.community.kafka import KafkaContainer

    with KafkaContainer().with_kraft() as container:
        bootstrap = container.get_bootstrap_server()
        wait_for_kafka(bootstrap, timeout_s=60)
        ensure_topics(bootstrap, broker_cfg.broker.partitions)
        yield bootstrap


@pytest.fixture
def kafka_topic_factory(kafka_bootstrap: str) -> Iterator[Callable[..., str]]:
    """Makes uniquely named topics (`make(partitions=1, prefix="test")`); deletes them after."""
    created: list[str] = []

    def make(partitions: int = 1, prefix: str = "test") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        ensure_topics(kafka_bootstrap, {name: partitions}, timeout_s=30)
        created.append(name)
        return name

    yield make
    if created:
        futures = AdminClient({"bootstrap.servers": kafka_bootstrap}).delete_topics(created)
        for name, future in futures.items():
            try:
                future.result(timeout=30)
            except Exception as exc:  # cleanup must not fail the test
                _LOG.warning("Could not delete test topic %s: %s", name, exc)
