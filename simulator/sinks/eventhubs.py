"""Event Hubs over AMQP (azure-eventhub): batched sends per partition, retried with backoff.

Each topic is an event hub of the namespace in the connection string. Messages are batched
per partition: `partitioning="hash"` maps each key to a partition with a stable hash, so a
battery's readings stay in order on one partition and batches fill up; `"key"` hands the key
to Event Hubs (`create_batch(partition_key=...)`), which is exact but batches only messages
that share a key, so it suits few keys (e.g. notes per car) rather than one reading per
battery per day.
"""

from __future__ import annotations

import logging
import os
import re
import zlib
from collections.abc import Callable
from typing import Any, Literal

from simulator.errors import SimulatorError, redact
from simulator.messages import MessageBatch
from simulator.sinks.base import CountingSink
from simulator.sinks.retry import retry_call

_LOG = logging.getLogger(__name__)

EVENTHUBS_CONNECTION_ENV = "EVENTHUBS_CONNECTION_STRING"
_ENTITY_PATH = re.compile(r"(?:^|;)\s*EntityPath\s*=\s*([^;]+)", re.IGNORECASE)
_UNHEALTHY_AFTER = 3  # consecutive batches lost after all retries


def check_eventhubs_connection_string(value: str | None, source: str) -> str:
    """The connection string, stripped, or a SimulatorError naming `source` (never the value)."""
    value = (value or "").strip()
    if not value:
        raise SimulatorError(
            f"{source} is not set; export it with the Event Hubs namespace connection string."
        )
    emulator = "usedevelopmentemulator=true" in value.lower()
    has_key = "SharedAccessKey" in value or "SharedAccessSignature" in value
    if not value.startswith("Endpoint=sb://") or not (has_key or emulator):
        raise SimulatorError(
            f"The value of {source} is not an Event Hubs connection string (expected "
            "'Endpoint=sb://...;SharedAccessKeyName=...;SharedAccessKey=...')."
        )
    return value


def eventhubs_connection_string(connection_string_env: str | None) -> tuple[str, str]:
    """(connection string, the env var it came from): kafka.connection_string_env or the default."""
    source = connection_string_env or EVENTHUBS_CONNECTION_ENV
    return check_eventhubs_connection_string(os.environ.get(source), source), source


def _default_client_factory(connection_string: str, eventhub: str) -> Any:
    from azure.eventhub import EventHubProducerClient  # noqa: PLC0415 - optional at import

    # The SDK retries each operation a little itself; longer outages are ours to back off.
    return EventHubProducerClient.from_connection_string(
        connection_string, eventhub_name=eventhub, retry_total=2, retry_mode="exponential"
    )


def _make_event(value: bytes) -> Any:
    from azure.eventhub import EventData  # noqa: PLC0415

    event = EventData(value)
    event.content_type = "application/json"
    return event


