"""Kafka client settings (librdkafka) for the local broker or Event Hubs' Kafka endpoint.

One place knows how Pitstop's configuration becomes client settings: the simulator's
producer, the stream's alert publisher and the local broker's admin client all build theirs
here. Event Hubs gets SASL_SSL/PLAIN with the connection string as password and Microsoft's
timeouts; the secret is returned beside the settings so callers can redact it from errors.
"""

from __future__ import annotations

import logging
from typing import Any

from core.config import KafkaConfig

# Microsoft's client guidance for the Event Hubs Kafka endpoint.
EVENT_HUBS_OPTIONS: dict[str, Any] = {
    "request.timeout.ms": 60000,
    "metadata.max.age.ms": 180000,
    # Azure closes idle connections after 240 s; close ours first.
    "connections.max.idle.ms": 180000,
    # Event Hubs rejects requests of 1,046,528 bytes or more.
    "message.max.bytes": 1000000,
    "socket.keepalive.enable": True,
    # The endpoint has no idempotent producer and compression is tier-dependent.
    "enable.idempotence": False,
    "compression.type": "none",
}
# Consumer-only keys that may sit in kafka.client_options for the Spark source.
_CONSUMER_ONLY = {"session.timeout.ms", "group.id", "auto.offset.reset", "max.poll.interval.ms"}
# The keys that say where and how to connect (no producer or consumer tuning).
_CONNECTION_PREFIXES = ("bootstrap", "security", "sasl", "ssl", "socket", "client")


def producer_config(
    kafka: KafkaConfig,
    *,
    bootstrap_servers: str | None = None,
    message_timeout_ms: int = 60000,
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """librdkafka settings for `kafka` and the secrets they contain (to redact from errors).

    Locally: idempotent, lz4, large batches. Event Hubs: SASL_SSL/PLAIN with the connection
    string as password and Microsoft's timeouts. `message_timeout_ms` bounds how long a
    message is retried (e.g. while a broker restarts) before it counts as failed.
    """
    conf: dict[str, Any] = {
        "bootstrap.servers": bootstrap_servers or kafka.bootstrap_servers,
        "client.id": "pitstop-simulator",
        "acks": "all",
        "enable.idempotence": True,
        "compression.type": "lz4",
        # Throughput: fill big batches; a few ms of latency is irrelevant for a simulator.
        "linger.ms": 25,
        "batch.size": 1000000,
        "batch.num.messages": 20000,
        # Bound the client's queue so a slow broker applies back-pressure, not RAM growth.
        "queue.buffering.max.messages": 400000,
        "queue.buffering.max.kbytes": 262144,
        "message.timeout.ms": message_timeout_ms,
        "retry.backoff.ms": 200,
        "retry.backoff.max.ms": 5000,
        "socket.connection.setup.timeout.ms": 10000,
    }
    secrets: tuple[str, ...] = ()
    connection_string = kafka.connection_string()
    if kafka.security_protocol != "PLAINTEXT":
        conf["security.protocol"] = kafka.security_protocol
    if kafka.sasl_mechanism:
        conf["sasl.mechanisms"] = kafka.sasl_mechanism
    if connection_string is not None:
        secret = connection_string.get_secret_value()
        conf.update(EVENT_HUBS_OPTIONS)
        conf["sasl.username"] = "$ConnectionString"
        conf["sasl.password"] = secret
        conf.setdefault("security.protocol", "SASL_SSL")
        conf.setdefault("sasl.mechanisms", "PLAIN")
        secrets = (secret,)
    for key, value in kafka.client_options.items():
        key = key.removeprefix("kafka.")
        if key not in _CONSUMER_ONLY:
            conf[key] = value
    return conf, secrets


def connection_config(kafka: KafkaConfig) -> dict[str, Any]:
    """Only the settings that reach the cluster (address, security, SASL, sockets), for a
    consumer or admin client that shares the producer's way in."""
    conf, _secrets = producer_config(kafka)
    return {k: v for k, v in conf.items() if k.startswith(_CONNECTION_PREFIXES)}


class DebugLog:
    """A librdkafka `logger` that demotes the client's own lines to DEBUG on `name`.

    A down or starting broker is reported once by the caller, not as a line per reconnect
    attempt ("connection refused" while waiting is expected).
    """

    def __init__(self, name: str) -> None:
        self._logger = logging.getLogger(name)

    def log(self, _level: int, message: str, *args: object) -> None:
        """librdkafka's callback: one log line of the client."""
        self._logger.debug(message, *args)
