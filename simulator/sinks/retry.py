"""Retry with capped exponential backoff and jitter, for the Azure SDK sinks."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

_LOG = logging.getLogger(__name__)
T = TypeVar("T")


def backoff_delays(
    attempts: int,
    base_s: float = 0.5,
    cap_s: float = 30.0,
    jitter: float = 0.2,
    rng: random.Random | None = None,
) -> Iterator[float]:
    """The waits between `attempts` tries: base * 2^k, capped, each +-`jitter` share."""
    rng = rng or random.Random()
    for k in range(max(attempts - 1, 0)):
        delay = min(cap_s, base_s * 2**k)
        yield max(0.0, delay * (1.0 + rng.uniform(-jitter, jitter)))


def retry_call(
    action: Callable[[], T],
    *,
    attempts: int,
    retry_on: tuple[type[BaseException], ...],
    describe: Callable[[BaseException], str] = str,
    base_s: float = 0.5,
    cap_s: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> T:
    """Call `action` until it succeeds or `attempts` tries failed; re-raise the last error.

    `describe` renders an error for the log (sinks pass a redacting one: SDK errors can
    quote a connection string).
    """
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    delays = backoff_delays(attempts, base_s, cap_s, rng=rng)
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except retry_on as exc:
            if attempt == attempts:
                raise
            delay = next(delays)
            _LOG.warning(
                "Attempt %d/%d failed (%s); retrying in %.1f s",
                attempt,
                attempts,
                describe(exc),
                delay,
            )
            sleep(delay)
    raise AssertionError("unreachable")
