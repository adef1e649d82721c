"""Unit tests of the broker launcher's pure parts and error paths (no JVM is started)."""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from broker import jars
from broker.errors import BrokerError
from broker.jars import ensure_broker_jars
from broker.java import parse_java_major
from broker.jvm import port_holder, read_broker_pid
from broker.process import broker_status, start_broker, stop_broker
from broker.properties import new_cluster_id, render_log4j2_config, render_server_properties
from broker.topics import wait_for_kafka
from core.config import PitstopConfig, load_config

pytestmark = pytest.mark.unit


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PitstopConfig:
    """The project configuration with its state dir moved under tmp_path."""
    monkeypatch.setenv("PITSTOP__HOME", str(tmp_path / "home"))
    return load_config("local")


def _as_dict(properties: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in properties.splitlines() if "=" in line)
    return {key: value for key, value in pairs if not key.startswith("#")}


def _executable(path: Path, script: str) -> Path:
    path.write_text(script, encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- configuration text ---------------------------------------------------------------------


def test_server_properties_describe_a_single_kraft_node(tmp_path: Path) -> None:
    props = _as_dict(render_server_properties("127.0.0.1", 19092, 19094, tmp_path / "kraft"))

    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:19094"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19094"
    assert props["advertised.listeners"].startswith("PLAINTEXT://127.0.0.1:19092")
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["log.dirs"] == str(tmp_path / "kraft")
    assert props["auto.create.topics.enable"] == "false"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "share.coordinator.state.topic.replication.factor",
    ):
        assert props[key] == "1", key


def test_server_properties_reject_a_shared_port(tmp_path: Path) -> None:
    with pytest.raises(BrokerError, match="both 9092"):
        render_server_properties("127.0.0.1", 9092, 9092, tmp_path)


def test_server_properties_escape_backslashes() -> None:
    props = render_server_properties("127.0.0.1", 1, 2, Path("weird\\dir"))

    assert "log.dirs=weird\\\\dir" in props


def test_log4j2_config_writes_into_the_logs_dir(tmp_path: Path) -> None:
    config = _as_dict(render_log4j2_config(tmp_path / "logs").replace(" = ", "="))

    assert config["appender.server.fileName"] == str(tmp_path / "logs" / "server.log")
    assert config["rootLogger.appenderRef.server.ref"] == "server"


def test_cluster_id_is_kafka_shaped_and_random() -> None:
    ids = {new_cluster_id() for _ in range(200)}

    assert len(ids) == 200
    for cluster_id in ids:
        assert len(cluster_id) == 22
        assert not cluster_id.startswith("-")
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


@pytest.mark.parametrize(
    ("output", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('java version "1.8.0_402"', 8),
        ('openjdk version "21" 2023-09-19', 21),
        ("no version here", None),
    ],
)
def test_parse_java_major(output: str, major: int | None) -> None:
    assert parse_java_major(output) == major


# --- ports ----------------------------------------------------------------------------------


def test_port_holder_is_none_for_a_free_port() -> None:
    assert port_holder("127.0.0.1", _free_port()) is None


def test_port_holder_names_the_listening_process() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]

        holder = port_holder("127.0.0.1", port)

    assert holder is not None
    assert f"pid {os.getpid()}" in holder


def test_port_holder_rejects_a_foreign_address() -> None:
    # 192.0.2.0/24 is TEST-NET-1: never assigned to a local interface.
    with pytest.raises(BrokerError, match="not an address of this machine"):
        port_holder("192.0.2.1", 9092)


# --- pid files ------------------------------------------------------------------------------


def test_pid_file_of_a_dead_process_is_removed(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "broker.pid").write_text(f"{dead.pid}\n")

    assert read_broker_pid(tmp_path) is None
    assert not (tmp_path / "broker.pid").exists()


def test_pid_file_of_a_foreign_live_process_is_not_ours(tmp_path: Path) -> None:
    (tmp_path / "broker.pid").write_text(f"{os.getpid()}\n")

    assert read_broker_pid(tmp_path) is None
    assert not (tmp_path / "broker.pid").exists()


def test_garbled_pid_file_is_removed(tmp_path: Path) -> None:
    (tmp_path / "broker.pid").write_text("not a pid\n")

    assert read_broker_pid(tmp_path) is None
    assert not (tmp_path / "broker.pid").exists()


def test_stop_never_signals_a_process_that_is_not_our_kafka(
    cfg: PitstopConfig, tmp_path: Path
) -> None:
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (tmp_path / "broker.pid").write_text(f"{bystander.pid}\n")

        assert stop_broker(cfg, data_dir=tmp_path) is False
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_stop_without_a_pid_file_is_a_no_op(cfg: PitstopConfig, tmp_path: Path) -> None:
    assert stop_broker(cfg, data_dir=tmp_path) is False


def test_status_of_a_stopped_broker_reads_its_ports(cfg: PitstopConfig, tmp_path: Path) -> None:
    (tmp_path / "server.properties").write_text(
        render_server_properties("127.0.0.1", 29092, 29094, tmp_path / "kraft")
    )

    status = broker_status(cfg, data_dir=tmp_path)

    assert status.running is False
    assert status.pid is None
    assert status.bootstrap == "127.0.0.1:29092"
    assert status.log_path == tmp_path.resolve() / "logs" / "server.log"


# --- tools missing or failing ---------------------------------------------------------------


