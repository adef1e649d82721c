"""What every sink offers the run loop, and the counts it hands back when closed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from simulator.messages import MessageBatch


@dataclass(frozen=True)
class DeliveryCounts:
    """Messages the destination acknowledged, and those it did not (failed or never confirmed)."""

    delivered: int
    failed: int


@runtime_checkable
class Sink(Protocol):
    """A destination for encoded messages.

    `send_batch` is the hot path (a slice of one day's readings); `healthy` turns False
    when the destination has stopped accepting messages for good, so the run can end early
    with an honest count instead of generating into the void.
    """

    name: str

    def send(self, topic: str, key: str, value: bytes) -> None:
        """Queue one message for `topic`, keyed by `key`."""

    def send_batch(self, topic: str, batch: MessageBatch) -> None:
        """Queue a batch of messages for `topic`."""

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait until queued messages are delivered or failed (or `timeout_s` passes)."""

    def close(self) -> DeliveryCounts:
        """Flush, release the connection, and return what was and was not delivered."""

    @property
    def healthy(self) -> bool:
        """False once the destination is known to be gone."""


class CountingSink:
    """Shared bookkeeping; subclasses implement `_deliver` for one message at a time."""

    name = "base"

    def __init__(self) -> None:
        self.delivered = 0
        self.failed = 0

    @property
    def healthy(self) -> bool:
        return True

    def send(self, topic: str, key: str, value: bytes) -> None:
        self._deliver(topic, key, value)

    def send_batch(self, topic: str, batch: MessageBatch) -> None:
        for key, value in zip(batch.keys, batch.values, strict=True):
            self._deliver(topic, key, value)

    def flush(self, timeout_s: float | None = None) -> None:
        return None

    def close(self) -> DeliveryCounts:
        self.flush()
        return DeliveryCounts(self.delivered, self.failed)

    def _deliver(self, topic: str, key: str, value: bytes) -> None:
        raise NotImplementedError


class NullSink(CountingSink):
    """Discards everything (counted as delivered): measures generation alone."""

    name = "null"

    def send_batch(self, topic: str, batch: MessageBatch) -> None:
        self.delivered += len(batch)

    def _deliver(self, topic: str, key: str, value: bytes) -> None:
        self.delivered += 1
