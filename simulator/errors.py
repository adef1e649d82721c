"""The one error the simulator raises for bad input or an unusable destination."""

from __future__ import annotations

import re

from core.errors import PitstopError

# Connection strings carry their secret in SharedAccessKey (Event Hubs, IoT Hub) or as a
# whole SharedAccessSignature; a client library may echo either in an exception message.
_SECRET_PATTERNS = (
    re.compile(r"(SharedAccessKey\s*=\s*)[^;\s'\"]+", re.IGNORECASE),
    re.compile(r"(SharedAccessSignature\s*=?\s*)[^;'\"]+", re.IGNORECASE),
    re.compile(r"(sig=)[^&;\s'\"]+", re.IGNORECASE),
)


class SimulatorError(PitstopError, ValueError):
    """Bad simulator input or an unreachable destination; the message is one sentence."""


def redact(text: str, secrets: tuple[str, ...] | list[str] = ()) -> str:
    """`text` with every known secret and anything shaped like an access key replaced by ***."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(r"\1***", text)
    return text
