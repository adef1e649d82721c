"""Kafka producer sink: the local broker, or Event Hubs' Kafka endpoint (SASL_SSL + PLAIN)."""

from __future__ import annotations

import logging
import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from core.kafka_clients import DebugLog
from simulator.errors import SimulatorError, redact
from simulator.messages import MessageBatch
from simulator.sinks.base import CountingSink, DeliveryCounts

_LOG = logging.getLogger(__name__)

_POLL_EVERY = 5000


class KafkaSink(CountingSink):
    """Produces keyed messages; delivery callbacks count what the broker acknowledged."""

    name = "kafka"

    def __init__(self, conf: dict[str, Any], *, secrets: tuple[str, ...] = ()) -> None:
        super().__init__()
        self._secrets = secrets
        self._bootstrap = str(conf.get("bootstrap.servers", "?"))
        self._timeout_s = float(conf.get("message.timeout.ms", 300000)) / 1000.0
        self.errors: dict[str, int] = {}
        self._last_error = ""
        self._last_progress = time.monotonic()
        self._queued = 0
        settings = dict(conf)
        settings["error_cb"] = self._on_error
        settings["logger"] = DebugLog("simulator.sinks.librdkafka")
        try:
            self._producer = Producer(settings)
        except (KafkaException, ValueError, TypeError) as exc:
            raise SimulatorError(
                f"The Kafka producer settings are invalid: {redact(str(exc), secrets)}."
            ) from None

    # -- checks -------------------------------------------------------------------------

    def check(self, topics: list[str], timeout_s: float = 10.0) -> None:
        """Fail with one sentence unless the cluster answers; warn about missing topics."""
        try:
            metadata = self._producer.list_topics(timeout=timeout_s)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else exc
            text = error.str() if isinstance(error, KafkaError) else str(error)
            reason = redact(text, self._secrets)
            raise SimulatorError(
                f"Kafka at {self._bootstrap} is unreachable ({reason}); start it with "
                "`pitstop broker start` or fix kafka.bootstrap_servers."
            ) from None
        for topic in topics:
            entry = metadata.topics.get(topic)
            if entry is None or entry.error is not None:
                _LOG.warning(
                    "Topic %s does not exist at %s; relying on the broker to create it",
                    topic,
                    self._bootstrap,
                )

    # -- sending ------------------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        """False when nothing was acknowledged for longer than the message timeout."""
        stalled = time.monotonic() - self._last_progress > self._timeout_s + 5.0
        return not (stalled and self.failed > 0 and self._queued > 0)

    def send(self, topic: str, key: str, value: bytes) -> None:
        self._produce(topic, key, value)
        self._producer.poll(0)

    def send_batch(self, topic: str, batch: MessageBatch) -> None:
        produce = self._produce
        for i, (key, value) in enumerate(zip(batch.keys, batch.values, strict=True)):
            produce(topic, key, value)
            if i % _POLL_EVERY == 0:
                self._producer.poll(0)
        self._producer.poll(0)

    def flush(self, timeout_s: float | None = None) -> None:
        self._producer.flush(self._timeout_s + 5.0 if timeout_s is None else timeout_s)

    def close(self) -> DeliveryCounts:
        remaining = self._producer.flush(self._timeout_s + 5.0)
        # Whatever is still queued was never confirmed: count it as not delivered.
        self.failed += remaining
        self._queued -= remaining
        if self.errors:
            _LOG.warning("Kafka delivery errors: %s", self.errors)
        return DeliveryCounts(self.delivered, self.failed)

    def _produce(self, topic: str, key: str, value: bytes) -> None:
        while True:
            try:
                self._producer.produce(topic, value, key, on_delivery=self._on_delivery)
                self._queued += 1
                return
            except BufferError:
                # The client's queue is full (slow or absent broker): serve callbacks, retry.
                self._producer.poll(0.1)
                if not self.healthy:
                    self.failed += 1
                    return
            except KafkaException as exc:
                self.failed += 1
                self._count(redact(str(exc.args[0]), self._secrets))
                return

    def _on_delivery(self, err: KafkaError | None, _msg: object) -> None:
        self._queued -= 1
        if err is None:
            self.delivered += 1
            self._last_progress = time.monotonic()
        else:
            self.failed += 1
            self._count(err.name())

    def _on_error(self, err: KafkaError) -> None:
        self._last_error = redact(err.str(), self._secrets)
        if err.code() == KafkaError._ALL_BROKERS_DOWN:
            _LOG.warning(
                "Kafka at %s is down; each message is retried for up to %.0f s",
                self._bootstrap,
                self._timeout_s,
            )
        else:
            _LOG.debug("Kafka client error: %s", self._last_error)
        if err.fatal():
            self._count(f"fatal:{err.name()}")

    def _count(self, reason: str) -> None:
        self.errors[reason] = self.errors.get(reason, 0) + 1
