"""The local Apache Kafka broker: fetch its jars with Maven, run it in KRaft mode, manage topics.

It stands in for Event Hubs on a machine without Docker. Kafka's jars come from Maven Central,
one JVM plays broker and controller, and everything it writes (data, logs, pid file) lives in
one data dir (default ``<home>/broker``), so tests can run a second broker beside the project's.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import fcntl
import functools
import hashlib
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from pitstop.config import PitstopConfig
from pitstop.errors import PitstopError

_LOG = logging.getLogger(__name__)

KAFKA_VERSION = "4.2.0"
POM_PATH = Path(__file__).resolve().parents[1] / "jvm" / "kafka-broker" / "pom.xml"
MIN_JAVA = 17
_MAIN_CLASS = "kafka.Kafka"
_STORAGE_TOOL = "kafka.tools.StorageTool"
# A local broker holds little data; a small heap leaves room for Spark on a laptop.
_JVM_OPTIONS = ("-Xms128m", "-Xmx512m", "-XX:+UseG1GC", "-Djava.awt.headless=true")
_MAVEN_TIMEOUT_S = 900
_MARKER = ".pitstop-resolved"
_CLASS_ARCHIVE = f"kafka-{KAFKA_VERSION}.jsa"
_EXCEPTION_LINE = re.compile(r"^(?:Caused by: )?[\w.$]+(?:Exception|Error): ")
_MAX_REASON = 240  # characters of a tool's error line quoted in a BrokerError

# The broker's child processes, kept so stop_broker can reap them (a zombie looks alive).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class BrokerError(PitstopError, RuntimeError):
    """The local broker could not be set up, started, stopped or reached; says what to fix."""


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


@dataclass(frozen=True)
class _Layout:
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


# --- pure pieces -------------------------------------------------------------------------


def render_server_properties(
    host: str, port: int, controller_port: int, log_dir: Path, *, num_partitions: int = 2
) -> str:
    """The `server.properties` of a single-node KRaft broker that is also its own controller."""
    if port == controller_port:
        raise BrokerError(
            f"broker.port and broker.controller_port are both {port}; give the controller "
            "its own port."
        )
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": f"{host}:{controller_port}",
        "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(log_dir),
        # Topics are created explicitly with their configured partition counts; a typo in a
        # topic name should fail, not silently create an empty topic.
        "auto.create.topics.enable": "false",
        # Matches Spark's local[2] for a topic some tool creates without a count.
        "num.partitions": str(num_partitions),
        "default.replication.factor": "1",
        # One node: every internal topic must live with a single replica.
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        # Fewer internal partitions than the default 50: the first consumer group and the
        # first transaction come up in well under a second.
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.num.partitions": "4",
        "share.coordinator.state.topic.num.partitions": "4",
        # A lone consumer should not wait 3 s for peers that never come.
        "group.initial.rebalance.delay.ms": "0",
    }
    lines = ["# Written by pitstop.broker on every start; edits here are overwritten."]
    lines += [f"{key}={_escape_property(value)}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


def render_log4j2_config(logs_dir: Path) -> str:
    """A log4j2 configuration that sends the broker's log to `<logs_dir>/server.log`."""
    log_file = _escape_property(str(logs_dir / "server.log"))
    return (
        "# Written by pitstop.broker on every start.\n"
        "status = warn\n"
        # log4j's own hook races Kafka's shutdown and then complains; events are flushed
        # as they are written, so nothing is lost without it.
        "shutdownHook = disable\n"
        "appender.server.type = RollingFile\n"
        "appender.server.name = server\n"
        f"appender.server.fileName = {log_file}\n"
        f"appender.server.filePattern = {log_file}.%i\n"
        "appender.server.layout.type = PatternLayout\n"
        "appender.server.layout.pattern = [%d] %p %m (%c)%n\n"
        "appender.server.policies.type = Policies\n"
        "appender.server.policies.size.type = SizeBasedTriggeringPolicy\n"
        "appender.server.policies.size.size = 20MB\n"
        "appender.server.strategy.type = DefaultRolloverStrategy\n"
        "appender.server.strategy.max = 3\n"
        "rootLogger.level = INFO\n"
        "rootLogger.appenderRef.server.ref = server\n"
        # Per-request logging is noise for a local broker.
        "logger.request.name = kafka.request.logger\n"
        "logger.request.level = WARN\n"
    )


