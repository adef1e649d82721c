"""Layered, validated configuration: conf/base -> conf/<env> -> PITSTOP__* environment variables.

pydantic-settings reads the layers (a YAML source per file, an environment source for the
variables) and merges them, the later layer winning key by key. Every section is a strict
pydantic model (unknown keys are errors); a failure names the file or environment variable
that set the offending key. Secrets are never stored in the files: the config names the
environment variable that holds them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)
from pydantic_settings.exceptions import SettingsError
from pydantic_settings.sources.utils import parse_env_vars

from core.errors import PitstopError

CONFIG_FILE = "pitstop.yaml"
ENV_PREFIX = "PITSTOP__"
ENV_NAME_VAR = "PITSTOP_ENV"
CONF_DIR_VAR = "PITSTOP_CONF_DIR"


class ConfigError(PitstopError, ValueError):
    """Configuration could not be loaded; the message names the file and key to fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TopicsConfig(_Strict):
    telemetry: str = "battery-telemetry"
    notes: str = "component-notes"
    alerts: str = "vehicle-alerts"


class KafkaConfig(_Strict):
    bootstrap_servers: str
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN"] | None = None
    connection_string_env: str | None = None
    # Databricks shades Kafka: there the class is prefixed with `kafkashaded.`.
    login_module: str = "org.apache.kafka.common.security.plain.PlainLoginModule"
    topics: TopicsConfig = TopicsConfig()
    client_options: dict[str, str] = Field(default_factory=dict)

    def connection_string(self) -> SecretStr | None:
        """The Event Hubs connection string from the environment, if one is configured."""
        if self.connection_string_env is None:
            return None
        value = os.environ.get(self.connection_string_env, "").strip()
        if not value:
            raise ConfigError(
                f"kafka.connection_string_env names {self.connection_string_env}, "
                "but that environment variable is not set; export it with the Event Hubs "
                "connection string."
            )
        if not value.startswith("Endpoint=sb://") or "SharedAccessKey" not in value:
            raise ConfigError(
                f"The value of {self.connection_string_env} is not an Event Hubs connection "
                "string (expected 'Endpoint=sb://...;SharedAccessKeyName=...;SharedAccessKey=...')."
            )
        return SecretStr(value)


class BrokerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(9092, ge=1, le=65535)
    controller_port: int = Field(9094, ge=1, le=65535)
    partitions: dict[str, int] = Field(default_factory=dict)
    start_timeout_s: float = Field(90, gt=0)

    @field_validator("partitions")
    @classmethod
    def _positive_partitions(cls, value: dict[str, int]) -> dict[str, int]:
        for topic, count in value.items():
            if count < 1:
                raise ValueError(f"topic {topic!r} needs at least 1 partition, got {count}")
        return value


class SparkConfig(_Strict):
    master: str | None = "local[2]"
    app_name: str = "pitstop"
    shuffle_partitions: int = Field(2, ge=1)
    arrow_batch_size: int = Field(1000, ge=1)
    driver_memory: str = "2g"
    ui_enabled: bool = False
    conf: dict[str, str] = Field(default_factory=dict)


class StorageConfig(_Strict):
    lake: str
    checkpoints: str

    def table(self, name: str) -> str:
        """Location of the Delta table `name`."""
        return f"{self.lake.rstrip('/')}/{name}"

    def checkpoint(self, query: str) -> str:
        """Checkpoint location of the streaming query `query`."""
        return f"{self.checkpoints.rstrip('/')}/{query}"


