"""TLS in the kustomize overlays: gateway <-> router mutual TLS from cert-manager in every
overlay; in production the gateway reached only through an HTTPS Ingress (no LoadBalancer on
plain HTTP), and the checks themselves catch what they guard against."""

from __future__ import annotations

import pytest

from tests.deploy.k8s_support import APP_OVERLAYS, container, find, of_kind, render
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
