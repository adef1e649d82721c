"""Kafka and the Event Hubs emulator in containers (testcontainers), when Docker is here.

Exercises Pitstop's own clients against real brokers: the simulator's Kafka sink against
Apache Kafka (read back with a consumer), the simulator's `eventhubs` sink against the
emulator's AMQP port (read back with an AMQP consumer), and the job's Kafka source options
against the emulator's Kafka endpoint (SASL_PLAINTEXT/PLAIN, user $ConnectionString).

Without a reachable Docker engine every test skips with the reason; the emulator tests also
skip unless ACCEPT_EULA=Y accepts the emulator's licence (as for docker/compose.yaml).
Every wait is bounded, so a slow pull or a wedged container fails instead of hanging.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.config import PitstopConfig, load_config

pytestmark = [pytest.mark.docker, pytest.mark.integration, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
EMULATOR_CONFIG = REPO / "docker" / "eventhubs-emulator" / "config.json"
KAFKA_IMAGE = os.environ.get("PITSTOP_TEST_KAFKA_IMAGE", "confluentinc/cp-kafka:7.6.0")
AZURITE_IMAGE = os.environ.get("AZURITE_IMAGE", "mcr.microsoft.com/azure-storage/azurite:3.35.0")
EMULATOR_IMAGE = os.environ.get(
    "EVENTHUBS_EMULATOR_IMAGE", "mcr.microsoft.com/azure-messaging/eventhubs-emulator:2.2.1"
)
# The emulator's published development credentials: not a secret.
EMULATOR_KEY = "SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE"
TEST_SECRET_ENV = "PITSTOP_TEST_EVENTHUBS_CONNECTION_STRING"


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def docker_engine() -> None:
    """Skip, with the reason, unless a Docker engine answers a ping within seconds."""
    try:
        import docker  # noqa: PLC0415 - only needed when these tests run

        docker.from_env(timeout=5).ping()
    except Exception as exc:  # noqa: BLE001 - any failure means "no usable engine"
        pytest.skip(
            f"No Docker engine reachable ({type(exc).__name__}: {exc}); the testcontainers "
            "tests need one (set DOCKER_HOST or start Docker)."
        )


@pytest.fixture(scope="module")
def kafka_bootstrap(docker_engine: None) -> Iterator[str]:
    """An Apache Kafka broker (KRaft) in a container."""
    from testcontainers.community.kafka import KafkaContainer  # noqa: PLC0415

    container = KafkaContainer(KAFKA_IMAGE).with_kraft()
    container.start(timeout=180)
    try:
        yield container.get_bootstrap_server()
    finally:
        container.stop()


@dataclass(frozen=True)
class Emulator:
    """Where the host reaches a running Event Hubs emulator."""

    host: str
    amqp_port: int
    kafka_port: int

    def connection_string(self, port: int) -> str:
        """The development connection string with an explicit endpoint port.

        AMQP clients connect to that port (UseDevelopmentEmulator turns TLS off and honours
        it); the emulator's Kafka endpoint advertises the endpoint of the string it is given.
        """
        return f"Endpoint=sb://{self.host}:{port};{EMULATOR_KEY};UseDevelopmentEmulator=true;"


@pytest.fixture(scope="module")
def eventhubs_emulator(docker_engine: None) -> Iterator[Emulator]:
    """The Event Hubs emulator on Azurite, configured with docker/eventhubs-emulator."""
    if os.environ.get("ACCEPT_EULA", "").upper() != "Y":
        pytest.skip(
            "The Event Hubs emulator needs its licence accepted: set ACCEPT_EULA=Y "
            "(see docs/deploy.md)."
        )
    from testcontainers.community.azurite import AzuriteContainer  # noqa: PLC0415
    from testcontainers.core.container import DockerContainer  # noqa: PLC0415
    from testcontainers.core.network import Network  # noqa: PLC0415
    from testcontainers.core.wait_strategies import HttpWaitStrategy  # noqa: PLC0415

    with Network() as network:
        azurite = (
            AzuriteContainer(AZURITE_IMAGE).with_network(network).with_network_aliases("azurite")
        )
        emulator = (
            DockerContainer(EMULATOR_IMAGE)
            .with_network(network)
            .with_network_aliases("eventhubs")
            .with_env("BLOB_SERVER", "azurite")
            .with_env("METADATA_SERVER", "azurite")
            .with_env("ACCEPT_EULA", "Y")
            .with_copy_into_container(
                EMULATOR_CONFIG, "/Eventhubs_Emulator/ConfigFiles/Config.json"
            )
            .with_exposed_ports(5672, 9092, 5300)
            .waiting_for(
                HttpWaitStrategy(5300, "/health").for_status_code(200).with_startup_timeout(240)
            )
        )
        with azurite, emulator:
            yield Emulator(
                host=emulator.get_container_host_ip(),
                amqp_port=int(emulator.get_exposed_port(5672)),
                kafka_port=int(emulator.get_exposed_port(9092)),
            )


# --- helpers --------------------------------------------------------------------------------


def _readings(run_id: str, count: int) -> list[tuple[str, bytes]]:
    """`count` contract-valid telemetry messages (key, value) over four batteries."""
    messages = []
    for day in range(count):
        battery = f"{run_id}-b{day % 4}"
        reading = {
            "schema_version": 1,
            "car_id": f"{run_id}-car{day % 4}",
            "battery_id": battery,
            "date": f"2024-01-{day // 4 + 1:02d}",
            "battery_age_days": day // 4,
            "number_of_trips": 2,
            "daily_trip_duration": 1.5,
            "daily_cycles_used": 0.8,
            "lifetime_cycles_used": 100.0 + day,
            "battery_rated_cycles": 1500.0,
        }
        messages.append((battery, json.dumps(reading).encode("utf-8")))
    return messages


def _emulator_config(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> PitstopConfig:
    """The local configuration pointed at the emulator's Kafka endpoint, as compose does."""
    monkeypatch.setenv(TEST_SECRET_ENV, emulator.connection_string(emulator.kafka_port))
    cfg = load_config("local")
    kafka = cfg.kafka.model_copy(
        update={
            "bootstrap_servers": f"{emulator.host}:{emulator.kafka_port}",
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "PLAIN",
            "connection_string_env": TEST_SECRET_ENV,
        }
    )
    return cfg.model_copy(update={"kafka": kafka})