def new_cluster_id() -> str:
    """A random Kafka cluster id: 16 bytes in URL-safe base64 without padding (22 chars)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        # Kafka never hands out ids starting with '-' because command lines read them as flags.
        if not cluster_id.startswith("-"):
            return cluster_id


def parse_java_major(version_output: str) -> int | None:
    """The major version in `java -version` output (`"1.8.0_402"` -> 8, `"17.0.15"` -> 17)."""
    match = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if match is None:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


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
    layout = _Layout(Path(data_dir).resolve())
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


# --- jars ---------------------------------------------------------------------------------


def ensure_broker_jars(home: Path, *, maven_repo: Path | None = None) -> Path:
    """Resolve the Kafka broker jars into `<home>/broker/lib` once per pom version; return it."""
    lib = Path(home) / "broker" / "lib"
    if not POM_PATH.is_file():
        raise BrokerError(
            f"{POM_PATH} is missing; install Pitstop from its source checkout (pip install -e .) "
            "so the broker's Maven pom is available."
        )
    digest = hashlib.sha256(POM_PATH.read_bytes()).hexdigest()
    if _jars_resolved(lib, digest):
        return lib
    with _exclusive(lib.parent / ".resolve.lock"):
        if _jars_resolved(lib, digest):  # another process resolved while we waited
            return lib
        find_java()  # Maven needs it too, and our message is clearer than Maven's
        mvn = shutil.which("mvn")
        if mvn is None:
            raise BrokerError(
                "Maven (`mvn`) is not on PATH; install Maven 3.8+ so Pitstop can fetch the "
                "Kafka broker jars from Maven Central."
            )
        # Copy into a staging folder first so a failed or interrupted resolve never leaves a
        # half-filled lib that the marker would vouch for.
        staging = lib.with_name("lib.partial")
        shutil.rmtree(staging, ignore_errors=True)
        command = [
            mvn,
            "-q",
            "-B",
            "-f",
            str(POM_PATH),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={staging}",
        ]
        if maven_repo is not None:
            command.append(f"-Dmaven.repo.local={maven_repo}")
        _LOG.info(
            "Resolving Apache Kafka %s broker jars from Maven Central into %s", KAFKA_VERSION, lib
        )
        try:
            result = subprocess.run(
                command, capture_output=True, text=True, timeout=_MAVEN_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired:
            raise BrokerError(
                f"Maven did not finish resolving the Kafka broker jars within "
                f"{_MAVEN_TIMEOUT_S} s; check network access to Maven Central or the mirror "
                "in ~/.m2/settings.xml."
            ) from None
        if result.returncode != 0 or not _has_broker_jar(staging):
            shutil.rmtree(staging, ignore_errors=True)
            reason = _last_error_line(result.stdout + "\n" + result.stderr)
            raise BrokerError(
                f"Maven could not resolve the Kafka broker jars ({reason}); check network access "
                "to Maven Central or the mirror in ~/.m2/settings.xml."
            )
        (staging / _MARKER).write_text(f"{digest}\n", encoding="utf-8")
        shutil.rmtree(lib, ignore_errors=True)
        staging.rename(lib)
    _LOG.info("Kafka broker jars ready in %s", lib)
    return lib


# --- lifecycle ----------------------------------------------------------------------------


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
    layout = _Layout(_data_dir(cfg, data_dir))
    layout.root.mkdir(parents=True, exist_ok=True)

    with _exclusive(layout.lock):
        running = _running_handle(layout)
        if running is None:
            lib = ensure_broker_jars(Path(cfg.home))
            running = _launch_new(java, lib, layout, (host, port, controller_port))
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
                _exit_check(running.pid, layout),
                running.log_path,
                "Kafka",
            )
        except BrokerError:
            with contextlib.suppress(BrokerError):  # the start failure is the news
                _terminate(running.pid, 10.0)
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
    layout = _Layout(_data_dir(cfg, data_dir))
    pid = read_broker_pid(layout.root)
    if pid is None:
        _LOG.info("No Pitstop Kafka broker is running for %s", layout.root)
        return False
    _LOG.info("Stopping Kafka broker pid %d", pid)
    clean = _terminate(pid, timeout_s)
    layout.pid_file.unlink(missing_ok=True)
    _adopt_class_archive(layout, Path(cfg.home) / "broker" / "lib", complete=clean)
    return True


def broker_status(cfg: PitstopConfig, data_dir: Path | None = None) -> BrokerStatus:
    """Whether the broker of `data_dir` runs, where, and its topics if it answers."""
    layout = _Layout(_data_dir(cfg, data_dir))
    endpoint = _configured_endpoint(layout.props)
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


# --- clients ------------------------------------------------------------------------------


def wait_for_kafka(
    bootstrap: str, timeout_s: float = 30.0, config: Mapping[str, str] | None = None
) -> None:
    """Return once Kafka at `bootstrap` answers a metadata request, else raise BrokerError."""
    admin = _admin(bootstrap, config)
    deadline = time.monotonic() + timeout_s
    while not _answers(admin, deadline):
        if time.monotonic() >= deadline:
            raise BrokerError(
                f"Kafka at {bootstrap} is unreachable after {timeout_s:g} s; start it with "
                "`pitstop broker start` or fix kafka.bootstrap_servers."
            )
        time.sleep(0.2)


def list_topics(bootstrap: str, timeout_s: float = 10.0) -> dict[str, int]:
    """Partition count of every non-internal topic at `bootstrap`."""
    return _metadata_or_fail(_admin(bootstrap), bootstrap, timeout_s)


def ensure_topics(bootstrap: str, topics: Mapping[str, int], timeout_s: float = 30.0) -> list[str]:
    """Create the missing topics (name -> partitions) and wait for their leaders; names created."""
    if not topics:
        return []
    deadline = time.monotonic() + timeout_s
    admin = _admin(bootstrap)
    existing = _metadata_or_fail(admin, bootstrap, timeout_s)
    for name, wanted in topics.items():
        if name in existing and existing[name] != wanted:
            # Changing partitions would reshuffle keys across partitions; recreate_topics is
            # the explicit way to start over.
            _LOG.warning(
                "Topic %s has %d partitions, configuration says %d; leaving it as is",
                name,
                existing[name],
                wanted,
            )
    missing = {name: count for name, count in topics.items() if name not in existing}
    _create_topics(admin, bootstrap, missing, deadline, retry_existing=False)
    _wait_for_leaders(admin, bootstrap, list(topics), deadline)
    if missing:
        _LOG.info(
            "Created topics %s on %s", ", ".join(f"{n}({c})" for n, c in missing.items()), bootstrap
        )
    return sorted(missing)


def recreate_topics(bootstrap: str, topics: Mapping[str, int], timeout_s: float = 60.0) -> None:
    """Delete the topics (and their data) if present, wait until they are gone, create them anew."""
    deadline = time.monotonic() + timeout_s
    admin = _admin(bootstrap)
    existing = _metadata_or_fail(admin, bootstrap, timeout_s)
    doomed = [name for name in topics if name in existing]
    if doomed:
        futures = admin.delete_topics(
            doomed, operation_timeout=timeout_s, request_timeout=timeout_s
        )
        for name, future in futures.items():
            try:
                future.result()
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                    raise BrokerError(
                        f"Could not delete topic {name!r} on {bootstrap} ({_kafka_reason(exc)}); "
                        "check that the broker allows topic deletion."
                    ) from None
        while set(doomed) & set(_metadata_or_fail(admin, bootstrap, _remaining(deadline))):
            if time.monotonic() >= deadline:
                raise BrokerError(
                    f"Topics {', '.join(doomed)} on {bootstrap} were still being deleted after "
                    f"{timeout_s:g} s; try again or check the broker log."
                )
            time.sleep(0.2)
        _LOG.info("Deleted topics %s on %s", ", ".join(doomed), bootstrap)
    _create_topics(admin, bootstrap, dict(topics), deadline, retry_existing=True)
    _wait_for_leaders(admin, bootstrap, list(topics), deadline)


# --- helpers ------------------------------------------------------------------------------


class _QuietRdkafkaLog:
    """Routes librdkafka's log lines to DEBUG: "connection refused" while waiting is expected."""

    def log(self, level: int, message: str, *args: object) -> None:
        _LOG.debug("librdkafka: " + message, *args)


