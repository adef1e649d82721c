"""Where one broker keeps its files (data dir layout), and the lock that serialises its starts."""

from __future__ import annotations

import contextlib
import fcntl
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from core.config import PitstopConfig


@dataclass(frozen=True)
class BrokerFiles:
    """Where one broker keeps its files."""

    root: Path

    @property
    def props(self) -> Path:
        return self.root / "server.properties"

    @property
    def log4j(self) -> Path:
        return self.root / "log4j2.properties"

    @property
    def pid_file(self) -> Path:
        return self.root / "broker.pid"

    @property
    def lock(self) -> Path:
        return self.root / ".broker.lock"

    @property
    def kraft(self) -> Path:
        return self.root / "kraft"

    @property
    def pending_archive(self) -> Path:
        return self.root / "classes-pending.jsa"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def server_log(self) -> Path:
        return self.logs / "server.log"

    @property
    def stdout_log(self) -> Path:
        return self.logs / "stdout.log"


def resolve_data_dir(cfg: PitstopConfig, data_dir: Path | None) -> Path:
    """`data_dir`, else the project's `<home>/broker`, as an absolute path."""
    return (Path(data_dir) if data_dir is not None else Path(cfg.home) / "broker").resolve()


@contextlib.contextmanager
def exclusive(lock_path: Path) -> Iterator[None]:
    """Serialise starts (and resolves) of the same folder across processes."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def configured_endpoint(props: Path) -> tuple[str, int, int] | None:
    """(host, port, controller_port) from a server.properties we wrote, if there is one."""
    try:
        text = props.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    match = re.search(r"^listeners=(.*)$", text, flags=re.MULTILINE)
    if match is None:
        return None
    endpoints = {
        name: (host, int(port))
        for name, host, port in re.findall(r"(\w+)://([^,]*):(\d+)", match.group(1))
    }
    if "PLAINTEXT" not in endpoints or "CONTROLLER" not in endpoints:
        return None
    return endpoints["PLAINTEXT"][0], endpoints["PLAINTEXT"][1], endpoints["CONTROLLER"][1]
