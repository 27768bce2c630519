"""Rendering the kustomize overlays of k8s/ with `kubectl kustomize` (cached per overlay), and
walking the rendered pods whatever owns them (Deployment, Job, CronJob)."""

from __future__ import annotations

import copy
import functools
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.manifests import Manifest, name

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
KUBECTL = shutil.which("kubectl")

# The application overlays, and the migration Job kustomization of each environment.
APP_OVERLAYS = ("dev", "prod", "prod-prometheus-operator")
MIGRATIONS = {"dev": "dev/migrate", "prod": "prod/migrate", "prod-prometheus-operator": "prod/migrate"}
ALL_OVERLAYS = (*APP_OVERLAYS, "dev/migrate", "prod/migrate")

NAMESPACE = "xrouter"
SECRET = "xrouter-secrets"
SECRET_KEYS = frozenset({"db-password", "redis-password", "provider-keys", "master-key", "key-secret"})


@functools.cache
def _rendered(overlay: str) -> list[Manifest]:
    assert KUBECTL is not None
    result = subprocess.run([KUBECTL, "kustomize", str(K8S / "overlays" / overlay)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, f"kubectl kustomize k8s/overlays/{overlay}:\n{result.stderr}"
    # libyaml when present: the dashboards make the prod render ~200 kB.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return [doc for doc in yaml.load_all(result.stdout, Loader=loader) if doc]


def render(overlay: str) -> list[Manifest]:
    """A fresh copy of the overlay's documents (tests may not share mutations)."""
    return copy.deepcopy(_rendered(overlay))


def find(docs: Iterable[Manifest], kind: str, object_name: str) -> Manifest:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == object_name]
    assert len(matches) == 1, f"{kind}/{object_name}: found {len(matches)}"
    return matches[0]


def of_kind(docs: Iterable[Manifest], kind: str) -> list[Manifest]:
    return [d for d in docs if d["kind"] == kind]


def pod_template(doc: Manifest) -> dict[str, Any] | None:
    """The pod template of a workload, a Job or a CronJob; None for anything else."""
    if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        template: dict[str, Any] = doc["spec"]["template"]
        return template
    if doc["kind"] == "CronJob":
        template = doc["spec"]["jobTemplate"]["spec"]["template"]
        return template
    return None


def pod_owners(docs: Iterable[Manifest]) -> Iterator[tuple[Manifest, dict[str, Any]]]:
    for doc in docs:
        template = pod_template(doc)
        if template is not None:
            yield doc, template


def as_workload(doc: Manifest, template: dict[str, Any]) -> Manifest:
    """A Job's or CronJob's pod shaped like a Deployment, for the checks of manifests.py."""
    return {"kind": "Deployment", "metadata": {"name": name(doc)}, "spec": {"template": template}}


def containers(template: dict[str, Any]) -> list[dict[str, Any]]:
    spec = template["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    """Environment entries by name: the literal value, or the whole valueFrom."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def container(doc: Manifest, container_name: str) -> dict[str, Any]:
    template = pod_template(doc)
    assert template is not None, name(doc)
    matches = [c for c in containers(template) if c["name"] == container_name]
    assert len(matches) == 1, f"{name(doc)}: container {container_name}"
    return matches[0]


def labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())
