"""Checks shared by the kustomize and Helm tests: schema validation of rendered manifests with
kubernetes-validate (strict, unknown API versions fail unless allow-listed) and the properties
that matter in production (anti-affinity, probes, non-root, requests, the router's
NetworkPolicy, no inlined secrets). Every check returns the list of problems it found, so a
failing test names every offending object at once."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import kubernetes_validate
import yaml

# The Kubernetes release the manifests are validated against (strict schemas).
KUBERNETES_VERSION = "1.35"

# Custom resources validated by their operators' own CRDs, not by the Kubernetes schemas.
ALLOWED_CRDS: frozenset[tuple[str, str]] = frozenset({
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PodMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("cert-manager.io/v1", "Issuer"),
    ("cert-manager.io/v1", "Certificate"),
})

WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet"})
GATEWAY_LABEL = "api-gateway"
ROUTER_LABEL = "router-service"

Manifest = dict[str, Any]


def load_all(text: str) -> list[Manifest]:
    """Every non-empty document of a multi-document YAML stream."""
    return [doc for doc in yaml.safe_load_all(text) if doc]


def name(doc: Mapping[str, Any]) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def schema_problems(docs: Iterable[Manifest], version: str = KUBERNETES_VERSION) -> list[str]:
    problems = []
    for doc in docs:
        if (doc.get("apiVersion"), doc.get("kind")) in ALLOWED_CRDS:
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(f"{name(doc)}: unknown apiVersion {doc.get('apiVersion')} "
                            f"for Kubernetes {version}")
        except kubernetes_validate.ValidationError as exc:
            path = "/".join(str(p) for p in exc.path)
            problems.append(f"{name(doc)}: {path}: {exc.message}")
    return problems


def workloads(docs: Iterable[Manifest]) -> Iterator[Manifest]:
    return (doc for doc in docs if doc.get("kind") in WORKLOAD_KINDS)


def app_label(doc: Mapping[str, Any]) -> str | None:
    labels = doc.get("spec", {}).get("template", {}).get("metadata", {}).get("labels", {})
    value = labels.get("app")
    return value if isinstance(value, str) else None


def xrouter_workloads(docs: Iterable[Manifest]) -> dict[str, Manifest]:
    """The gateway and router Deployments by their `app` label."""
    found = {}
    for doc in workloads(docs):
        label = app_label(doc)
        if label in (GATEWAY_LABEL, ROUTER_LABEL):
            found[label] = doc
    return found


def _pod(doc: Mapping[str, Any]) -> dict[str, Any]:
    pod: dict[str, Any] = doc["spec"]["template"]["spec"]
    return pod


def _containers(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    pod = _pod(doc)
    return list(pod.get("initContainers", [])) + list(pod["containers"])


def anti_affinity_problems(doc: Mapping[str, Any]) -> list[str]:
    terms = (_pod(doc).get("affinity", {}).get("podAntiAffinity", {})
             .get("preferredDuringSchedulingIgnoredDuringExecution", []))
    own = doc["spec"]["template"]["metadata"]["labels"].get("app")
    for term in terms:
        selected = term.get("podAffinityTerm", {})
        labels = selected.get("labelSelector", {}).get("matchLabels", {})
        if selected.get("topologyKey") == "kubernetes.io/hostname" and labels.get("app") == own:
            return []
    return [f"{name(doc)}: no preferred pod anti-affinity on kubernetes.io/hostname for app={own}"]


def probe_problems(doc: Mapping[str, Any]) -> list[str]:
    problems = []
    for container in _pod(doc)["containers"]:
        for probe in ("livenessProbe", "readinessProbe"):
            if probe not in container:
                problems.append(f"{name(doc)}: container {container['name']} has no {probe}")
    return problems


def non_root_problems(doc: Mapping[str, Any]) -> list[str]:
    pod_context = _pod(doc).get("securityContext", {})
    problems = []
    for container in _containers(doc):
        context = {**pod_context, **container.get("securityContext", {})}
        where = f"{name(doc)}: container {container['name']}"
        if context.get("runAsNonRoot") is not True:
            problems.append(f"{where}: runAsNonRoot is not true")
        if context.get("runAsUser", 1) == 0:
            problems.append(f"{where}: runs as UID 0")
        if container.get("securityContext", {}).get("readOnlyRootFilesystem") is not True:
            problems.append(f"{where}: root filesystem is writable")
        if container.get("securityContext", {}).get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: privilege escalation allowed")
    return problems


def resource_problems(doc: Mapping[str, Any]) -> list[str]:
    problems = []
    for container in _containers(doc):
        requests = container.get("resources", {}).get("requests", {})
        for resource in ("cpu", "memory"):
            if resource not in requests:
                problems.append(f"{name(doc)}: container {container['name']} requests no {resource}")
    return problems


def router_policy_problems(docs: list[Manifest]) -> list[str]:
    """The router's NetworkPolicy: it selects app=router-service, covers Ingress and Egress,
    and its ingress admits pods labelled app=api-gateway only (a metrics scrape rule may admit
    the monitoring namespace on the metrics port)."""
    policies = [doc for doc in docs if doc.get("kind") == "NetworkPolicy"
                and doc["spec"].get("podSelector", {}).get("matchLabels", {}).get("app") == ROUTER_LABEL]
    if len(policies) != 1:
        return [f"expected one NetworkPolicy selecting app={ROUTER_LABEL}, found {len(policies)}"]
    spec = policies[0]["spec"]
    problems = []
    if sorted(spec.get("policyTypes", [])) != ["Egress", "Ingress"]:
        problems.append(f"router policy types {spec.get('policyTypes')} != Ingress+Egress")
    ingress = spec.get("ingress", [])
    if not ingress:
        problems.append("router policy admits nothing")
    grpc_sources = []
    for rule in ingress:
        sources = rule.get("from", [])
        if not sources:
            problems.append("router ingress rule without `from` admits every source")
        for source in sources:
            if "ipBlock" in source:
                problems.append("router ingress admits an ipBlock")
            labels = source.get("podSelector", {}).get("matchLabels", {})
            if "podSelector" in source and "namespaceSelector" not in source:
                grpc_sources.append(labels.get("app"))
    if grpc_sources != [GATEWAY_LABEL]:
        problems.append(f"router ingress pod sources {grpc_sources} != [{GATEWAY_LABEL!r}]")
    if not spec.get("egress"):
        problems.append("router policy has no egress rules (DNS, Redis, PostgreSQL, providers)")
    return problems


_SECRET_ENV = ("PASSWORD", "SECRET", "TOKEN", "MASTER_KEY", "API_KEY", "PROVIDER_KEYS")
# `<NAME>_FILE` holds the path of a mounted secret file (XROUTER_PROVIDER_KEYS_FILE), not a secret.
_PATH_SUFFIX = "_FILE"


def inline_secret_problems(docs: list[Manifest]) -> list[str]:
    """Secret-looking environment variables must come from a secretKeyRef, never a literal; a
    Secret object rendered with real data is a leak (stringData/data must hold placeholders
    only, which callers check separately)."""
    problems = []
    for doc in workloads(docs):
        for container in _containers(doc):
            for env in container.get("env", []):
                secretish = any(part in env["name"] for part in _SECRET_ENV)
                if secretish and "value" in env and not env["name"].endswith(_PATH_SUFFIX):
                    problems.append(f"{name(doc)}: {container['name']} sets {env['name']} inline")
    return problems


def all_property_problems(docs: list[Manifest]) -> list[str]:
    found = xrouter_workloads(docs)
    problems = [f"no workload labelled app={label}" for label in (GATEWAY_LABEL, ROUTER_LABEL)
                if label not in found]
    for doc in found.values():
        for check in (anti_affinity_problems, probe_problems, non_root_problems,
                      resource_problems):
            problems.extend(check(doc))
    problems.extend(router_policy_problems(docs))
    problems.extend(inline_secret_problems(docs))
    return problems
