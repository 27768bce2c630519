"""TLS in the kustomize overlays: gateway <-> router mutual TLS from cert-manager in every
overlay; in production the gateway reached only through an HTTPS Ingress (no LoadBalancer on
plain HTTP); the backend-tls component (Redis and PostgreSQL verified); and the checks
themselves catch what they guard against."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.k8s_support import (
    APP_OVERLAYS,
    K8S,
    KUBECTL,
    container,
    env_of,
    find,
    of_kind,
    render,
)
from tests.deploy.manifests import Manifest
from tests.deploy.tls_checks import grpc_mtls_problems, ingress_problems


@pytest.mark.parametrize("overlay", APP_OVERLAYS)
def test_gateway_and_router_speak_mutual_tls(overlay: str) -> None:
    assert grpc_mtls_problems(render(overlay)) == []


@pytest.mark.parametrize("overlay", ["prod", "prod-prometheus-operator"])
def test_production_serves_clients_over_https_only(overlay: str) -> None:
    docs = render(overlay)
    assert ingress_problems(docs, "api-gateway") == []
    # Nothing reaches a pod from outside the cluster but through the Ingress.
    assert {s["spec"].get("type", "ClusterIP") for s in of_kind(docs, "Service")} == {"ClusterIP"}
    ingress = find(docs, "Ingress", "api-gateway")
    assert ingress["metadata"]["namespace"] == "xrouter"
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert find(docs, "Certificate", "api-gateway-tls")["spec"]["issuerRef"] == {
        "name": "letsencrypt-prod", "kind": "ClusterIssuer"}


def test_the_checks_catch_plaintext_and_a_missing_redirect() -> None:
    docs = render("prod")
    router = next(d for d in docs if d["kind"] == "Deployment"
                  and d["metadata"]["name"] == "router-service")
    c = container(router, "router-service")
    c["env"] = [e for e in c["env"] if not e["name"].startswith("XROUTER_ROUTER_TLS_")]
    c["env"].append({"name": "XROUTER_ROUTER_INSECURE", "value": "true"})
    problems = grpc_mtls_problems(docs)
    assert "Deployment/router-service: sets XROUTER_ROUTER_INSECURE" in problems
    assert "Deployment/router-service: XROUTER_ROUTER_TLS_CERT='' is not a tls.crt" in problems
    ingress = find(docs, "Ingress", "api-gateway")
    del ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/force-ssl-redirect"]
    ingress["spec"]["tls"] = []
    assert ingress_problems(docs, "api-gateway") == [
        "Ingress/api-gateway: hosts without TLS: ['api.example.com']",
        "Ingress/api-gateway: nginx.ingress.kubernetes.io/force-ssl-redirect != true"]


def _with_backend_tls(overlay: str, tmp_path: Path) -> list[Manifest]:
    """`overlay` plus k8s/components/backend-tls, as an operator adds it."""
    assert KUBECTL is not None
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(K8S / "overlays" / overlay, tmp_path)],
        "components": [os.path.relpath(K8S / "components" / "backend-tls", tmp_path)]}))
    done = subprocess.run([KUBECTL, "kustomize", str(tmp_path)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def test_the_backend_tls_component_verifies_redis_and_postgresql(tmp_path: Path) -> None:
    docs = _with_backend_tls("prod", tmp_path)
    router = container(find(docs, "Deployment", "router-service"), "router-service")
    env = env_of(router)
    assert env["XROUTER_REDIS_URL"] == (
        "rediss://:$(REDIS_PASSWORD)@xrouter-redis-cluster:6379?ssl_check_hostname=false")
    names = [e["name"] for e in router["env"]]
    assert names.index("REDIS_PASSWORD") < names.index("XROUTER_REDIS_URL")  # expanded in order
    assert env["XROUTER_REDIS_TLS_CA"] == "/etc/xrouter/redis-ca/ca.crt"
    assert env["XROUTER_DATABASE_TLS_CA"] == "/etc/xrouter/database-ca/ca.crt"
    mounts = {m["mountPath"]: m["name"] for m in router["volumeMounts"]}
    assert mounts["/etc/xrouter/redis-ca"] == "redis-ca"
    assert mounts["/etc/xrouter/database-ca"] == "database-ca"
    assert grpc_mtls_problems(docs) == []  # the rest of the TLS wiring is untouched


def test_the_backend_tls_component_verifies_the_migration_too(tmp_path: Path) -> None:
    job = find(_with_backend_tls("prod/migrate", tmp_path), "Job", "xrouter-migrate")
    migrate = container(job, "migrate")
    assert env_of(migrate)["XROUTER_DATABASE_TLS_CA"] == "/etc/xrouter/database-ca/ca.crt"
    volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    assert volumes["database-ca"]["secret"]["secretName"] == "xrouter-database-ca"
