"""The text files a single-node KRaft broker starts from: server.properties and log4j2's config."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

from broker.errors import BrokerError


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
    lines = ["# Written by broker.process on every start; edits here are overwritten."]
    lines += [f"{key}={_escape_property(value)}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


def render_log4j2_config(logs_dir: Path) -> str:
    """A log4j2 configuration that sends the broker's log to `<logs_dir>/server.log`."""
    log_file = _escape_property(str(logs_dir / "server.log"))
    return (
        "# Written by broker.process on every start.\n"
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


def _escape_property(value: str) -> str:
    """Java properties treat a backslash as an escape, so a literal one is doubled."""
    return value.replace("\\", "\\\\")