def _admin(bootstrap: str, config: Mapping[str, str] | None = None) -> AdminClient:
    settings: dict[str, object] = {
        "bootstrap.servers": bootstrap,
        "logger": _QuietRdkafkaLog(),
        # librdkafka backs off up to 10 s between reconnects; a starting broker is up sooner.
        "reconnect.backoff.max.ms": 500,
    }
    settings.update(config or {})
    return AdminClient(settings)


def _answers(admin: AdminClient, deadline: float) -> bool:
    try:
        metadata = admin.list_topics(timeout=max(0.5, min(2.0, _remaining(deadline))))
    except KafkaException:
        return False
    return bool(metadata.brokers)


def _topic_partitions(admin: AdminClient, timeout_s: float) -> dict[str, int]:
    metadata = admin.list_topics(timeout=max(0.5, timeout_s))
    return {
        name: len(topic.partitions)
        for name, topic in metadata.topics.items()
        if not name.startswith("__") and topic.error is None
    }


def _metadata_or_fail(admin: AdminClient, bootstrap: str, timeout_s: float) -> dict[str, int]:
    try:
        return _topic_partitions(admin, timeout_s)
    except KafkaException as exc:
        raise BrokerError(
            f"Kafka at {bootstrap} is unreachable ({_kafka_reason(exc)}); start it with "
            "`pitstop broker start` or fix kafka.bootstrap_servers."
        ) from None


