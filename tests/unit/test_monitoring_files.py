"""The compose profile `monitoring`: Prometheus scrapes the job, Grafana shows what it exports.

Static checks (YAML and JSON in, assertions out): they need no Docker engine.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from core.config import load_config
from streaming.metrics import StreamMetrics

pytestmark = pytest.mark.unit

DOCKER = Path(__file__).resolve().parents[2] / "docker"
COMPOSE = yaml.safe_load((DOCKER / "compose.yaml").read_text(encoding="utf-8"))
SERVICES = COMPOSE["services"]
PROMETHEUS = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"))
DATASOURCES = yaml.safe_load(
    (DOCKER / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text("utf-8")
)
PROVIDERS = yaml.safe_load(
    (DOCKER / "grafana" / "provisioning" / "dashboards" / "pitstop.yml").read_text("utf-8")
)
DASHBOARD = json.loads(
    (DOCKER / "grafana" / "dashboards" / "pitstop-stream.json").read_text(encoding="utf-8")
)


def _mounts(service: str) -> dict[str, str]:
    """container path -> host path (relative to docker/) of a service's bind mounts."""
    mounts = {}
    for volume in SERVICES[service].get("volumes", []):
        host, container = volume.split(":")[:2]
        if host.startswith("./"):
            mounts[container] = host
    return mounts


def test_the_monitoring_profile_brings_prometheus_and_grafana_only() -> None:
    active = {n for n, s in SERVICES.items() if "monitoring" in s.get("profiles", [])}
    assert active == {"prometheus", "grafana"}
    assert SERVICES["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"


def test_prometheus_scrapes_the_jobs_metrics_port_on_the_compose_network() -> None:
    cfg = load_config("docker")
    assert cfg.stream.metrics_host == "0.0.0.0"  # reachable from the prometheus container
    assert load_config("local").stream.metrics_host == "127.0.0.1"  # loopback elsewhere
    targets = {
        target
        for job in PROMETHEUS["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    }
    assert targets == {f"job:{cfg.stream.metrics_port}", f"job-eventhubs:{cfg.stream.metrics_port}"}
    assert {"job", "job-eventhubs"} <= set(SERVICES)
    assert _mounts("prometheus")["/etc/prometheus/prometheus.yml"] == "./prometheus/prometheus.yml"


def test_grafana_is_provisioned_with_the_datasource_and_dashboard_it_mounts() -> None:
    mounts = _mounts("grafana")
    assert mounts["/etc/grafana/provisioning"] == "./grafana/provisioning"
    folder = PROVIDERS["providers"][0]["options"]["path"]
    assert mounts[folder] == "./grafana/dashboards"
    source = DATASOURCES["datasources"][0]
    assert source["url"] == "http://prometheus:9090" and source["type"] == "prometheus"
    used = {p["datasource"]["uid"] for p in DASHBOARD["panels"]}
    assert used == {source["uid"]}
    home = SERVICES["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{folder}/pitstop-stream.json"


def _exported() -> set[str]:
    """Every sample name the job's registry exposes (histograms' _bucket/_sum/_count too)."""
    metrics = StreamMetrics()
    names = set()
    for family in metrics.registry.collect():
        names.add(family.name)
        names.update({f"{family.name}_total", f"{family.name}_bucket", f"{family.name}_sum"})
        names.add(f"{family.name}_count")
    return names


def test_every_dashboard_query_uses_a_metric_the_job_exports() -> None:
    exported = _exported()
    queried = set()
    for panel in DASHBOARD["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            queried.update(re.findall(r"\bpitstop_[a-z_]+", target["expr"]))
    assert queried and queried <= exported, queried - exported
    # The metrics all appear on the dashboard.
    for name in (
        "pitstop_input_rows_per_second",
        "pitstop_processed_rows_per_second",
        "pitstop_batch_duration_seconds_bucket",
        "pitstop_event_to_alert_seconds_bucket",
        "pitstop_kafka_lag",
        "pitstop_quarantined_total",
        "pitstop_alerts_opened_total",
        "pitstop_alerts_closed_total",
        "pitstop_model_version_info",
    ):
        assert name in queried, name


def test_panels_do_not_overlap() -> None:
    cells = set()
    for panel in DASHBOARD["panels"]:
        g = panel["gridPos"]
        mine = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & mine, panel["title"]
        assert g["x"] + g["w"] <= 24
        cells |= mine
