"""Deployment files: the image, the compose stack, the emulator config, the Azure overlay
and the Databricks bundle.

Structure checks, pure Python (YAML and text in, assertions out): no Docker needed, so they
are unit tests. `docker compose config` over every profile is in
tests/integration/test_docker.py (marker `docker`: it needs a compose client).
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.config import load_config
from streaming.jars import SPARK_PACKAGES

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
COMPOSE_FILE = DOCKER / "compose.yaml"
DOCKERFILE = DOCKER / "Dockerfile"
EMULATOR_CONFIG = DOCKER / "eventhubs-emulator" / "config.json"
DEPLOY_DOC = REPO / "docs" / "deploy.md"
AZURE_DOC = REPO / "docs" / "azure.md"
BUNDLE_FILE = REPO / "databricks.yml"

PROFILES = ("kafka", "eventhubs", "mlflow")
# What each profile must bring up: a whole pipeline per broker, or MLflow alone.
EXPECTED_SERVICES = {
    "kafka": {"kafka", "kafka-init", "mlflow", "train", "job", "simulator", "endpoint"},
    "eventhubs": {
        "azurite",
        "eventhubs",
        "eventhubs-health",
        "mlflow",
        "train",
        "job-eventhubs",
        "simulator-eventhubs",
        "endpoint",
    },
    "mlflow": {"mlflow", "train", "endpoint"},
}
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?err}; `$${...}` is a literal dollar.
_VARIABLE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)([^}]*)\}")
_SECRET_NAME = re.compile(r"(SECRET|PASSWORD|TOKEN|ACCESS_?KEY|CONNECTION_STRING|CREDENTIAL)", re.I)
_SECRET_VALUE = re.compile(r"(SharedAccessKey=|AccountKey=|SharedAccessSignature=|sig=)", re.I)
_BUNDLE_VARIABLE = re.compile(r"\$\{var\.([A-Za-z0-9_]+)\}")


@cache
def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


def _services() -> dict[str, dict[str, Any]]:
    return _compose()["services"]


def _active_services(profile: str) -> set[str]:
    return {
        name
        for name, svc in _services().items()
        if not svc.get("profiles") or profile in svc["profiles"]
    }


def _depends_on(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):  # short syntax: no condition at all
        return {name: {} for name in deps}
    return deps


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def _bundle_documents() -> list[dict[str, Any]]:
    bundle = yaml.safe_load(BUNDLE_FILE.read_text(encoding="utf-8"))
    files = sorted({p for pattern in bundle["include"] for p in REPO.glob(pattern)})
    return [bundle, *(yaml.safe_load(p.read_text(encoding="utf-8")) for p in files)]


def _bundle_jobs() -> dict[str, dict[str, Any]]:
    jobs: dict[str, dict[str, Any]] = {}
    for document in _bundle_documents()[1:]:
        jobs.update(document.get("resources", {}).get("jobs", {}))
    return jobs


# --- compose structure (always) ------------------------------------------------------------


@pytest.mark.parametrize("profile", PROFILES)
def test_each_profile_brings_its_services(profile: str) -> None:
    assert _active_services(profile) == EXPECTED_SERVICES[profile]


def test_every_service_belongs_to_a_profile() -> None:
    # A plain `docker compose up` must not half-start a pipeline with no broker.
    assert [n for n, s in _services().items() if not s.get("profiles")] == []


def test_every_service_is_health_checked_or_waits_on_a_condition() -> None:
    unchecked = []
    for name, svc in _services().items():
        deps = _depends_on(svc)
        waits = bool(deps) and all("condition" in spec for spec in deps.values())
        if "healthcheck" not in svc and not waits:
            unchecked.append(name)
    assert unchecked == []


def test_dependencies_are_enabled_by_every_profile_of_their_dependents() -> None:
    services = _services()
    missing = []
    for name, svc in services.items():
        for dep in _depends_on(svc):
            assert dep in services, f"{name} depends on unknown service {dep}"
            dep_profiles = services[dep].get("profiles") or []
            for profile in svc.get("profiles") or []:
                if dep_profiles and profile not in dep_profiles:
                    missing.append(f"{name} -> {dep} under --profile {profile}")
    assert missing == []


def test_conditions_match_what_the_dependency_offers() -> None:
    services = _services()
    for name, svc in services.items():
        for dep, spec in _depends_on(svc).items():
            condition = spec.get("condition")
            if condition == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits on {dep}, which has none"
            elif condition == "service_completed_successfully":
                assert services[dep].get("restart") == "no", f"{dep} must be a one-shot"
            else:
                assert condition == "service_started", f"{name} -> {dep}: {condition}"


def test_pipeline_services_run_the_docker_environment() -> None:
    for name in ("train", "endpoint", "job", "simulator", "job-eventhubs", "simulator-eventhubs"):
        assert _environment(_services()[name]).get("PITSTOP_ENV") == "docker", name


def _without_comments(text: str) -> str:
    return "\n".join(re.sub(r"(^|\s)#.*$", "", line) for line in text.splitlines())


def test_compose_variables_have_defaults_and_are_documented() -> None:
    text = _without_comments(COMPOSE_FILE.read_text(encoding="utf-8"))
    doc = DEPLOY_DOC.read_text(encoding="utf-8")
    found = _VARIABLE.findall(text)
    assert found, "expected ${...} references (image tags, ports)"
    for name, operator in found:
        assert operator.startswith((":-", "-")), f"${{{name}}} has no default"
        assert f"`{name}`" in doc, f"{name} is not documented in docs/deploy.md"


def test_compose_holds_no_secret_but_the_emulator_development_key() -> None:
    for name, svc in _services().items():
        for key, value in _environment(svc).items():
            if _SECRET_VALUE.search(value):
                assert "UseDevelopmentEmulator=true" in value, f"{name}.{key} holds a secret"
            elif _SECRET_NAME.search(key) and not key.endswith("_ENV"):
                assert value == "" or value.startswith("${"), f"{name}.{key} holds a secret"


def test_kafka_topics_match_the_local_broker() -> None:
    script = _services()["kafka-init"]["command"][0]
    created = dict(re.findall(r"([a-z-]+):(\d+)", script.split(";")[0]))
    expected = load_config("local").broker.partitions
    assert {t: int(p) for t, p in created.items()} == expected


def test_docker_overlay_points_at_compose_services() -> None:
    cfg = load_config("docker")
    services = _services()
    host, port = cfg.kafka.bootstrap_servers.rsplit(":", 1)
    assert host in services
    assert f"//0.0.0.0:{port}" in services[host]["environment"]["KAFKA_LISTENERS"]
    assert cfg.mlflow.tracking_uri == "http://mlflow:5000"
    assert "--port=5000" in services["mlflow"]["command"]
    assert "mlflow" in services
    # Everything that must outlive a container sits on the mounted volume.
    assert any(v.endswith(":/data") for v in services["job"]["volumes"])
    for path in (cfg.storage.lake, cfg.storage.checkpoints, cfg.simulator.output):
        assert path.startswith("/data/")


def test_eventhubs_override_reaches_the_emulator_kafka_endpoint() -> None:
    env = _environment(_services()["job-eventhubs"])
    assert env["PITSTOP__KAFKA__BOOTSTRAP_SERVERS"] == "eventhubs:9092"
    assert env["PITSTOP__KAFKA__SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
    secret_var = env["PITSTOP__KAFKA__CONNECTION_STRING_ENV"]
    assert env[secret_var].startswith("Endpoint=sb://eventhubs;")
    # Its own lake: both profiles can run side by side without sharing checkpoints.
    assert env["PITSTOP__STORAGE__CHECKPOINTS"] != load_config("docker").storage.checkpoints


# --- the image ------------------------------------------------------------------------------


def _dockerfile_instructions() -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    lines = [ln.strip() for ln in joined.splitlines() if ln.strip() and not ln.startswith("#")]
    return [
        (ln.split(None, 1)[0].upper(), ln.split(None, 1)[1] if " " in ln else "") for ln in lines
    ]


def test_image_runs_pitstop_as_a_non_root_user() -> None:
    steps = _dockerfile_instructions()
    final_stage = max(i for i, (op, _) in enumerate(steps) if op == "FROM")
    users = [arg for op, arg in steps[final_stage:] if op == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert ("ENTRYPOINT", '["pitstop"]') in steps


def test_image_has_python_311_java_17_cpu_torch_and_baked_jars() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r"python:3\.11-slim", text)
    assert "openjdk-17-jre-headless" in text
    assert "download.pytorch.org/whl/cpu" in text
    assert "bake_jars.py" in text and (DOCKER / "bake_jars.py").is_file()


def test_image_bakes_no_secret() -> None:
    for op, arg in _dockerfile_instructions():
        if op in ("ENV", "ARG"):
            names = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", arg) or [arg.split()[0]]
            assert not any(_SECRET_NAME.search(n) for n in names), arg
            assert not _SECRET_VALUE.search(arg), arg


def test_build_context_leaves_out_local_state_and_secrets() -> None:
    ignored = set((REPO / ".dockerignore").read_text(encoding="utf-8").split())
    assert {".env", "conf/local/secrets.yaml", ".pitstop", ".venv", ".git"} <= ignored


# --- the Event Hubs emulator ----------------------------------------------------------------


def test_emulator_config_declares_the_topics_and_consumer_groups() -> None:
    user = json.loads(EMULATOR_CONFIG.read_text(encoding="utf-8"))["UserConfig"]
    (namespace,) = user["NamespaceConfig"]
    assert namespace["Type"] == "EventHub" and namespace["Name"] == "emulatorNs1"
    hubs = {e["Name"]: e for e in namespace["Entities"]}
    topics = load_config("local").kafka.topics
    partitions = load_config("local").broker.partitions
    for topic in (topics.telemetry, topics.notes, topics.alerts):
        assert hubs[topic]["PartitionCount"] == str(partitions[topic])  # a string, per schema
        groups = [g["Name"] for g in hubs[topic]["ConsumerGroups"]]
        assert 1 <= len(groups) <= 20 and "$default" not in [g.lower() for g in groups]
    assert user["LoggingConfig"]["Type"] in ("File", "Console", "File,Console", "Console,File")


# --- Azure overlay and docs -----------------------------------------------------------------


def test_azure_overlay_loads_and_keeps_secrets_out() -> None:
    cfg = load_config("azure")
    assert cfg.kafka.bootstrap_servers.endswith(".servicebus.windows.net:9093")
    assert (cfg.kafka.security_protocol, cfg.kafka.sasl_mechanism) == ("SASL_SSL", "PLAIN")
    assert cfg.kafka.connection_string_env == "EVENTHUBS_CONNECTION_STRING"
    assert int(cfg.kafka.client_options["connections.max.idle.ms"]) < 240_000
    assert cfg.storage.lake.startswith("abfss://") and cfg.storage.checkpoints.startswith(
        "abfss://"
    )
    text = (REPO / "conf" / "azure" / "pitstop.yaml").read_text(encoding="utf-8")
    assert not _SECRET_VALUE.search(text)


def test_every_azure_placeholder_is_explained() -> None:
    values = _without_comments(
        (REPO / "conf" / "azure" / "pitstop.yaml").read_text(encoding="utf-8")
    )
    doc = AZURE_DOC.read_text(encoding="utf-8")
    placeholders = set(re.findall(r"<[a-z-]+>", values))
    assert placeholders
    assert {p for p in placeholders if p not in doc} == set()


def test_azure_doc_names_the_pinned_jars() -> None:
    doc = AZURE_DOC.read_text(encoding="utf-8")
    assert [c for c in SPARK_PACKAGES if c not in doc] == []
    assert "kafkashaded.org.apache.kafka.common.security.plain.PlainLoginModule" in doc
    assert "{{secrets/" in doc


# --- Databricks Asset Bundle (no databricks CLI here: structure only) ----------------------


def test_bundle_has_name_targets_and_resources() -> None:
    bundle = _bundle_documents()[0]
    assert bundle["bundle"]["name"] == "pitstop"
    assert bundle["targets"]["dev"]["mode"] == "development"
    assert bundle["targets"]["dev"].get("default") is True
    assert bundle["targets"]["prod"]["mode"] == "production"
    assert bundle["artifacts"]["pitstop_wheel"]["type"] == "whl"
    assert set(_bundle_jobs()) == {
        "pitstop_streaming",
        "pitstop_retrain",
        "pitstop_retrain_automl",
        "pitstop_retrain_compliance",
    }


def test_bundle_variables_are_declared_and_defaults_only_where_safe() -> None:
    documents = _bundle_documents()
    declared = documents[0]["variables"]
    used = set()
    for document in documents:
        used |= set(_BUNDLE_VARIABLE.findall(json.dumps(document)))
    assert used - set(declared) == set()
    assert set(declared) - used == set(), "declared but never used"
    for name, spec in declared.items():
        assert spec.get("description"), name
    # Where resources live has no sensible default: deploying must name them.
    for required in ("eventhubs_namespace", "storage_account", "tenant_id"):
        assert "default" not in declared[required]


def test_bundle_tasks_have_compute_and_the_wheel() -> None:
    for job_name, job in _bundle_jobs().items():
        clusters = {c["job_cluster_key"]: c["new_cluster"] for c in job["job_clusters"]}
        for task in job["tasks"]:
            assert task["job_cluster_key"] in clusters, f"{job_name}.{task['task_key']}"
            assert {"whl": "../dist/*.whl"} in task["libraries"]
        for cluster in clusters.values():
            assert cluster["spark_version"] == "${var.spark_version}"
            assert cluster["data_security_mode"] == "SINGLE_USER"
            assert cluster["spark_env_vars"]["PITSTOP_ENV"] == "azure"


def test_streaming_job_runs_job_py_on_event_hubs_with_the_secret_from_a_scope() -> None:
    job = _bundle_jobs()["pitstop_streaming"]
    (task,) = job["tasks"]
    python_file = (REPO / "resources" / task["spark_python_task"]["python_file"]).resolve()
    assert python_file == REPO / "streaming" / "job.py" and python_file.is_file()
    assert task["spark_python_task"]["parameters"] == ["--env", "azure"]
    assert "continuous" in job
    env = job["job_clusters"][0]["new_cluster"]["spark_env_vars"]
    assert env["EVENTHUBS_CONNECTION_STRING"] == (
        "{{secrets/${var.secret_scope}/${var.eventhubs_secret_key}}}"
    )
    assert env["PITSTOP__KAFKA__LOGIN_MODULE"].startswith("kafkashaded.")
    # Every value that is not a reference is a plain setting, never a credential.
    for document in _bundle_documents():
        assert not _SECRET_VALUE.search(json.dumps(document))


def test_retrain_job_is_scheduled_and_trains_on_the_telemetry_table() -> None:
    job = _bundle_jobs()["pitstop_retrain"]
    declared = _bundle_documents()[0]["variables"]
    assert job["schedule"]["quartz_cron_expression"] == "${var.retrain_cron}"
    assert len(declared["retrain_cron"]["default"].split()) in (6, 7)  # Quartz, not Unix cron
    assert job["schedule"]["timezone_id"]
    (task,) = job["tasks"]
    wheel = task["python_wheel_task"]
    assert (wheel["package_name"], wheel["entry_point"]) == ("pitstop", "pitstop")
    params = wheel["parameters"]
    assert params[params.index("train") : params.index("train") + 2] == ["train", "rnn"]
    assert params[params.index("--data") + 1].endswith("/pitstop/lake/telemetry")


def test_automl_retraining_is_scheduled_beside_the_lstms() -> None:
    job = _bundle_jobs()["pitstop_retrain_automl"]
    declared = _bundle_documents()[0]["variables"]
    assert job["schedule"]["quartz_cron_expression"] == "${var.automl_retrain_cron}"
    assert len(declared["automl_retrain_cron"]["default"].split()) in (6, 7)  # Quartz
    (task,) = job["tasks"]
    params = task["python_wheel_task"]["parameters"]
    assert params[params.index("train") : params.index("train") + 2] == ["train", "automl"]
    assert params[params.index("--time-budget") + 1] == "10m"
    # The lake is remote on Azure: without --data training would refuse.
    assert params[params.index("--data") + 1].endswith("/pitstop/lake/telemetry")
    for name in ("pitstop_retrain", "pitstop_retrain_automl"):
        env = _bundle_jobs()[name]["job_clusters"][0]["new_cluster"]["spark_env_vars"]
        # delta-rs reads the telemetry table with the cluster's service principal.
        assert env["AZURE_CLIENT_SECRET"].startswith("{{secrets/")


def test_compliance_retraining_is_scheduled_and_names_its_labelled_notes() -> None:
    job = _bundle_jobs()["pitstop_retrain_compliance"]
    declared = _bundle_documents()[0]["variables"]
    assert job["schedule"]["quartz_cron_expression"] == "${var.compliance_retrain_cron}"
    assert len(declared["compliance_retrain_cron"]["default"].split()) in (6, 7)  # Quartz
    (task,) = job["tasks"]
    wheel = task["python_wheel_task"]
    assert (wheel["package_name"], wheel["entry_point"]) == ("pitstop", "pitstop")
    params = wheel["parameters"]
    assert params[params.index("train") : params.index("train") + 2] == ["train", "compliance"]
    # The lake is remote on Azure: without --data the command would refuse to train.
    assert params[params.index("--data") + 1].startswith("/Volumes/${var.uc_catalog}/")
    env = job["job_clusters"][0]["new_cluster"]["spark_env_vars"]
    assert env["PITSTOP__MLFLOW__MODELS__COMPLIANCE"].endswith(".component_compliance")
