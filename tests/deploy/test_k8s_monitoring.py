"""The monitoring objects of the prod overlays: the scrape configuration and the dashboards as
rendered ConfigMaps, byte-identical to observability/, and the Prometheus Operator's PodMonitor
and PrometheusRule, equivalent to the plain scrape job and alerts.yml."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.deploy.k8s_support import KUBECTL, ROOT, containers, find, of_kind, pod_owners, render

pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not on PATH: cannot render k8s/")

PROD = ("prod", "prod-prometheus-operator")
OBSERVABILITY = ROOT / "observability"
DASHBOARDS = sorted((OBSERVABILITY / "grafana" / "dashboards").glob("*.json"))
# kubectl apply keeps a copy of the object in an annotation; annotations are limited to 256 KiB.
LAST_APPLIED_LIMIT = 256 * 1024


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def test_there_are_six_dashboards() -> None:
    assert len(DASHBOARDS) == 6


@pytest.mark.parametrize("overlay", PROD)
def test_the_dashboards_configmap_holds_the_six_dashboards_byte_for_byte(overlay: str) -> None:
    configmap = find(render(overlay), "ConfigMap", "xrouter-dashboards")
    assert configmap["metadata"]["namespace"] == "monitoring"
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["data"] == {path.name: read(path) for path in DASHBOARDS}
    assert len(json.dumps(configmap, separators=(",", ":"))) < LAST_APPLIED_LIMIT, \
        "too big for client-side kubectl apply: split the ConfigMap or document --server-side"


@pytest.mark.parametrize("overlay", PROD)
def test_the_prometheus_configmap_is_the_repository_scrape_config(overlay: str) -> None:
    configmap = find(render(overlay), "ConfigMap", "xrouter-prometheus")
    assert configmap["metadata"]["namespace"] == "monitoring"
    prometheus = OBSERVABILITY / "prometheus"
    assert configmap["data"] == {"prometheus.yml": read(prometheus / "prometheus.yml"),
                                 "alerts.yml": read(prometheus / "alerts.yml")}
    config = yaml.safe_load(configmap["data"]["prometheus.yml"])
    assert config["rule_files"] == ["alerts.yml"]  # found next to it in the mounted directory


def test_dev_ships_no_monitoring_objects() -> None:
    names = {d["metadata"]["name"] for d in of_kind(render("dev"), "ConfigMap")}
    assert {"xrouter-dashboards", "xrouter-prometheus"}.isdisjoint(names)


def test_only_the_operator_overlay_has_custom_resources() -> None:
    for overlay in ("dev", "prod"):
        assert {d["apiVersion"] for d in render(overlay)}.isdisjoint({"monitoring.coreos.com/v1"})


def test_the_podmonitor_scrapes_what_the_scrape_job_scrapes() -> None:
    docs = render("prod-prometheus-operator")
    monitor = find(docs, "PodMonitor", "xrouter")
    assert monitor["metadata"]["namespace"] == "xrouter"
    config = yaml.safe_load(read(OBSERVABILITY / "prometheus" / "prometheus.yml"))
    keep = config["scrape_configs"][0]["relabel_configs"][0]
    assert keep["source_labels"] == ["__meta_kubernetes_pod_label_app_kubernetes_io_part_of"]
    assert monitor["spec"]["selector"] == {"matchLabels": {"app.kubernetes.io/part-of": keep["regex"]}}
    endpoints = {e["port"]: e for e in monitor["spec"]["podMetricsEndpoints"]}
    assert endpoints.keys() == {"http", "metrics"}
    for endpoint in endpoints.values():
        assert endpoint["path"] == "/metrics"
        assert {"targetLabel": "job", "replacement": "xrouter", "action": "replace"} in \
            endpoint["relabelings"]
        assert {"sourceLabels": ["__meta_kubernetes_pod_label_app"], "targetLabel": "app",
                "action": "replace"} in endpoint["relabelings"]
    # Each XRouter pod that serves metrics matches exactly one endpoint, on its annotated port.
    for doc, template in pod_owners(docs):
        annotation = template["metadata"].get("annotations", {}).get("prometheus.io/port")
        ports = {p["name"]: p["containerPort"] for c in containers(template) for p in c.get("ports", [])}
        matched = [ports[port] for port in endpoints if port in ports]
        assert matched == ([int(annotation)] if annotation else []), doc["metadata"]["name"]


def test_the_prometheusrule_holds_the_repository_alerts() -> None:
    rule = find(render("prod-prometheus-operator"), "PrometheusRule", "xrouter")
    assert rule["metadata"]["namespace"] == "xrouter"
    alerts = yaml.safe_load(read(OBSERVABILITY / "prometheus" / "alerts.yml"))
    assert rule["spec"] == {"groups": alerts["groups"]}
