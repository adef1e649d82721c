"""Sinks: Kafka settings, files output, and the Azure sinks' batching and retries.

The Event Hubs and IoT Hub services cannot run here, so their SDK clients are replaced by
the small test doubles below; the Kafka sink is exercised against a real broker in
tests/integration/test_simulator_kafka.py.
"""

from __future__ import annotations

import json
import logging
import random

import pandas as pd
import pytest

from core.config import KafkaConfig, load_config
from core.contract import read_lab_csv
from core.kafka_clients import producer_config
from simulator.errors import SimulatorError, redact
from simulator.messages import MessageBatch
from simulator.sinks import make_sink
from simulator.sinks.eventhubs import EventHubsSink, check_eventhubs_connection_string
from simulator.sinks.files import FilesSink
from simulator.sinks.iothub import (
    IOTHUB_DEVICES_ENV,
    IoTHubSink,
    build_message,
    derive_device_key,
    read_device_map,
)
from simulator.sinks.retry import retry_call

pytestmark = pytest.mark.unit

SECRET = "c2VjcmV0LWtleS1kby1ub3QtbG9n"
EH_STRING = (
    "Endpoint=sb://pitstop.servicebus.windows.net/;SharedAccessKeyName=send;"
    f"SharedAccessKey={SECRET}"
)


def _batch(n: int, prefix: str = "B") -> MessageBatch:
    keys = [f"{prefix}{i:06d}" for i in range(n)]
    blob = b"\n".join(json.dumps({"battery_id": k}).encode() for k in keys)
    return MessageBatch(keys=keys, blob=blob)


# -- retry ------------------------------------------------------------------------------


def test_backoff_doubles_up_to_the_cap() -> None:
    delays: list[float] = []
    with pytest.raises(OSError):
        retry_call(
            _raise,
            attempts=6,
            retry_on=(OSError,),
            base_s=1.0,
            cap_s=5.0,
            jitter=0.0,
            sleep=delays.append,
        )
    assert delays == [1.0, 2.0, 4.0, 5.0, 5.0]
    jittered: list[float] = []
    with pytest.raises(OSError):
        retry_call(
            _raise,
            attempts=3,
            retry_on=(OSError,),
            base_s=1.0,
            jitter=0.2,
            sleep=jittered.append,
            rng=random.Random(1),
        )
    assert all(0.8 <= d / b <= 1.2 for d, b in zip(jittered, [1.0, 2.0], strict=True))


def test_retry_call_retries_then_succeeds_and_gives_up_after_attempts() -> None:
    slept: list[float] = []
    outcomes = iter([OSError("x"), OSError("y"), "ok"])

    def flaky():
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert retry_call(flaky, attempts=3, retry_on=(OSError,), sleep=slept.append) == "ok"
    assert len(slept) == 2
    with pytest.raises(OSError):
        retry_call(_raise, attempts=2, retry_on=(OSError,), sleep=slept.append)
    with pytest.raises(KeyError):  # not retryable: raised at once
        retry_call(lambda: {}["k"], attempts=5, retry_on=(OSError,), sleep=slept.append)


def _raise():
    raise OSError("always")


# -- secrets ----------------------------------------------------------------------------


def test_redact_hides_known_secrets_and_key_shaped_text() -> None:
    text = f"failed for {EH_STRING} and SharedAccessSignature sr=x&sig=abc123&se=1"
    cleaned = redact(text, (EH_STRING,))
    assert SECRET not in cleaned and "abc123" not in cleaned
    assert "SharedAccessKey=***" in redact(f"SharedAccessKey={SECRET};x=1")


# -- kafka settings ---------------------------------------------------------------------


def test_local_kafka_is_idempotent_and_compressed() -> None:
    conf, secrets = producer_config(KafkaConfig(bootstrap_servers="127.0.0.1:9092"))
    assert conf["enable.idempotence"] is True and conf["compression.type"] == "lz4"
    assert "sasl.password" not in conf and secrets == ()