class EventHubsSink(CountingSink):
    """Sends batches to one event hub per topic, retrying a failed batch with backoff."""

    name = "eventhubs"

    def __init__(
        self,
        connection_string: str,
        *,
        partitioning: Literal["hash", "key"] = "hash",
        attempts: int = 4,
        backoff_s: float = 1.0,
        client_factory: Callable[[str, str], Any] = _default_client_factory,
        make_event: Callable[[bytes], Any] = _make_event,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        super().__init__()
        if partitioning not in ("hash", "key"):
            raise SimulatorError(f"partitioning must be 'hash' or 'key', not {partitioning!r}.")
        self._secret = connection_string
        match = _ENTITY_PATH.search(connection_string)
        self._entity = match.group(1).strip() if match else None
        self._partitioning = partitioning
        self._attempts = attempts
        self._backoff_s = backoff_s
        self._client_factory = client_factory
        self._make_event = make_event
        self._sleep = sleep
        self._clients: dict[str, Any] = {}
        self._partitions: dict[str, list[str]] = {}
        self._pending: dict[str, list[tuple[str, bytes]]] = {}
        self._lost_in_a_row = 0
        self.batches_sent = 0

    @property
    def healthy(self) -> bool:
        return self._lost_in_a_row < _UNHEALTHY_AFTER

    def check(self, topics: list[str]) -> None:
        """Connect to every topic's event hub now, so a bad namespace fails before the run."""
        for topic in topics:
            self._partition_ids(topic)

    def send(self, topic: str, key: str, value: bytes) -> None:
        self._pending.setdefault(topic, []).append((key, value))

    def send_batch(self, topic: str, batch: MessageBatch) -> None:
        self._send_grouped(topic, list(zip(batch.keys, batch.values, strict=True)))

    def flush(self, timeout_s: float | None = None) -> None:
        pending, self._pending = self._pending, {}
        for topic, items in pending.items():
            self._send_grouped(topic, items)

    def close(self):
        try:
            self.flush()
        finally:
            for client in self._clients.values():
                try:
                    client.close()
                except Exception as exc:  # noqa: BLE001 - closing must not hide the counts
                    _LOG.warning("Closing an Event Hubs client failed: %s", self._describe(exc))
            self._clients.clear()
        return super().close()

    # -- internals ----------------------------------------------------------------------

    def _describe(self, exc: BaseException) -> str:
        return redact(f"{type(exc).__name__}: {exc}", (self._secret,))

    def _client(self, topic: str) -> Any:
        if topic not in self._clients:
            if self._entity is not None and self._entity != topic:
                raise SimulatorError(
                    f"The Event Hubs connection string is scoped to event hub {self._entity!r}, "
                    f"so it cannot send to {topic!r}; use a namespace-level connection string."
                )
            try:
                self._clients[topic] = self._client_factory(self._secret, topic)
            except Exception as exc:  # noqa: BLE001 - SDK raises many types; message is redacted
                raise SimulatorError(
                    f"Could not create an Event Hubs producer for {topic!r} "
                    f"({self._describe(exc)})."
                ) from None
        return self._clients[topic]

    def _partition_ids(self, topic: str) -> list[str]:
        if topic not in self._partitions:
            client = self._client(topic)
            try:
                ids = retry_call(
                    client.get_partition_ids,
                    attempts=self._attempts,
                    retry_on=(Exception,),
                    describe=self._describe,
                    base_s=self._backoff_s,
                    **self._sleep_kw(),
                )
            except Exception as exc:  # noqa: BLE001
                raise SimulatorError(
                    f"Event hub {topic!r} is unreachable ({self._describe(exc)}); check the "
                    "namespace, the event hub name and the connection string's rights."
                ) from None
            self._partitions[topic] = [str(i) for i in ids]
        return self._partitions[topic]

    def _sleep_kw(self) -> dict[str, Any]:
        return {} if self._sleep is None else {"sleep": self._sleep}

    def _send_grouped(self, topic: str, items: list[tuple[str, bytes]]) -> None:
        if not items:
            return
        groups: dict[tuple[str, str], list[bytes]] = {}
        if self._partitioning == "hash":
            ids = self._partition_ids(topic)
            for key, value in items:
                pid = ids[zlib.crc32(key.encode("utf-8")) % len(ids)]
                groups.setdefault(("partition_id", pid), []).append(value)
        else:
            for key, value in items:
                groups.setdefault(("partition_key", key), []).append(value)
        for (kind, target), values in groups.items():
            self._send_values(topic, kind, target, values)

    def _send_values(self, topic: str, kind: str, target: str, values: list[bytes]) -> None:
        client = self._client(topic)
        batch, count = client.create_batch(**{kind: target}), 0
        for value in values:
            event = self._make_event(value)
            try:
                batch.add(event)
            except ValueError:
                # Batch full (size limit): ship it and start the next one with this event.
                self._ship(client, topic, batch, count)
                batch, count = client.create_batch(**{kind: target}), 0
                batch.add(event)
            count += 1
        if count:
            self._ship(client, topic, batch, count)

    def _ship(self, client: Any, topic: str, batch: Any, count: int) -> None:
        try:
            retry_call(
                lambda: client.send_batch(batch),
                attempts=self._attempts,
                retry_on=(Exception,),
                describe=self._describe,
                base_s=self._backoff_s,
                **self._sleep_kw(),
            )
        except Exception as exc:  # noqa: BLE001 - counted, logged redacted, run goes on
            self.failed += count
            self._lost_in_a_row += 1
            _LOG.error(
                "Lost a batch of %d events to %s after %d attempts: %s",
                count,
                topic,
                self._attempts,
                self._describe(exc),
            )
            return
        self.delivered += count
        self.batches_sent += 1
        self._lost_in_a_row = 0