def _create_topics(
    admin: AdminClient,
    bootstrap: str,
    topics: Mapping[str, int],
    deadline: float,
    *,
    retry_existing: bool,
) -> None:
    pending = dict(topics)
    while pending:
        timeout = max(1.0, _remaining(deadline))
        # -1 lets the cluster apply its default replication, so this also works off our broker.
        futures = admin.create_topics(
            [NewTopic(name, count, -1) for name, count in pending.items()],
            operation_timeout=timeout,
            request_timeout=timeout,
        )
        for name, future in futures.items():
            try:
                future.result()
            except KafkaException as exc:
                code = exc.args[0].code()
                if code == KafkaError.TOPIC_ALREADY_EXISTS and retry_existing:
                    continue  # a just-deleted topic lingers briefly; try again
                if code != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise BrokerError(
                        f"Could not create topic {name!r} on {bootstrap} ({_kafka_reason(exc)}); "
                        "check the partition count and the broker log."
                    ) from None
            pending.pop(name)
        if pending:
            if time.monotonic() >= deadline:
                raise BrokerError(
                    f"Topics {', '.join(pending)} on {bootstrap} could not be recreated in time "
                    "because their deletion had not finished; try again."
                )
            time.sleep(0.3)


def _wait_for_leaders(
    admin: AdminClient, bootstrap: str, names: list[str], deadline: float
) -> None:
    """Producers fail fast on a topic without leaders, so creation waits for them."""
    while True:
        try:
            metadata = admin.list_topics(timeout=max(0.5, min(2.0, _remaining(deadline))))
        except KafkaException:
            metadata = None
        if metadata is not None and all(
            name in metadata.topics
            and metadata.topics[name].error is None
            and metadata.topics[name].partitions
            and all(p.leader >= 0 for p in metadata.topics[name].partitions.values())
            for name in names
        ):
            return
        if time.monotonic() >= deadline:
            raise BrokerError(
                f"Topics {', '.join(names)} on {bootstrap} had no partition leaders in time; "
                "check the broker log."
            )
        time.sleep(0.2)


def _escape_property(value: str) -> str:
    """Java properties treat a backslash as an escape, so a literal one is doubled."""
    return value.replace("\\", "\\\\")


def _kafka_reason(exc: KafkaException) -> str:
    error = exc.args[0] if exc.args else None
    return error.str() if isinstance(error, KafkaError) else str(exc)