def _receive_events(connection_string: str, topic: str, run_id: str, expected: int) -> list[bytes]:
    """Bodies of `topic` from the start of every partition, until this run's `expected`
    messages arrived or 60 s passed (AMQP, consumer group pitstop-monitor)."""
    from azure.eventhub import EventHubConsumerClient  # noqa: PLC0415

    consumer = EventHubConsumerClient.from_connection_string(
        connection_string, consumer_group="pitstop-monitor", eventhub_name=topic
    )
    bodies: list[bytes] = []
    enough = threading.Event()

    def on_event_batch(_context, events) -> None:
        bodies.extend(b"".join(event.body) for event in events)
        if sum(json.loads(b)["car_id"].startswith(run_id) for b in bodies) >= expected:
            enough.set()

    # receive_batch blocks until the client is closed: run it aside, close when done.
    worker = threading.Thread(
        target=consumer.receive_batch,
        kwargs={"on_event_batch": on_event_batch, "starting_position": "-1", "max_wait_time": 2},
        daemon=True,
    )
    worker.start()
    try:
        enough.wait(timeout=60)
    finally:
        consumer.close()
        worker.join(timeout=20)
    return bodies


# --- Apache Kafka ---------------------------------------------------------------------------


def test_simulator_kafka_sink_round_trips_through_kafka(kafka_bootstrap: str) -> None:
    from confluent_kafka import Consumer  # noqa: PLC0415

    from broker.topics import ensure_topics
    from core.kafka_clients import producer_config  # noqa: PLC0415
    from simulator.sinks.kafka import KafkaSink  # noqa: PLC0415

    run_id = uuid.uuid4().hex[:8]
    topic = f"tc-telemetry-{run_id}"
    ensure_topics(kafka_bootstrap, {topic: 4}, timeout_s=60)
    kafka = load_config("local").kafka.model_copy(update={"bootstrap_servers": kafka_bootstrap})
    conf, secrets = producer_config(kafka, message_timeout_ms=30_000)
    sink = KafkaSink(conf, secrets=secrets)
    sent = _readings(run_id, 40)
    for key, value in sent:
        sink.send(topic, key, value)
    counts = sink.close()
    assert (counts.delivered, counts.failed) == (len(sent), 0)

    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": f"tc-{run_id}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    received: list[tuple[str, bytes, int]] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 60
        while len(received) < len(sent) and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is not None and message.error() is None:
                received.append((message.key().decode(), message.value(), message.partition()))
    finally:
        consumer.close()
    assert sorted((k, v) for k, v, _ in received) == sorted(sent)
    # Keyed by battery: each battery lives on one partition, its readings in order.
    partitions: dict[str, set[int]] = {}
    for key, _value, partition in received:
        partitions.setdefault(key, set()).add(partition)
    assert all(len(p) == 1 for p in partitions.values())
    for key in partitions:
        days = [json.loads(v)["date"] for k, v, _ in received if k == key]
        assert days == sorted(days)