class StreamConfig(_Strict):
    query_name: str = "battery-telemetry"
    trigger_seconds: float = Field(2.0, gt=0)
    max_offsets_per_trigger: int | None = Field(200_000, ge=1)
    starting_offsets: Literal["earliest", "latest"] = "earliest"
    min_partitions: int | None = Field(None, ge=1)
    fail_on_data_loss: bool = True
    # A reading more than this many days before its battery's latest stored reading is late.
    late_after_days: int = Field(14, ge=0)
    publish_alerts: bool = True  # publish alert openings to kafka.topics.alerts
    score_notes: bool = True  # also run the component-notes query
    # A battery with no new reading for this long leaves the stream's state (its history,
    # and so its next reading counts as the first of a battery new to the stream).
    state_ttl_days: float = Field(90, gt=0)
    # Prometheus metrics of the job at http://metrics_host:metrics_port/metrics (0: off).
    metrics_port: int = Field(9464, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"


class ForecastConfig(_Strict):
    window_days: int = Field(60, ge=1)
    horizon_days: int = Field(30, ge=1)
    alert_within_days: int = Field(30, ge=1)
    alert_margin_days: int = Field(3, ge=0)
    model: str = "battery-cycles-rnn"
    shadow_models: list[str] = Field(default_factory=list)


class MonitorConfig(_Strict):
    """Forecast accuracy monitoring (`pitstop monitor`) and the champion's health check."""

    query_name: str = "forecast-accuracy"
    trigger_seconds: float = Field(30.0, gt=0)
    with_stream: bool = False  # also run the monitor query inside the streaming job
    # Wait at most this long for the forecasts of a reading stored moments ago (the stream
    # commits a batch's telemetry and forecasts side by side).
    wait_seconds: float = Field(30.0, ge=0)
    window_days: int = Field(7, ge=1)  # live NRMSE and MAE pool this many days of targets
    min_pairs: int = Field(100, ge=1)  # a day's window counts with at least this many pairs
    # The champion is degraded when its live NRMSE exceeds its holdout NRMSE by this fraction
    # (0.25: 25% worse) on `days` consecutive days.
    margin: float = Field(0.25, ge=0)
    days: int = Field(3, ge=1)
    retrain: bool = False  # then start `pitstop train rnn --data <lake telemetry>`


class ModelNames(_Strict):
    rnn: str = "battery-cycles-rnn"
    automl: str = "battery-cycles-automl"
    compliance: str = "component-compliance"


class MlflowConfig(_Strict):
    tracking_uri: str
    registry_uri: str | None = None
    artifact_root: str | None = None
    experiment: str = "pitstop"
    alias: str = "champion"
    # How often the stream asks the registry where the alias points (0: every micro-batch).
    alias_refresh_seconds: float = Field(10, ge=0)
    models: ModelNames = ModelNames()


class SimulatorConfig(_Strict):
    batteries: int = Field(200, ge=1)
    days: int = Field(400, ge=1)
    start_date: str = "2024-01-01"
    seed: int = 7
    output: str = ".pitstop/simulator"


class PitstopConfig(BaseSettings):
    """The whole configuration of one environment (`load_config` builds it)."""

    model_config = SettingsConfigDict(
        extra="forbid",
        frozen=True,
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        case_sensitive=False,
        env_parse_none_str="null",
    )

    env: str = "local"
    root: str = "."
    home: str = ".pitstop"
    kafka: KafkaConfig
    broker: BrokerConfig = BrokerConfig()
    spark: SparkConfig = SparkConfig()
    storage: StorageConfig
    stream: StreamConfig = StreamConfig()
    forecast: ForecastConfig = ForecastConfig()
    mlflow: MlflowConfig
    simulator: SimulatorConfig = SimulatorConfig()
    monitor: MonitorConfig = MonitorConfig()

    @model_validator(mode="before")
    @classmethod
    def _resolve_paths(cls, data: Any) -> Any:
        """Relative local paths (and SQLite URIs) resolve against the project root, so
        spark-submit and the CLI agree whatever the working directory."""
        if isinstance(data, dict) and isinstance(data.get("root"), str):
            _resolve_paths(data, Path(data["root"]))
        return data

    def path(self, relative: str) -> Path:
        """A local path from the config, resolved against the project root."""
        candidate = Path(relative)
        return candidate if candidate.is_absolute() else Path(self.root) / candidate

    def environment(self) -> dict[str, str]:
        """`PITSTOP__` variables that make `load_config` in another process, whatever its
        files say, return this very configuration (a launched job sees what its launcher
        resolved). One variable per section, as JSON; no secret is in it."""
        dumped = self.model_dump(mode="json", exclude={"env", "root"})
        return {
            ENV_PREFIX + key.upper(): value if isinstance(value, str) else json.dumps(value)
            for key, value in dumped.items()
        }


# Keys whose values are local paths or URIs with a relative local part.
_PATH_KEYS = (
    ("home",),
    ("storage", "lake"),
    ("storage", "checkpoints"),
    ("mlflow", "artifact_root"),
    ("simulator", "output"),
)


class _YamlEnvSource(EnvSettingsSource):
    """PITSTOP__ variables; a structured value (a section, a dict, a list) is read as YAML,
    of which JSON is a part, as the files are. An empty value means null, as `null` does."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        prefix = self.env_prefix.lower()
        environ = {
            name: "null" if value == "" and name.lower().startswith(prefix) else value
            for name, value in os.environ.items()
        }
        return parse_env_vars(
            environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
        )

    def decode_complex_value(self, field_name: str, field: FieldInfo | None, value: Any) -> Any:
        try:
            return yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ValueError(f"not YAML: {exc}") from None


def find_conf_dir(start: Path | None = None) -> Path:
    """The conf/ folder: $PITSTOP_CONF_DIR, else the nearest conf/base above `start`."""
    explicit = os.environ.get(CONF_DIR_VAR)
    if explicit:
        conf = Path(explicit).expanduser().resolve()
        if not (conf / "base" / CONFIG_FILE).is_file():
            raise ConfigError(f"{CONF_DIR_VAR}={explicit} has no base/{CONFIG_FILE}.")
        return conf
    anchors = [Path(start or Path.cwd()).resolve(), Path(__file__).resolve().parent]
    for anchor in anchors:
        for folder in (anchor, *anchor.parents):
            if (folder / "conf" / "base" / CONFIG_FILE).is_file():
                return folder / "conf"
    raise ConfigError(
        f"No conf/base/{CONFIG_FILE} found above {anchors[0]}; run from the Pitstop checkout "
        f"or set {CONF_DIR_VAR}."
    )


def load_config(env: str | None = None, conf_dir: Path | None = None) -> PitstopConfig:
    """Load and validate the configuration of `env` (default $PITSTOP_ENV, else `local`)."""
    env = env or os.environ.get(ENV_NAME_VAR) or "local"
    conf_dir = conf_dir or find_conf_dir()
    overlay = conf_dir / env / CONFIG_FILE
    if not overlay.parent.is_dir():
        known = sorted(p.name for p in conf_dir.iterdir() if (p / CONFIG_FILE).is_file())
        raise ConfigError(f"Unknown environment {env!r}: choose one of {', '.join(known)}.")
    _reject_unknown_sections()
    layers: list[tuple[str, PydanticBaseSettingsSource]] = []
    try:
        layers.append(("", _YamlEnvSource(PitstopConfig)))
    except SettingsError as exc:
        raise ConfigError(f"Invalid configuration from the environment: {exc}.") from None
    for path in (overlay, conf_dir / "base" / CONFIG_FILE):
        if path.is_file():
            layers.append((str(path), _yaml_source(path)))
    # Highest priority first: what the loader decides, then variables, then env, then base.
    loader = InitSettingsSource(PitstopConfig, {"env": env, "root": str(conf_dir.parent)})
    sources = (loader, *(source for _, source in layers))
    try:
        return PitstopConfig(_build_sources=(sources, {}))
    except SettingsError as exc:
        raise ConfigError(f"Invalid configuration from the environment: {exc}.") from None
    except ValidationError as exc:
        raise ConfigError(_describe(exc, layers)) from None


def _reject_unknown_sections() -> None:
    """The environment source reads only variables of known sections; a misspelt section
    (PITSTOP__STRAEM__...) is an error here, as a misspelt key inside a section is."""
    for name in sorted(os.environ):
        if name.upper().startswith(ENV_PREFIX):
            section = name[len(ENV_PREFIX) :].split("__")[0].lower()
            if section not in PitstopConfig.model_fields:
                raise ConfigError(f"Invalid configuration — {name}: unknown key '{section}'.")


def _yaml_source(path: Path) -> YamlConfigSettingsSource:
    try:
        source = YamlConfigSettingsSource(PitstopConfig, yaml_file=path, yaml_file_encoding="utf-8")
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(source.yaml_data, dict):
        kind = type(source.yaml_data).__name__
        raise ConfigError(f"{path} must hold a mapping of sections, not {kind}.")
    return source


def _resolve_paths(merged: dict[str, Any], root: Path) -> None:
    for keys in _PATH_KEYS:
        node = merged
        for key in keys[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            continue
        value = node.get(keys[-1])
        if isinstance(value, str) and "://" not in value and not Path(value).is_absolute():
            node[keys[-1]] = str((root / value).resolve())
    mlflow = merged.get("mlflow")
    if isinstance(mlflow, dict):
        for key in ("tracking_uri", "registry_uri"):
            uri = mlflow.get(key)
            if (
                isinstance(uri, str)
                and uri.startswith("sqlite:///")
                and not uri.startswith("sqlite:////")
            ):
                mlflow[key] = "sqlite:///" + str((root / uri[len("sqlite:///") :]).resolve())


def _origin(path: tuple[str, ...], layers: list[tuple[str, PydanticBaseSettingsSource]]) -> str:
    """The file or variable that set `path` (or the nearest key above it), highest layer first."""
    for depth in range(len(path), 0, -1):
        prefix = path[:depth]
        for name, source in layers:
            node: Any = source()
            for key in prefix:
                node = node.get(key) if isinstance(node, dict) else None
                if node is None:
                    break
            else:
                return name or ENV_PREFIX + "__".join(p.upper() for p in prefix)
    return "the configuration"


def _describe(exc: ValidationError, layers: list[tuple[str, PydanticBaseSettingsSource]]) -> str:
    problems = []
    for error in exc.errors():
        path = tuple(str(p) for p in error["loc"])
        source = _origin(path, layers)
        key = ".".join(path)
        if error["type"] == "extra_forbidden":
            problems.append(f"{source}: unknown key '{key}'")
        elif error["type"] == "missing":
            problems.append(f"{source}: required key '{key}' is missing")
        else:
            problems.append(f"{source}: '{key}' {error['msg']}")
    return "Invalid configuration — " + "; ".join(problems) + "."
