"""The broker's one error type, and how a tool's output is boiled down to the line that says why."""

from __future__ import annotations

import re
from pathlib import Path

from core.errors import PitstopError

_EXCEPTION_LINE = re.compile(r"^(?:Caused by: )?[\w.$]+(?:Exception|Error): ")
_MAX_REASON = 240  # characters of a tool's error line quoted in a BrokerError


class BrokerError(PitstopError, RuntimeError):
    """The local broker could not be set up, started, stopped or reached; says what to fix."""


def last_error_line(output: str) -> str:
    """The telling line of a tool's output: an exception, else an error, else the last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    exceptions = [line for line in lines if _EXCEPTION_LINE.match(line)]
    errors = [line for line in lines if "ERROR" in line or "rror:" in line]
    line = (exceptions or errors or [lines[-1] if lines else "no output"])[0]
    line = re.sub(r"^\[ERROR\]\s*", "", line)
    return line if len(line) <= _MAX_REASON else line[: _MAX_REASON - 3] + "..."


def tail(path: Path, size: int = 8192) -> str:
    """The last `size` bytes of a log file as text (empty when there is none)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, path.stat().st_size - size))
            return handle.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""
