"""Finding a Java runtime the broker (and Maven) can run on."""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from pathlib import Path

from broker.errors import BrokerError

KAFKA_VERSION = "4.2.0"
MIN_JAVA = 17


def parse_java_major(version_output: str) -> int | None:
    """The major version in `java -version` output (`"1.8.0_402"` -> 8, `"17.0.15"` -> 17)."""
    match = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if match is None:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


@functools.lru_cache(maxsize=4)
def _java_major(java: str) -> int | None:
    try:
        result = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_java_major(result.stderr + result.stdout)


def find_java() -> str:
    """`$JAVA_HOME/bin/java` if set, else `java` on PATH, as Kafka's own scripts choose it."""
    java_home = os.environ.get("JAVA_HOME")
    candidate = Path(java_home) / "bin" / "java" if java_home else None
    java = str(candidate) if candidate and candidate.is_file() else shutil.which("java")
    if java is None:
        raise BrokerError(
            f"Java is not installed; put a JDK {MIN_JAVA}+ `java` on PATH (or set JAVA_HOME) to "
            "run the local Kafka broker."
        )
    major = _java_major(java)
    if major is not None and major < MIN_JAVA:
        raise BrokerError(
            f"{java} is Java {major}, but Kafka {KAFKA_VERSION} needs Java {MIN_JAVA} or newer; "
            "install a newer JDK and point JAVA_HOME at it."
        )
    return java