def _remaining(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


def _data_dir(cfg: PitstopConfig, data_dir: Path | None) -> Path:
    return (Path(data_dir) if data_dir is not None else Path(cfg.home) / "broker").resolve()


def _jars_resolved(lib: Path, digest: str) -> bool:
    marker = lib / _MARKER
    return (
        marker.is_file()
        and marker.read_text(encoding="utf-8").strip() == digest
        and _has_broker_jar(lib)
    )


def _has_broker_jar(folder: Path) -> bool:
    return (folder / f"kafka_2.13-{KAFKA_VERSION}.jar").is_file()


def _last_error_line(output: str) -> str:
    """The telling line of a tool's output: an exception, else an error, else the last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    exceptions = [line for line in lines if _EXCEPTION_LINE.match(line)]
    errors = [line for line in lines if "ERROR" in line or "rror:" in line]
    line = (exceptions or errors or [lines[-1] if lines else "no output"])[0]
    line = re.sub(r"^\[ERROR\]\s*", "", line)
    return line if len(line) <= _MAX_REASON else line[: _MAX_REASON - 3] + "..."


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Serialise starts (and resolves) of the same folder across processes."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


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
        if _MAIN_CLASS in process.cmdline():
            return f"another Kafka broker (pid {pid})"
        return f"pid {pid} ({process.name()})"
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return f"pid {pid}"


def _is_our_broker(pid: int, layout: _Layout) -> bool:
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
    return _MAIN_CLASS in cmdline and str(layout.props) in cmdline


def _configured_endpoint(props: Path) -> tuple[str, int, int] | None:
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


def _running_handle(layout: _Layout) -> BrokerHandle | None:
    pid = read_broker_pid(layout.root)
    endpoint = _configured_endpoint(layout.props)
    if pid is None or endpoint is None:
        return None
    host, port, controller_port = endpoint
    return BrokerHandle(host, port, controller_port, pid, layout.root, layout.server_log, True)


def _format_storage_once(java: str, lib: Path, layout: _Layout) -> None:
    """Format the KRaft log dir on first start; formatting again would be refused anyway."""
    if (layout.kraft / "meta.properties").is_file():
        return
    cluster_id = new_cluster_id()
    command = [
        java,
        "-Xmx256m",
        *_class_archive_options(lib, layout, record=False),
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
            f"({_last_error_line(result.stdout + chr(10) + result.stderr)}); delete that folder "
            "and start again."
        )
    _LOG.info("Formatted Kafka storage in %s (cluster id %s)", layout.kraft, cluster_id)


def _launch_new(
    java: str, lib: Path, layout: _Layout, endpoint: tuple[str, int, int]
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


def _launch(java: str, lib: Path, layout: _Layout) -> subprocess.Popen[bytes]:
    command = [
        java,
        *_JVM_OPTIONS,
        *_class_archive_options(lib, layout),
        f"-Dlog4j2.configurationFile={layout.log4j}",
        "-cp",
        str(lib / "*"),
        _MAIN_CLASS,
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


def _exit_check(pid: int, layout: _Layout) -> Callable[[], None]:
    def check() -> None:
        child = _CHILDREN.get(pid)
        code = child.poll() if child is not None else None
        if code is not None:
            reason = _last_error_line(_tail(layout.server_log) + "\n" + _tail(layout.stdout_log))
            raise BrokerError(
                f"The Kafka broker exited with code {code} while starting ({reason}); see "
                f"{layout.server_log}."
            )

    return check


def _wait_until_up(
    bootstrap: str, timeout_s: float, check: Callable[[], None], log_path: Path, subject: str
) -> None:
    admin = _admin(bootstrap)
    deadline = time.monotonic() + timeout_s
    while not _answers(admin, deadline):
        check()
        if time.monotonic() >= deadline:
            raise BrokerError(
                f"{subject} did not answer on {bootstrap} within {timeout_s:g} s; see {log_path}."
            )
        time.sleep(0.2)


def _tail(path: Path, size: int = 8192) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, path.stat().st_size - size))
            return handle.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""


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


def _terminate(pid: int, timeout_s: float) -> bool:
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


def _class_archive_options(lib: Path, layout: _Layout, *, record: bool = True) -> list[str]:
    """JVM flags that use the shared class archive, or record one when there is none yet.

    Loading Kafka's classes from a CDS archive cuts about a third of the CPU a start costs.
    Java 17 can only write the archive when the JVM exits, so the first broker records it in
    its data dir and stop_broker moves it next to the jars; re-resolving the jars deletes it.
    A stale or damaged archive is harmless: the JVM checks it and falls back to the jars.
    """
    archive = lib / _CLASS_ARCHIVE
    quiet = "-Xlog:cds*=off"  # the JVM warns about each class it cannot archive
    if archive.is_file():
        return [f"-XX:SharedArchiveFile={archive}", quiet]
    return [f"-XX:ArchiveClassesAtExit={layout.pending_archive}", quiet] if record else []


def _adopt_class_archive(layout: _Layout, lib: Path, *, complete: bool) -> None:
    pending = layout.pending_archive
    if not pending.is_file():
        return
    if complete and lib.is_dir() and not (lib / _CLASS_ARCHIVE).exists():
        os.replace(pending, lib / _CLASS_ARCHIVE)
        _LOG.info("Saved a class archive for faster broker starts in %s", lib)
    else:
        pending.unlink(missing_ok=True)  # killed mid-write, or another broker was first