def _hide_tools(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    real_which = jars.shutil.which
    monkeypatch.setattr(
        jars.shutil, "which", lambda name, *a, **k: None if name in names else real_which(name)
    )


def test_start_without_java_names_the_fix(
    cfg: PitstopConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    _hide_tools(monkeypatch, "java")

    with pytest.raises(BrokerError, match="Java is not installed"):
        start_broker(cfg, data_dir=tmp_path)


def test_old_java_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    java_home = tmp_path / "jdk11"
    (java_home / "bin").mkdir(parents=True)
    _executable(java_home / "bin" / "java", "#!/bin/sh\necho 'openjdk version \"11.0.2\"' >&2\n")
    monkeypatch.setenv("JAVA_HOME", str(java_home))

    with pytest.raises(BrokerError, match="is Java 11"):
        ensure_broker_jars(tmp_path / "home")


def test_missing_maven_names_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _hide_tools(monkeypatch, "mvn")

    with pytest.raises(BrokerError, match="Maven .*mvn.* is not on PATH"):
        ensure_broker_jars(tmp_path / "home")


def test_failing_maven_reports_its_error_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_mvn = _executable(
        tmp_path / "mvn",
        "#!/bin/sh\necho '[ERROR] Could not resolve dependencies for project io.pitstop'\nexit 1\n",
    )
    real_which = jars.shutil.which
    monkeypatch.setattr(
        jars.shutil,
        "which",
        lambda name, *a, **k: str(fake_mvn) if name == "mvn" else real_which(name),
    )

    with pytest.raises(BrokerError, match="Could not resolve dependencies") as caught:
        ensure_broker_jars(tmp_path / "home")
    assert "Maven Central" in str(caught.value)
    assert not (tmp_path / "home" / "broker" / "lib").exists()


def test_resolved_jars_are_not_resolved_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lib = tmp_path / "home" / "broker" / "lib"
    lib.mkdir(parents=True)
    (lib / f"kafka_2.13-{jars.KAFKA_VERSION}.jar").write_bytes(b"")
    digest = hashlib.sha256(jars.POM_PATH.read_bytes()).hexdigest()
    (lib / ".pitstop-resolved").write_text(digest + "\n")
    _hide_tools(monkeypatch, "mvn")  # any attempt to resolve would fail

    assert ensure_broker_jars(tmp_path / "home") == lib


def test_a_changed_pom_triggers_a_new_resolve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lib = tmp_path / "home" / "broker" / "lib"
    lib.mkdir(parents=True)
    (lib / f"kafka_2.13-{jars.KAFKA_VERSION}.jar").write_bytes(b"")
    (lib / ".pitstop-resolved").write_text("hash-of-an-older-pom\n")
    _hide_tools(monkeypatch, "mvn")

    with pytest.raises(BrokerError, match="not on PATH"):
        ensure_broker_jars(tmp_path / "home")


def _fake_kafka(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, broker_body: str) -> None:
    """A JAVA_HOME whose `java` formats instantly and runs `broker_body` as kafka.Kafka, plus
    resolved-looking jars, so start_broker's process handling runs without a JVM."""
    java_home = tmp_path / "jdk"
    (java_home / "bin").mkdir(parents=True)
    _executable(
        java_home / "bin" / "java",
        "#!/bin/sh\n"
        'case "$*" in\n'
        "  *StorageTool*) exit 0 ;;\n"
        f"  *kafka.Kafka*) {broker_body} ;;\n"
        "  *) echo 'openjdk version \"17.0.9\"' >&2 ;;\n"
        "esac\n",
    )
    monkeypatch.setenv("JAVA_HOME", str(java_home))
    lib = tmp_path / "home" / "broker" / "lib"
    lib.mkdir(parents=True)
    (lib / f"kafka_2.13-{jars.KAFKA_VERSION}.jar").write_bytes(b"")
    digest = hashlib.sha256(jars.POM_PATH.read_bytes()).hexdigest()
    (lib / ".pitstop-resolved").write_text(digest + "\n")


def _quick(cfg: PitstopConfig) -> PitstopConfig:
    return cfg.model_copy(update={"broker": cfg.broker.model_copy(update={"start_timeout_s": 1.5})})


def test_a_broker_that_never_answers_times_out_naming_its_log(
    cfg: PitstopConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_kafka(tmp_path, monkeypatch, "while :; do sleep 0.1; done")
    data_dir = tmp_path / "silent"

    with pytest.raises(BrokerError, match="did not answer on 127.0.0.1:") as caught:
        start_broker(
            _quick(cfg), data_dir=data_dir, port=_free_port(), controller_port=_free_port()
        )

    assert str(data_dir / "logs" / "server.log") in str(caught.value)
    assert not (data_dir / "broker.pid").exists()


def test_a_broker_that_dies_on_start_reports_why(
    cfg: PitstopConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_kafka(tmp_path, monkeypatch, "echo 'java.lang.IllegalStateException: boom'; exit 3")

    with pytest.raises(BrokerError, match="exited with code 3.*IllegalStateException: boom"):
        start_broker(
            _quick(cfg), data_dir=tmp_path / "dies", port=_free_port(), controller_port=_free_port()
        )


def test_wait_for_an_absent_kafka_names_the_address() -> None:
    bootstrap = f"127.0.0.1:{_free_port()}"

    with pytest.raises(BrokerError, match=f"Kafka at {bootstrap} is unreachable"):
        wait_for_kafka(bootstrap, timeout_s=1.0)


def test_broker_status_exits_non_zero_when_no_broker_runs(
    cfg: PitstopConfig, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from apps.cli import main

    monkeypatch.setattr(sys, "argv", ["pitstop", "broker", "status"])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 1
    assert "not running" in capsys.readouterr().out
