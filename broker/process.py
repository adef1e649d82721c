"""Start, stop and ask about the local broker of a data dir (default ``<home>/broker``).

It stands in for Event Hubs on a machine without Docker. Kafka's jars come from Maven Central,
one JVM plays broker and controller, and everything it writes (data, logs, pid file) lives in
one data dir, so tests can run a second broker beside the project's.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from broker.errors import BrokerError
from broker.files import BrokerFiles, configured_endpoint, exclusive, resolve_data_dir
from broker.jars import adopt_class_archive, ensure_broker_jars
from broker.java import KAFKA_VERSION, find_java
from broker.jvm import BrokerHandle, exit_check, launch_new, read_broker_pid, terminate
from broker.topics import admin_client, answers, ensure_topics, list_topics
from core.config import PitstopConfig

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class BrokerStatus:
    """What `broker_status` found for one data dir."""

    running: bool
    pid: int | None
    bootstrap: str
    data_dir: Path
    log_path: Path
    reachable: bool = False
    topics: dict[str, int] = field(default_factory=dict)


def start_broker(
    cfg: PitstopConfig,
    data_dir: Path | None = None,
    port: int | None = None,
    controller_port: int | None = None,
    topics: Mapping[str, int] | None = None,
) -> BrokerHandle:
    """Start the local broker (or return the one already running for `data_dir`) with its topics."""
    java = find_java()
    host = cfg.broker.host
    port = cfg.broker.port if port is None else port
    controller_port = cfg.broker.controller_port if controller_port is None else controller_port
    topics = dict(cfg.broker.partitions) if topics is None else dict(topics)
    timeout_s = cfg.broker.start_timeout_s
    layout = BrokerFiles(resolve_data_dir(cfg, data_dir))
    layout.root.mkdir(parents=True, exist_ok=True)

    with exclusive(layout.lock):
        running = _running_handle(layout)
        if running is None:
            lib = ensure_broker_jars(Path(cfg.home))
            running = launch_new(java, lib, layout, (host, port, controller_port))
        elif running.port != port or running.controller_port != controller_port:
            raise BrokerError(
                f"The broker of {layout.root} already runs on ports {running.port}/"
                f"{running.controller_port} (pid {running.pid}); stop it first to use "
                f"{port}/{controller_port}."
            )
        else:
            _LOG.info("Kafka broker already running (pid %d) on %s", running.pid, running.bootstrap)

    if running.reused:
        _wait_until_up(
            running.bootstrap,
            timeout_s,
            lambda: None,
            running.log_path,
            f"The Kafka broker pid {running.pid} of {layout.root} runs but",
        )
    else:
        started = time.monotonic()
        try:
            _wait_until_up(
                running.bootstrap,
                timeout_s,
                exit_check(running.pid, layout),
                running.log_path,
                "Kafka",
            )
        except BrokerError:
            with contextlib.suppress(BrokerError):  # the start failure is the news
                terminate(running.pid, 10.0)
            layout.pid_file.unlink(missing_ok=True)
            layout.pending_archive.unlink(missing_ok=True)
            raise
        _LOG.info(
            "Kafka %s up on %s in %.1f s (pid %d, log %s)",
            KAFKA_VERSION,
            running.bootstrap,
            time.monotonic() - started,
            running.pid,
            running.log_path,
        )
    ensure_topics(running.bootstrap, topics, timeout_s)
    return running


def stop_broker(cfg: PitstopConfig, data_dir: Path | None = None, timeout_s: float = 30.0) -> bool:
    """Stop the broker recorded in `data_dir`'s pid file; False if none was running."""
    layout = BrokerFiles(resolve_data_dir(cfg, data_dir))
    pid = read_broker_pid(layout.root)
    if pid is None:
        _LOG.info("No Pitstop Kafka broker is running for %s", layout.root)
        return False
    _LOG.info("Stopping Kafka broker pid %d", pid)
    clean = terminate(pid, timeout_s)
    layout.pid_file.unlink(missing_ok=True)
    adopt_class_archive(layout, Path(cfg.home) / "broker" / "lib", complete=clean)
    return True


def broker_status(cfg: PitstopConfig, data_dir: Path | None = None) -> BrokerStatus:
    """Whether the broker of `data_dir` runs, where, and its topics if it answers."""
    layout = BrokerFiles(resolve_data_dir(cfg, data_dir))
    endpoint = configured_endpoint(layout.props)
    host, port = (endpoint[0], endpoint[1]) if endpoint else (cfg.broker.host, cfg.broker.port)
    bootstrap = f"{host}:{port}"
    pid = read_broker_pid(layout.root)
    if pid is None:
        return BrokerStatus(False, None, bootstrap, layout.root, layout.server_log)
    try:
        topics = list_topics(bootstrap, timeout_s=5.0)
    except BrokerError:
        return BrokerStatus(True, pid, bootstrap, layout.root, layout.server_log)
    return BrokerStatus(True, pid, bootstrap, layout.root, layout.server_log, True, topics)


def _running_handle(layout: BrokerFiles) -> BrokerHandle | None:
    pid = read_broker_pid(layout.root)
    endpoint = configured_endpoint(layout.props)
    if pid is None or endpoint is None:
        return None
    host, port, controller_port = endpoint
    return BrokerHandle(host, port, controller_port, pid, layout.root, layout.server_log, True)


def _wait_until_up(
    bootstrap: str, timeout_s: float, check: Callable[[], None], log_path: Path, subject: str
) -> None:
    admin = admin_client(bootstrap)
    deadline = time.monotonic() + timeout_s
    while not answers(admin, deadline):
        check()
        if time.monotonic() >= deadline:
            raise BrokerError(
                f"{subject} did not answer on {bootstrap} within {timeout_s:g} s; see {log_path}."
            )
        time.sleep(0.2)
