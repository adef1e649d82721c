"""The Azure SDK sinks' retry policy on tenacity: capped exponential backoff with jitter."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

_LOG = logging.getLogger(__name__)
T = TypeVar("T")


def retry_call(
    action: Callable[[], T],
    *,
    attempts: int,
    retry_on: tuple[type[BaseException], ...],
    describe: Callable[[BaseException], str] = str,
    base_s: float = 0.5,
    cap_s: float = 30.0,
    jitter: float = 0.2,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> T:
    """Call `action` until it succeeds or `attempts` tries failed; re-raise the last error.

    The waits double from `base_s` up to `cap_s`, each off by up to +-`jitter` of itself so
    many senders do not retry in step. `describe` renders an error for the log (sinks pass
    a redacting one: SDK errors can quote a connection string).
    """
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    rng = rng or random.Random()
    exponential = wait_exponential(multiplier=base_s, max=cap_s)

    def wait(state: RetryCallState) -> float:
        return max(0.0, exponential(state) * (1.0 + rng.uniform(-jitter, jitter)))

    def warn(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        delay = state.next_action.sleep if state.next_action else 0.0
        _LOG.warning(
            "Attempt %d/%d failed (%s); retrying in %.1f s",
            state.attempt_number,
            attempts,
            describe(error) if error is not None else "?",
            delay,
        )

    retrying = Retrying(
        stop=stop_after_attempt(attempts),
        wait=wait,
        retry=retry_if_exception_type(retry_on),
        before_sleep=warn,
        sleep=sleep,
        reraise=True,
    )
    return retrying(action)