def test_event_hubs_kafka_uses_sasl_and_microsoft_timeouts(monkeypatch) -> None:
    monkeypatch.setenv("EH_TEST", EH_STRING)
    kafka = KafkaConfig(
        bootstrap_servers="pitstop.servicebus.windows.net:9093",
        security_protocol="SASL_SSL",
        sasl_mechanism="PLAIN",
        connection_string_env="EH_TEST",
        client_options={"session.timeout.ms": "30000", "kafka.request.timeout.ms": "61000"},
    )
    conf, secrets = producer_config(kafka)
    assert conf["security.protocol"] == "SASL_SSL" and conf["sasl.mechanisms"] == "PLAIN"
    assert conf["sasl.username"] == "$ConnectionString" and conf["sasl.password"] == EH_STRING
    assert conf["enable.idempotence"] is False
    assert conf["metadata.max.age.ms"] == 180000 and conf["connections.max.idle.ms"] == 180000
    assert conf["message.max.bytes"] < 1046528
    assert conf["request.timeout.ms"] == "61000"  # the user's option wins
    assert "session.timeout.ms" not in conf  # consumer-only: not for a producer
    assert secrets == (EH_STRING,)


def test_missing_event_hubs_secret_is_one_sentence_without_the_value(monkeypatch) -> None:
    cfg = load_config("local")
    monkeypatch.setenv("EH_TEST", "Endpoint=nope;" + SECRET)
    kafka = cfg.kafka.model_copy(update={"connection_string_env": "EH_TEST"})
    with pytest.raises(SimulatorError) as info:
        make_sink("kafka", cfg.model_copy(update={"kafka": kafka}), output_dir=None)
    assert "EH_TEST" in str(info.value) and SECRET not in str(info.value)
    monkeypatch.delenv("EH_TEST")
    with pytest.raises(SimulatorError, match="not set"):
        make_sink("kafka", cfg.model_copy(update={"kafka": kafka}), output_dir=None)


def test_unknown_sink_name_is_rejected() -> None:
    with pytest.raises(SimulatorError, match="Unknown sink 'carrier-pigeon'"):
        make_sink("carrier-pigeon", load_config("local"), output_dir=None)


# -- files ------------------------------------------------------------------------------


def test_files_sink_writes_jsonl_per_topic_and_lab_csv(tmp_path) -> None:
    import datetime as dt

    from simulator.fleet import Fleet, FleetParams
    from simulator.messages import encode_telemetry

    fleet = Fleet(FleetParams(30, dt.date(2024, 1, 1), seed=2))
    sink = FilesSink(tmp_path)
    sent = 0
    for _ in range(3):
        batch = encode_telemetry(fleet.step())
        sink.send_batch("battery-telemetry", batch)
        sent += len(batch)
    sink.send("component-notes", "C00001", b'{"note_id":"N1"}')
    counts = sink.close()
    assert counts.delivered == sent + 1 and counts.failed == 0
    lines = (tmp_path / "battery-telemetry.jsonl").read_bytes().splitlines()
    assert len(lines) == sent
    lab = read_lab_csv(str(tmp_path / "battery-telemetry.csv"))
    jsonl = pd.DataFrame([json.loads(line) for line in lines])
    assert lab["battery_id"].tolist() == jsonl["battery_id"].tolist()
    assert lab["lifetime_cycles_used"].tolist() == jsonl["lifetime_cycles_used"].tolist()
    assert (tmp_path / "component-notes.jsonl").read_text() == '{"note_id":"N1"}\n'


# -- event hubs (test doubles for the SDK) ----------------------------------------------


class FakeEventBatch:
    """Test double of azure.eventhub.EventDataBatch: holds up to `capacity` events."""

    def __init__(self, capacity: int, **target: str) -> None:
        self.capacity, self.target, self.events = capacity, target, []

    def add(self, event: bytes) -> None:
        if len(self.events) >= self.capacity:
            raise ValueError("EventDataBatch has reached its size limit")
        self.events.append(event)