# --- Event Hubs emulator --------------------------------------------------------------------


def test_simulator_eventhubs_sink_delivers_over_amqp(eventhubs_emulator: Emulator) -> None:
    from simulator.sinks.eventhubs import EventHubsSink  # noqa: PLC0415

    topic = load_config("local").kafka.topics.telemetry
    connection_string = eventhubs_emulator.connection_string(eventhubs_emulator.amqp_port)
    run_id = uuid.uuid4().hex[:8]
    sent = _readings(run_id, 24)
    sink = EventHubsSink(connection_string, attempts=3, backoff_s=0.5)
    sink.check([topic])
    for key, value in sent:
        sink.send(topic, key, value)
    counts = sink.close()
    assert (counts.delivered, counts.failed) == (len(sent), 0)

    received = _receive_events(connection_string, topic, run_id, expected=len(sent))
    ours = [body for body in received if json.loads(body)["car_id"].startswith(run_id)]
    assert sorted(ours) == sorted(value for _key, value in sent)
    for body in ours:
        assert json.loads(body)["schema_version"] == 1


def test_job_kafka_source_reads_the_emulator_kafka_endpoint(
    eventhubs_emulator: Emulator,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    from core.kafka_clients import producer_config  # noqa: PLC0415
    from simulator.sinks.kafka import KafkaSink  # noqa: PLC0415
    from streaming.sources import kafka_options  # noqa: PLC0415

    cfg = _emulator_config(eventhubs_emulator, monkeypatch)
    topic = cfg.kafka.topics.notes  # its own event hub: the AMQP test writes telemetry
    conf, secrets = producer_config(cfg.kafka, message_timeout_ms=30_000)
    run_id = uuid.uuid4().hex[:8]
    sent = _readings(run_id, 12)
    sink = KafkaSink(conf, secrets=secrets)
    for key, value in sent:
        sink.send(topic, key, value)
    counts = sink.close()
    assert (counts.delivered, counts.failed) == (len(sent), 0)

    options = kafka_options(cfg, topic)
    assert options["kafka.sasl.jaas.config"].startswith(cfg.kafka.login_module)
    for streaming_only in ("maxOffsetsPerTrigger", "minPartitions"):
        options.pop(streaming_only, None)
    options.update(
        {
            "startingOffsets": "earliest",
            "endingOffsets": "latest",
            "kafka.request.timeout.ms": "30000",
            "kafka.default.api.timeout.ms": "30000",
        }
    )
    spark = request.getfixturevalue("spark")  # only once the emulator is known to be up
    rows = spark.read.format("kafka").options(**options).load().select("value").collect()
    values = [bytes(row.value) for row in rows]
    ours = [v for v in values if json.loads(v)["car_id"].startswith(run_id)]
    assert sorted(ours) == sorted(value for _key, value in sent)
