"""helm/xrouter rendered offline by Helm's own Go code (helm-python): values files, renders, the
`helm install --dry-run=client` pipeline, a copy of the chart without its dependency stanza (the
Bitnami subcharts cannot be downloaded here), and the checks tests/deploy/manifests.py leaves out
(Jobs and CronJobs, Secret references)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python
import yaml

from tests.deploy.manifests import (
    Manifest,
    all_property_problems,
    load_all,
    name,
    non_root_problems,
    resource_problems,
)

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "xrouter"
DASHBOARDS = REPO / "observability" / "grafana" / "dashboards"
CHART_DASHBOARDS = CHART / "dashboards"
PRODUCTION_VALUES = CHART / "values-production.yaml"
MANAGED_DB_VALUES = CHART / "ci" / "managed-db-values.yaml"
EXAMPLE_CATALOG = REPO / "config" / "catalog.example.toml"
RELEASE = "xrouter"
NAMESPACE = "xrouter"
NOTES = "xrouter/templates/NOTES.txt"

Values = dict[str, Any]


def values_file(path: Path) -> Values:
    """A values file as `helm -f` reads it."""
    return helm_python.values_from_yaml(path.read_text(encoding="utf-8"))


def merged(*layers: Mapping[str, Any]) -> Values:
    """Values files given in order (`-f a -f b`): later maps win, key by key."""
    result: Values = {}
    for layer in layers:
        for key, value in layer.items():
            if isinstance(value, Mapping) and isinstance(result.get(key), dict):
                result[key] = merged(result[key], value)
            else:
                result[key] = value
    return result


@dataclass(frozen=True)
class Rendered:
    docs: list[Manifest]
    notes: str

    def get(self, kind: str, object_name: str) -> Manifest:
        found = [doc for doc in self.docs
                 if doc["kind"] == kind and doc["metadata"]["name"] == object_name]
        assert len(found) == 1, f"{kind}/{object_name}: {len(found)} rendered"
        return found[0]

    def names(self, kind: str) -> set[str]:
        return {doc["metadata"]["name"] for doc in self.docs if doc["kind"] == kind}

    def hooks(self) -> list[Manifest]:
        return [doc for doc in self.docs if "helm.sh/hook" in metadata_annotations(doc)]


def render(values: Mapping[str, Any] | None = None, *, namespace: str = NAMESPACE,
           chart: Path = CHART) -> Rendered:
    """`helm template` of this chart's own templates. Helm's engine renders no subchart that
    charts/ does not hold, so the Bitnami objects are absent (the CLI refuses outright: see
    install_dry_run)."""
    with helm_python.Chart.load(chart) as loaded:
        files = loaded.render(values=dict(values or {}), name=RELEASE, namespace=namespace,
                              is_install=True)
    notes = files.pop(NOTES, "")
    docs = [doc for _, text in sorted(files.items()) for doc in load_all(text)]
    return Rendered(docs, notes)


def install_dry_run(chart: Path, values: Mapping[str, Any] | None = None) -> Rendered:
    """`helm install --dry-run=client`: dependency check, kubeVersion, schema, hooks sorted out
    of the manifest. Memory storage; the API server address is never contacted."""
    with helm_python.Config(storage_driver="memory", namespace=NAMESPACE,
                            kube_apiserver="https://127.0.0.1:1") as config:
        release = config.install(str(chart), RELEASE, dict(values or {}), dry_run="client",
                                 namespace=NAMESPACE)
    return Rendered(load_all(release["manifest"]), release["notes"])


def without_dependencies(destination: Path) -> Path:
    """A copy of the chart whose Chart.yaml declares no dependency: what Helm accepts without
    the Bitnami charts in charts/. Everything else is byte for byte the chart."""
    copy = destination / CHART.name
    shutil.copytree(CHART, copy, ignore=shutil.ignore_patterns("charts"))
    metadata = yaml.safe_load((copy / "Chart.yaml").read_text(encoding="utf-8"))
    del metadata["dependencies"]
    (copy / "Chart.yaml").write_text(yaml.safe_dump(metadata, sort_keys=False), encoding="utf-8")
    return copy


def metadata_annotations(doc: Manifest) -> dict[str, str]:
    found: dict[str, str] = doc["metadata"].get("annotations") or {}
    return found


def pod_templates(docs: list[Manifest]) -> Iterator[tuple[Manifest, dict[str, Any]]]:
    """Every pod template: Deployments, Jobs, and the Jobs of CronJobs."""
    for doc in docs:
        spec = doc.get("spec") or {}
        if doc["kind"] == "CronJob":
            spec = spec["jobTemplate"]["spec"]
        if isinstance(spec, dict) and "template" in spec:
            yield doc, spec["template"]


def containers(template: Mapping[str, Any]) -> list[dict[str, Any]]:
    pod = template["spec"]
    return list(pod.get("initContainers", [])) + list(pod["containers"])


def env(container: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in container.get("env", [])}


def secret_references(docs: list[Manifest]) -> list[tuple[str, str]]:
    """(object, Secret name) for every secretKeyRef, envFrom secretRef and secret volume."""
    found = []
    for doc, template in pod_templates(docs):
        for container in containers(template):
            for entry in container.get("env", []):
                ref = (entry.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    found.append((name(doc), ref["name"]))
            found += [(name(doc), source["secretRef"]["name"])
                      for source in container.get("envFrom", []) if "secretRef" in source]
        found += [(name(doc), volume["secret"]["secretName"])
                  for volume in template["spec"].get("volumes", []) if "secret" in volume]
    return found


def property_problems(docs: list[Manifest]) -> list[str]:
    """manifests.all_property_problems, and its pod checks for the hook Job and the backup
    CronJob, which it does not look at."""
    problems = all_property_problems(docs)
    for doc, template in pod_templates(docs):
        if doc["kind"] in ("Job", "CronJob"):
            as_workload = {"kind": doc["kind"], "metadata": doc["metadata"],
                           "spec": {"template": template}}
            problems += non_root_problems(as_workload) + resource_problems(as_workload)
    return problems