class FakeProducerClient:
    """Test double of EventHubProducerClient; fails the first `failures` sends."""

    def __init__(self, partitions: int = 4, capacity: int = 100, failures: int = 0) -> None:
        self.partitions, self.capacity, self.failures = partitions, capacity, failures
        self.sent: list[FakeEventBatch] = []
        self.closed = False

    def get_partition_ids(self) -> list[str]:
        return [str(i) for i in range(self.partitions)]

    def create_batch(self, **target: str) -> FakeEventBatch:
        return FakeEventBatch(self.capacity, **target)

    def send_batch(self, batch: FakeEventBatch) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError(f"link detached; connection {EH_STRING}")
        self.sent.append(batch)

    def close(self) -> None:
        self.closed = True


def _eventhubs(client: FakeProducerClient, **kwargs) -> EventHubsSink:
    return EventHubsSink(
        EH_STRING,
        client_factory=lambda _cs, _hub: client,
        make_event=lambda value: value,
        sleep=lambda _s: None,
        **kwargs,
    )


def test_eventhubs_batches_per_partition_and_keeps_a_key_on_one_partition() -> None:
    client = FakeProducerClient(partitions=4, capacity=100)
    sink = _eventhubs(client)
    sink.send_batch("battery-telemetry", _batch(1000))
    sink.send_batch("battery-telemetry", _batch(1000))
    counts = sink.close()
    assert counts.delivered == 2000 and counts.failed == 0
    assert all(len(b.events) <= 100 for b in client.sent)
    assert {b.target["partition_id"] for b in client.sent} == {"0", "1", "2", "3"}
    where: dict[bytes, set[str]] = {}
    for b in client.sent:
        for event in b.events:
            where.setdefault(event, set()).add(b.target["partition_id"])
    assert all(len(partitions) == 1 for partitions in where.values())
    assert client.closed


def test_eventhubs_key_mode_uses_partition_keys() -> None:
    client = FakeProducerClient()
    sink = _eventhubs(client, partitioning="key")
    for i in range(5):
        sink.send("component-notes", "C00001" if i < 3 else "C00002", b"{}")
    sink.close()
    assert sorted((b.target["partition_key"], len(b.events)) for b in client.sent) == [
        ("C00001", 3),
        ("C00002", 2),
    ]


def test_eventhubs_retries_a_failed_batch_with_backoff(caplog) -> None:
    client = FakeProducerClient(partitions=1, failures=2)
    sink = _eventhubs(client, attempts=4)
    with caplog.at_level(logging.WARNING):
        sink.send_batch("battery-telemetry", _batch(10))
    assert sink.close().delivered == 10
    assert SECRET not in caplog.text and "Attempt 1/4 failed" in caplog.text


def test_eventhubs_counts_lost_batches_and_turns_unhealthy(caplog) -> None:
    client = FakeProducerClient(partitions=1, failures=100)
    sink = _eventhubs(client, attempts=2)
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            sink.send_batch("battery-telemetry", _batch(10))
    assert not sink.healthy
    counts = sink.close()
    assert counts.delivered == 0 and counts.failed == 30
    assert SECRET not in caplog.text


def test_eventhubs_flushes_pending_single_messages_on_close() -> None:
    client = FakeProducerClient(partitions=2)
    sink = _eventhubs(client)
    sink.send("component-notes", "C00001", b"{}")
    assert client.sent == []
    assert sink.close().delivered == 1


def test_eventhubs_scoped_connection_string_cannot_reach_other_hubs() -> None:
    sink = EventHubsSink(
        EH_STRING + ";EntityPath=battery-telemetry",
        client_factory=lambda _cs, _hub: FakeProducerClient(),
        make_event=lambda v: v,
    )
    sink.check(["battery-telemetry"])
    with pytest.raises(SimulatorError, match="scoped to event hub 'battery-telemetry'"):
        sink.check(["component-notes"])


def test_eventhubs_unreachable_hub_is_one_sentence_without_secret() -> None:
    class Unreachable(FakeProducerClient):
        def get_partition_ids(self) -> list[str]:
            raise ConnectionError(f"cannot resolve host for {EH_STRING}")

    sink = _eventhubs(Unreachable(), attempts=2)
    with pytest.raises(SimulatorError, match="unreachable") as info:
        sink.check(["battery-telemetry"])
    assert SECRET not in str(info.value)


