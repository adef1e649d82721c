"""The broker's JVM as a process: format its storage, launch it, find it by pid, stop it.

Only a live JVM running kafka.Kafka on a data dir's own properties file counts as that data
dir's broker, so a stale pid file never leads to signalling some other process.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from broker.errors import BrokerError, last_error_line, tail
from broker.files import BrokerFiles
from broker.jars import class_archive_options
from broker.properties import new_cluster_id, render_log4j2_config, render_server_properties

_LOG = logging.getLogger(__name__)

MAIN_CLASS = "kafka.Kafka"
_STORAGE_TOOL = "kafka.tools.StorageTool"
# A local broker holds little data; a small heap leaves room for Spark on a laptop.
_JVM_OPTIONS = ("-Xms128m", "-Xmx512m", "-XX:+UseG1GC", "-Djava.awt.headless=true")

# The broker's child processes, kept so stop_broker can reap them (a zombie looks alive).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class BrokerHandle:
    """A running local broker."""

    host: str
    port: int
    controller_port: int
    pid: int
    data_dir: Path
    log_path: Path
    reused: bool = False  # True when start_broker found it already running

    @property
    def bootstrap(self) -> str:
        """The `host:port` clients connect to."""
        return f"{self.host}:{self.port}"


def port_holder(host: str, port: int) -> str | None:
    """None when `host:port` is free to listen on, else a description of who holds it."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror:
        raise BrokerError(f"broker.host {host!r} does not resolve; set it to 127.0.0.1.") from None
    with socket.socket(family, kind, proto) as probe:
        # Like the JVM's server sockets: TIME_WAIT leftovers of a stopped broker do not count.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRNOTAVAIL:
                raise BrokerError(
                    f"broker.host {host!r} is not an address of this machine; set it to 127.0.0.1."
                ) from None
            if exc.errno != errno.EADDRINUSE:
                raise
            return _describe_listener(port)
    return None


def read_broker_pid(data_dir: Path) -> int | None:
    """The pid of the Kafka broker running for `data_dir`, or None (a stale pid file is removed)."""
    layout = BrokerFiles(Path(data_dir).resolve())
    try:
        pid = int(layout.pid_file.read_text(encoding="utf-8").strip())
    except FileNotFoundError:
        return None
    except ValueError:
        pid = -1
    if pid > 0 and _is_our_broker(pid, layout):
        return pid
    _LOG.info(
        "Removing stale pid file %s (no Kafka broker of this data dir runs as pid %s)",
        layout.pid_file,
        pid,
    )
    layout.pid_file.unlink(missing_ok=True)
    return None


def _describe_listener(port: int) -> str:
    try:
        connections = psutil.net_connections(kind="inet")
    except (psutil.AccessDenied, OSError):
        return "another process"
    owners = [
        c.pid
        for c in connections
        if c.laddr
        and c.laddr.port == port
        and c.pid is not None
        and c.status in (psutil.CONN_LISTEN, psutil.CONN_NONE)
    ]
    if not owners:
        return "another process"
    pid = owners[0]
    try:
        process = psutil.Process(pid)
        if MAIN_CLASS in process.cmdline():
            return f"another Kafka broker (pid {pid})"
        return f"pid {pid} ({process.name()})"
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return f"pid {pid}"


def _is_our_broker(pid: int, layout: BrokerFiles) -> bool:
    """Only a live JVM running kafka.Kafka on this data dir's properties is ours to signal."""
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        _CHILDREN.pop(pid, None)
        return False
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        cmdline = process.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
    return MAIN_CLASS in cmdline and str(layout.props) in cmdline


def _format_storage_once(java: str, lib: Path, layout: BrokerFiles) -> None:
    """Format the KRaft log dir on first start; formatting again would be refused anyway."""
    if (layout.kraft / "meta.properties").is_file():
        return
    cluster_id = new_cluster_id()
    command = [
        java,
        "-Xmx256m",
        *class_archive_options(lib, layout, record=False),
        f"-Dlog4j2.configurationFile={layout.log4j}",
        "-cp",
        str(lib / "*"),
        _STORAGE_TOOL,
        "format",
        "--standalone",
        "-t",
        cluster_id,
        "-c",
        str(layout.props),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        raise BrokerError(
            f"Formatting Kafka storage in {layout.kraft} failed "
            f"({last_error_line(result.stdout + chr(10) + result.stderr)}); delete that folder "
            "and start again."
        )
    _LOG.info("Formatted Kafka storage in %s (cluster id %s)", layout.kraft, cluster_id)


def launch_new(
    java: str, lib: Path, layout: BrokerFiles, endpoint: tuple[str, int, int]
) -> BrokerHandle:
    """Write the configuration, format on first use and launch; the caller waits for it."""
    host, port, controller_port = endpoint
    properties = render_server_properties(host, port, controller_port, layout.kraft)
    for taken_port, key in ((port, "broker.port"), (controller_port, "broker.controller_port")):
        holder = port_holder(host, taken_port)
        if holder is not None:
            raise BrokerError(
                f"Port {taken_port} on {host} ({key}) is already taken by {holder}; stop that "
                f"process or choose another {key}."
            )
    layout.logs.mkdir(parents=True, exist_ok=True)
    layout.props.write_text(properties, encoding="utf-8")
    layout.log4j.write_text(render_log4j2_config(layout.logs), encoding="utf-8")
    _format_storage_once(java, lib, layout)
    process = _launch(java, lib, layout)
    layout.pid_file.write_text(f"{process.pid}\n", encoding="utf-8")
    return BrokerHandle(host, port, controller_port, process.pid, layout.root, layout.server_log)


def _launch(java: str, lib: Path, layout: BrokerFiles) -> subprocess.Popen[bytes]:
    command = [
        java,
        *_JVM_OPTIONS,
        *class_archive_options(lib, layout),
        f"-Dlog4j2.configurationFile={layout.log4j}",
        "-cp",
        str(lib / "*"),
        MAIN_CLASS,
        str(layout.props),
    ]
    with open(layout.stdout_log, "ab") as out:
        # A new session keeps the broker alive after the CLI exits and away from its Ctrl-C.
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=layout.root,
            start_new_session=True,
        )
    _CHILDREN[process.pid] = process
    _LOG.info("Launched Kafka broker pid %d (log %s)", process.pid, layout.server_log)
    return process


def exit_check(pid: int, layout: BrokerFiles) -> Callable[[], None]:
    """A check that raises BrokerError, with the log's telling line, once the broker has exited."""

    def check() -> None:
        child = _CHILDREN.get(pid)
        code = child.poll() if child is not None else None
        if code is not None:
            reason = last_error_line(tail(layout.server_log) + "\n" + tail(layout.stdout_log))
            raise BrokerError(
                f"The Kafka broker exited with code {code} while starting ({reason}); see "
                f"{layout.server_log}."
            )

    return check


def _alive(pid: int) -> bool:
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        _CHILDREN.pop(pid, None)
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while _alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def terminate(pid: int, timeout_s: float) -> bool:
    """SIGTERM (Kafka shuts down cleanly on it), SIGKILL after `timeout_s`; True if clean."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if _wait_gone(pid, timeout_s):
        return True
    _LOG.warning("Kafka broker pid %d ignored SIGTERM for %g s; killing it", pid, timeout_s)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if not _wait_gone(pid, 10.0):
        raise BrokerError(
            f"Kafka broker pid {pid} did not exit even after SIGKILL; check it with `ps -p {pid}`."
        )
    return False
