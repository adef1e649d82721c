"""Layered configuration: base -> environment -> PITSTOP__ variables, strictly validated."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import ConfigError, load_config

pytestmark = pytest.mark.unit


def write_conf(root: Path, base: str, local: str = "") -> Path:
    conf = root / "conf"
    (conf / "base").mkdir(parents=True)
    (conf / "local").mkdir()
    (conf / "base" / "pitstop.yaml").write_text(base)
    (conf / "local" / "pitstop.yaml").write_text(local)
    return conf


BASE = """
kafka: {bootstrap_servers: "127.0.0.1:9092"}
storage: {lake: lake, checkpoints: ck}
mlflow: {tracking_uri: "sqlite:///ml/mlflow.db"}
"""


def test_repo_config_loads_for_every_environment():
    assert load_config("local").kafka.topics.telemetry == "battery-telemetry"
    azure = load_config("azure")
    assert azure.kafka.security_protocol == "SASL_SSL"
    assert azure.storage.lake.startswith("abfss://")


def test_layers_override_in_order_and_paths_resolve_against_the_root(tmp_path, monkeypatch):
    conf = write_conf(tmp_path, BASE, "stream: {trigger_seconds: 5}\n")
    monkeypatch.setenv("PITSTOP__STREAM__TRIGGER_SECONDS", "7.5")
    cfg = load_config("local", conf)
    assert cfg.stream.trigger_seconds == 7.5
    assert cfg.storage.lake == str(tmp_path / "lake")
    assert cfg.mlflow.tracking_uri == f"sqlite:///{tmp_path}/ml/mlflow.db"


def test_unknown_key_names_the_file_and_key(tmp_path):
    conf = write_conf(tmp_path, BASE, "stream: {trigger_secs: 5}\n")
    with pytest.raises(ConfigError, match=r"local/pitstop.yaml: unknown key 'stream.trigger_secs'"):
        load_config("local", conf)


def test_bad_value_from_the_environment_names_the_variable(tmp_path, monkeypatch):
    conf = write_conf(tmp_path, BASE)
    monkeypatch.setenv("PITSTOP__BROKER__PORT", "99999")
    with pytest.raises(ConfigError, match="PITSTOP__BROKER__PORT: 'broker.port'"):
        load_config("local", conf)


def test_unknown_environment_lists_the_known_ones(tmp_path):
    conf = write_conf(tmp_path, BASE)
    with pytest.raises(ConfigError, match="Unknown environment 'prod': choose one of base, local"):
        load_config("prod", conf)


def test_connection_string_comes_from_the_environment_and_is_checked(tmp_path, monkeypatch):
    conf = write_conf(
        tmp_path, BASE + 'kafka: {bootstrap_servers: "x:9093", connection_string_env: EH_CONN}\n'
    )
    cfg = load_config("local", conf)
    with pytest.raises(ConfigError, match="EH_CONN.*not set"):
        cfg.kafka.connection_string()
    monkeypatch.setenv("EH_CONN", "password=hunter2")
    with pytest.raises(ConfigError) as bad:
        cfg.kafka.connection_string()
    assert "hunter2" not in str(bad.value)
    secret = "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=s3"
    monkeypatch.setenv("EH_CONN", secret)
    assert cfg.kafka.connection_string().get_secret_value() == secret
    assert "s3" not in repr(cfg.kafka.connection_string())


def test_structured_and_empty_values_from_the_environment(tmp_path, monkeypatch):
    conf = write_conf(tmp_path, BASE)
    monkeypatch.setenv("PITSTOP__FORECAST__SHADOW_MODELS", "[m1, m2]")  # YAML, as in the files
    monkeypatch.setenv("PITSTOP__KAFKA__TOPICS", '{"notes": "notes-2"}')  # JSON is YAML too
    monkeypatch.setenv("PITSTOP__STREAM__MIN_PARTITIONS", "")  # empty means null
    cfg = load_config("local", conf)
    assert cfg.forecast.shadow_models == ["m1", "m2"]
    assert cfg.kafka.topics.notes == "notes-2" and cfg.kafka.topics.telemetry == "battery-telemetry"
    assert cfg.stream.min_partitions is None


def test_a_misspelt_section_in_the_environment_names_the_variable(tmp_path, monkeypatch):
    conf = write_conf(tmp_path, BASE)
    monkeypatch.setenv("PITSTOP__STRAEM__TRIGGER_SECONDS", "1")
    with pytest.raises(ConfigError, match="PITSTOP__STRAEM__TRIGGER_SECONDS: unknown key"):
        load_config("local", conf)