@pytest.mark.parametrize("value", [None, "", "Endpoint=http://x", "HostName=x;SharedAccessKey=y"])
def test_malformed_eventhubs_connection_string_is_rejected(value) -> None:
    with pytest.raises(SimulatorError, match="EH_VAR"):
        check_eventhubs_connection_string(value, "EH_VAR")


def test_emulator_connection_string_is_accepted() -> None:
    emulator = (
        "Endpoint=sb://localhost;SharedAccessKeyName=RootManageSharedAccessKey;"
        "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;"
    )
    assert check_eventhubs_connection_string(emulator, "X") == emulator


# -- iot hub (test doubles for the device SDK) ------------------------------------------


class FakeDeviceClient:
    """Test double of IoTHubDeviceClient: records messages, fails the first `failures`."""

    def __init__(self, car: str, failures: int = 0) -> None:
        self.car, self.failures, self.messages, self.shut = car, failures, [], False

    def send_message(self, message) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("connection dropped")
        self.messages.append(message)

    def shutdown(self) -> None:
        self.shut = True


def test_iothub_sends_each_car_as_its_own_device_with_json_content_type() -> None:
    clients: dict[str, FakeDeviceClient] = {}

    def connect(car: str) -> FakeDeviceClient:
        clients[car] = FakeDeviceClient(car, failures=1 if car == "C00002" else 0)
        return clients[car]

    sink = IoTHubSink(connect, max_open=2, sleep=lambda _s: None)
    batch = _batch(3, prefix="C")
    batch.keys = ["C00001", "C00002", "C00003"]
    sink.send_batch("battery-telemetry", batch)
    counts = sink.close()
    assert counts.delivered == 3 and counts.failed == 0
    message = clients["C00001"].messages[0]
    assert message.content_type == "application/json" and message.content_encoding == "utf-8"
    assert message.custom_properties["topic"] == "battery-telemetry"
    assert clients["C00001"].shut  # evicted: at most two connections open


def test_iothub_counts_a_message_lost_after_retries() -> None:
    sink = IoTHubSink(
        lambda car: FakeDeviceClient(car, failures=99), attempts=2, sleep=lambda _s: None
    )
    sink.send("component-notes", "C00001", b"{}")
    assert sink.close() == type(sink.close())(delivered=0, failed=1)


def test_device_map_parsing_and_coverage(monkeypatch, tmp_path) -> None:
    device = f"HostName=hub.azure-devices.net;DeviceId=C00001;SharedAccessKey={SECRET}"
    assert read_device_map(json.dumps({"C00001": device})) == {"C00001": device}
    path = tmp_path / "devices.json"
    path.write_text(json.dumps({"C00001": device}))
    monkeypatch.setenv(IOTHUB_DEVICES_ENV, str(path))
    sink = IoTHubSink.from_environment()
    sink.check(["C00001"])
    with pytest.raises(SimulatorError, match="no device for 1 of 2 cars"):
        sink.check(["C00001", "C00002"])


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "{not json " + SECRET,
        '["a"]',
        json.dumps({"C1": f"DeviceId=x;SharedAccessKey={SECRET}"}),
    ],
)
def test_bad_device_maps_fail_without_showing_keys(raw) -> None:
    with pytest.raises(SimulatorError) as info:
        read_device_map(raw)
    assert SECRET not in str(info.value)


def test_dps_device_key_is_hmac_of_the_registration_id() -> None:
    import base64
    import hashlib
    import hmac

    group = base64.b64encode(b"group-key").decode()
    expected = base64.b64encode(hmac.new(b"group-key", b"C00001", hashlib.sha256).digest())
    assert derive_device_key(group, "C00001") == expected.decode()
    with pytest.raises(SimulatorError):
        derive_device_key("not base64!", "C00001")


def test_real_iothub_message_carries_routing_headers() -> None:
    message = build_message("battery-telemetry", b'{"a":1}')
    assert message.content_type == "application/json"
    assert message.content_encoding == "utf-8"
