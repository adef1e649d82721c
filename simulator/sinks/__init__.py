"""Where simulated messages go: Kafka, Event Hubs (AMQP), IoT Hub, files, or nowhere."""

from __future__ import annotations

from pathlib import Path

from core.config import ConfigError, PitstopConfig
from simulator.errors import SimulatorError
from simulator.sinks.base import CountingSink, DeliveryCounts, NullSink, Sink

SINK_NAMES: tuple[str, ...] = ("kafka", "eventhubs", "iothub", "files", "null")

__all__ = ["SINK_NAMES", "CountingSink", "DeliveryCounts", "Sink", "make_sink"]


def make_sink(
    name: str,
    cfg: PitstopConfig,
    *,
    output_dir: Path,
    message_timeout_s: float = 60.0,
) -> Sink:
    """Build the sink called `name` from the configuration; bad names or secrets raise.

    kafka: `cfg.kafka` (local broker, or Event Hubs' Kafka endpoint when
    `kafka.connection_string_env` is set). eventhubs: AMQP with the connection string from
    `kafka.connection_string_env`, else $EVENTHUBS_CONNECTION_STRING. iothub: device
    identities from the environment (see simulator.sinks.iothub). files: JSONL and lab CSV
    under `output_dir`. null: discards (benchmarks).
    """
    if name == "files":
        from simulator.sinks.files import FilesSink  # noqa: PLC0415

        return FilesSink(output_dir)
    if name == "null":
        return NullSink()
    if name == "kafka":
        from core.kafka_clients import producer_config  # noqa: PLC0415
        from simulator.sinks.kafka import KafkaSink  # noqa: PLC0415

        try:
            conf, secrets = producer_config(
                cfg.kafka, message_timeout_ms=int(message_timeout_s * 1000)
            )
        except ConfigError as exc:
            raise SimulatorError(str(exc)) from None
        return KafkaSink(conf, secrets=secrets)
    if name == "eventhubs":
        from simulator.sinks.eventhubs import (  # noqa: PLC0415
            EventHubsSink,
            eventhubs_connection_string,
        )

        connection_string, _source = eventhubs_connection_string(cfg.kafka.connection_string_env)
        return EventHubsSink(connection_string)
    if name == "iothub":
        from simulator.sinks.iothub import IoTHubSink  # noqa: PLC0415

        return IoTHubSink.from_environment()
    raise SimulatorError(f"Unknown sink {name!r}; choose one of {', '.join(SINK_NAMES)}.")
