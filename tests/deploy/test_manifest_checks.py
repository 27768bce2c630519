"""The checks of tests/deploy/manifests.py catch what they promise: each one passes a good
hand-made manifest and flags a broken copy of it with its exact problem string."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from tests.deploy.manifests import (
    Manifest,
    all_property_problems,
    anti_affinity_problems,
    inline_secret_problems,
    load_all,
    non_root_problems,
    probe_problems,
    resource_problems,
    router_policy_problems,
    schema_problems,
    xrouter_workloads,
)


def deployment(app: str, port: int) -> Manifest:
    labels = {"app": app, "app.kubernetes.io/part-of": "xrouter"}
    probe = {"tcpSocket": {"port": port}}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": app},
        "spec": {
            "selector": {"matchLabels": {"app": app}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 10001},
                    "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                        {"weight": 100, "podAffinityTerm": {
                            "topologyKey": "kubernetes.io/hostname",
                            "labelSelector": {"matchLabels": {"app": app}}}}]}},
                    "containers": [{
                        "name": app, "image": f"example/{app}:1",
                        "ports": [{"containerPort": port}],
                        "env": [{"name": "PGPASSWORD", "valueFrom": {"secretKeyRef": {
                            "name": "xrouter-secrets", "key": "db-password"}}},
                                {"name": "XROUTER_PROVIDER_KEYS_FILE", "value": "/etc/keys/provider-keys"}],
                        "resources": {"requests": {"cpu": "1", "memory": "1Gi"}},
                        "livenessProbe": probe, "readinessProbe": probe,
                        "securityContext": {"readOnlyRootFilesystem": True,
                                            "allowPrivilegeEscalation": False},
                    }],
                },
            },
        },
    }


def router_policy() -> Manifest:
    return {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "router-service-policy"},
        "spec": {
            "podSelector": {"matchLabels": {"app": "router-service"}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {"from": [{"podSelector": {"matchLabels": {"app": "api-gateway"}}}],
                 "ports": [{"port": 50051}]},
                {"from": [{"namespaceSelector": {"matchLabels": {
                    "kubernetes.io/metadata.name": "monitoring"}}}], "ports": [{"port": 9100}]},
            ],
            "egress": [{"ports": [{"port": 443}]}],
        },
    }


def good() -> list[Manifest]:
    return [deployment("api-gateway", 8000), deployment("router-service", 50051), router_policy()]


def gateway_pod(docs: list[Manifest]) -> dict[str, Any]:
    pod: dict[str, Any] = docs[0]["spec"]["template"]["spec"]
    return pod


def gateway_container(docs: list[Manifest]) -> dict[str, Any]:
    result: dict[str, Any] = gateway_pod(docs)["containers"][0]
    return result


def policy(docs: list[Manifest]) -> dict[str, Any]:
    spec: dict[str, Any] = docs[2]["spec"]
    return spec


def test_the_good_manifests_pass_every_check() -> None:
    docs = good()
    assert schema_problems(docs) == []
    assert all_property_problems(docs) == []
    assert sorted(xrouter_workloads(docs)) == ["api-gateway", "router-service"]


Breakage = Callable[[list[Manifest]], object]
WORKLOAD_CASES: list[tuple[str, Breakage, Callable[[Manifest], list[str]], str]] = [
    ("no anti-affinity", lambda d: gateway_pod(d).pop("affinity"), anti_affinity_problems,
     "Deployment/api-gateway: no preferred pod anti-affinity on kubernetes.io/hostname for app=api-gateway"),
    ("anti-affinity per zone", lambda d: gateway_pod(d)["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"].update(
            topologyKey="topology.kubernetes.io/zone"), anti_affinity_problems,
     "Deployment/api-gateway: no preferred pod anti-affinity on kubernetes.io/hostname for app=api-gateway"),
    ("anti-affinity against another app", lambda d: gateway_pod(d)["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"].update(
            labelSelector={"matchLabels": {"app": "router-service"}}), anti_affinity_problems,
     "Deployment/api-gateway: no preferred pod anti-affinity on kubernetes.io/hostname for app=api-gateway"),
    ("no readiness probe", lambda d: gateway_container(d).pop("readinessProbe"), probe_problems,
     "Deployment/api-gateway: container api-gateway has no readinessProbe"),
    ("no liveness probe", lambda d: gateway_container(d).pop("livenessProbe"), probe_problems,
     "Deployment/api-gateway: container api-gateway has no livenessProbe"),
    ("runAsNonRoot unset", lambda d: gateway_pod(d)["securityContext"].pop("runAsNonRoot"),
     non_root_problems, "Deployment/api-gateway: container api-gateway: runAsNonRoot is not true"),
    ("container overrides to root", lambda d: gateway_container(d)["securityContext"].update(runAsUser=0),
     non_root_problems, "Deployment/api-gateway: container api-gateway: runs as UID 0"),
    ("writable root filesystem", lambda d: gateway_container(d)["securityContext"].update(
        readOnlyRootFilesystem=False),
     non_root_problems, "Deployment/api-gateway: container api-gateway: root filesystem is writable"),
    ("privilege escalation unset", lambda d: gateway_container(d)["securityContext"].pop(
        "allowPrivilegeEscalation"),
     non_root_problems, "Deployment/api-gateway: container api-gateway: privilege escalation allowed"),
    ("no cpu request", lambda d: gateway_container(d)["resources"]["requests"].pop("cpu"),
     resource_problems, "Deployment/api-gateway: container api-gateway requests no cpu"),
    ("no resources", lambda d: gateway_container(d).pop("resources"),
     resource_problems, "Deployment/api-gateway: container api-gateway requests no cpu"),
]


@pytest.mark.parametrize(("breakage", "check", "problem"),
                         [case[1:] for case in WORKLOAD_CASES], ids=[case[0] for case in WORKLOAD_CASES])
def test_each_workload_check_flags_its_breakage(breakage: Breakage, check: Callable[[Manifest], list[str]],
                                                problem: str) -> None:
    docs = good()
    assert check(docs[0]) == []
    breakage(docs)
    assert problem in check(docs[0])
    assert problem in all_property_problems(docs)


def test_init_containers_are_held_to_the_same_rules() -> None:
    docs = good()
    gateway_pod(docs)["initContainers"] = [{"name": "init", "image": "example/init:1"}]
    assert non_root_problems(docs[0]) == [
        "Deployment/api-gateway: container init: root filesystem is writable",
        "Deployment/api-gateway: container init: privilege escalation allowed"]
    assert resource_problems(docs[0]) == ["Deployment/api-gateway: container init requests no cpu",
                                          "Deployment/api-gateway: container init requests no memory"]


POLICY_CASES: list[tuple[str, Breakage, str]] = [
    ("no policy", lambda d: d.pop(2), "expected one NetworkPolicy selecting app=router-service, found 0"),
    ("two policies", lambda d: d.append(copy.deepcopy(d[2])),
     "expected one NetworkPolicy selecting app=router-service, found 2"),
    ("ingress only", lambda d: policy(d).update(policyTypes=["Ingress"]),
     "router policy types ['Ingress'] != Ingress+Egress"),
    ("no ingress rules", lambda d: policy(d).update(ingress=[]), "router policy admits nothing"),
    ("a rule without from", lambda d: policy(d)["ingress"].append({"ports": [{"port": 50051}]}),
     "router ingress rule without `from` admits every source"),
    ("an ipBlock source", lambda d: policy(d)["ingress"].append(
        {"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}), "router ingress admits an ipBlock"),
    ("another pod source", lambda d: policy(d)["ingress"].append(
        {"from": [{"podSelector": {"matchLabels": {"app": "intruder"}}}]}),
     "router ingress pod sources ['api-gateway', 'intruder'] != ['api-gateway']"),
    ("no gateway source", lambda d: policy(d)["ingress"].pop(0),
     "router ingress pod sources [] != ['api-gateway']"),
    ("no egress", lambda d: policy(d).pop("egress"),
     "router policy has no egress rules (DNS, Redis, PostgreSQL, providers)"),
]


@pytest.mark.parametrize(("breakage", "problem"), [case[1:] for case in POLICY_CASES],
                         ids=[case[0] for case in POLICY_CASES])
def test_the_router_policy_check_flags_its_breakage(breakage: Breakage, problem: str) -> None:
    docs = good()
    assert router_policy_problems(docs) == []
    breakage(docs)
    assert problem in router_policy_problems(docs)
    assert problem in all_property_problems(docs)


def test_a_namespace_scoped_source_is_not_a_pod_source() -> None:
    docs = good()
    policy(docs)["ingress"].append({"from": [{
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
        "podSelector": {"matchLabels": {"app": "prometheus"}}}]})
    assert router_policy_problems(docs) == []


def test_inline_secrets_are_flagged_and_secret_file_paths_are_not() -> None:
    docs = good()
    assert inline_secret_problems(docs) == []
    env = docs[1]["spec"]["template"]["spec"]["containers"][0]["env"]
    env[0] = {"name": "PGPASSWORD", "value": "hunter2"}
    env.append({"name": "XROUTER_MASTER_KEY", "value": "sk-master"})
    assert inline_secret_problems(docs) == [
        "Deployment/router-service: router-service sets PGPASSWORD inline",
        "Deployment/router-service: router-service sets XROUTER_MASTER_KEY inline"]


def test_a_missing_tier_is_named() -> None:
    docs = good()
    docs.pop(0)
    assert all_property_problems(docs) == ["no workload labelled app=api-gateway"]


def test_schema_problems_flags_an_unknown_api_version() -> None:
    hpa = {"apiVersion": "autoscaling/v2beta2", "kind": "HorizontalPodAutoscaler",
           "metadata": {"name": "api-gateway"}, "spec": {}}
    assert schema_problems([hpa]) == [
        "HorizontalPodAutoscaler/api-gateway: unknown apiVersion autoscaling/v2beta2 for Kubernetes 1.35"]


def test_schema_problems_flags_an_unknown_field_in_strict_mode() -> None:
    docs = good()
    gateway_container(docs)["imagePullPolcy"] = "Always"
    assert schema_problems(docs) == [
        "Deployment/api-gateway: spec/template/spec/containers/0: "
        "Additional properties are not allowed ('imagePullPolcy' was unexpected)"]


def test_schema_problems_flags_a_wrong_type() -> None:
    docs = good()
    docs[0]["spec"]["replicas"] = "two"
    assert schema_problems(docs) == [
        "Deployment/api-gateway: spec/replicas: 'two' is not of type 'integer', 'null'"]


def test_allow_listed_custom_resources_skip_the_kubernetes_schemas() -> None:
    monitors = [{"apiVersion": "monitoring.coreos.com/v1", "kind": kind, "metadata": {"name": "x"},
                 "spec": {"anything": True}} for kind in ("ServiceMonitor", "PodMonitor", "PrometheusRule")]
    assert schema_problems(monitors) == []
    unknown = {"apiVersion": "monitoring.coreos.com/v1", "kind": "Probe", "metadata": {"name": "x"}}
    assert schema_problems([unknown]) == ["Probe/x: unknown apiVersion monitoring.coreos.com/v1 for "
                                          "Kubernetes 1.35"]


def test_load_all_skips_empty_documents() -> None:
    text = "---\n# only a comment\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: xrouter}\n---\n"
    assert load_all(text) == [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "xrouter"}}]
