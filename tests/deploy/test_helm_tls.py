"""TLS in the Helm chart: gateway <-> router mutual TLS in every render (cert-manager or Secrets
you name), the HTTPS-only Ingress of the production values, and the Redis and PostgreSQL CA
settings reaching the router and the migration Job."""

from __future__ import annotations

import helm_python
import pytest

from tests.deploy.helm_chart import (
    MANAGED_DB_VALUES,
    PRODUCTION_VALUES,
    containers,
    env,
    merged,
    render,
    values_file,
)
from tests.deploy.tls_checks import grpc_mtls_problems, ingress_problems


def test_the_default_render_speaks_mutual_tls_and_has_no_ingress() -> None:
    rendered = render()
    assert grpc_mtls_problems(rendered.docs) == []
    assert rendered.names("Ingress") == set()


def test_production_serves_clients_over_https_only() -> None:
    rendered = render(merged(values_file(MANAGED_DB_VALUES), values_file(PRODUCTION_VALUES)))
    assert grpc_mtls_problems(rendered.docs) == []
    assert ingress_problems(rendered.docs, "api-gateway") == []
    assert {d["spec"].get("type", "ClusterIP") for d in rendered.docs if d["kind"] == "Service"} \
        == {"ClusterIP"}
    ingress = rendered.get("Ingress", "api-gateway")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-buffering"] == \
        "off"  # server-sent events pass as they come
    assert rendered.get("Certificate", "api-gateway-tls")["spec"] == {
        "secretName": "api-gateway-tls", "dnsNames": ["api.example.com"],
        "issuerRef": {"name": "letsencrypt-prod", "kind": "ClusterIssuer"}}


def test_an_ingress_needs_a_host() -> None:
    with pytest.raises(helm_python.HelmRenderError,
                       match=r"gateway\.ingress\.host is required with the Ingress"):
        render({"gateway": {"ingress": {"enabled": True}}})


def test_without_cert_manager_the_pods_mount_the_secrets_you_name() -> None:
    rendered = render({"tls": {"grpc": {"certManager": False, "routerSecret": "my-router-tls",
                                        "gatewaySecret": "my-gateway-tls"}}})
    assert rendered.names("Certificate") == rendered.names("Issuer") == set()
    for deployment, secret in (("router-service", "my-router-tls"),
                               ("api-gateway", "my-gateway-tls")):
        volumes = rendered.get("Deployment", deployment)["spec"]["template"]["spec"]["volumes"]
        assert {"name": "grpc-tls", "secret": {"secretName": secret, "defaultMode": 0o440}} \
            in volumes


def test_redis_and_database_cas_reach_the_router_and_the_migration() -> None:
    rendered = render({"tls": {"redis": {"caSecret": "redis-ca"},
                               "database": {"caSecret": "pg-ca", "caKey": "root.crt"}}})
    router_template = rendered.get("Deployment", "router-service")["spec"]["template"]
    router = env(containers(router_template)[0])
    assert router["XROUTER_REDIS_URL"]["value"] == (
        "rediss://:$(REDIS_PASSWORD)@xrouter-redis-cluster:6379?ssl_check_hostname=false")
    assert router["XROUTER_REDIS_TLS_CA"]["value"] == "/etc/xrouter/redis-ca/ca.crt"
    assert router["XROUTER_DATABASE_TLS_CA"]["value"] == "/etc/xrouter/database-ca/root.crt"
    volumes = {v["name"]: v for v in router_template["spec"]["volumes"]}
    assert volumes["redis-ca"]["secret"]["secretName"] == "redis-ca"
    assert volumes["database-ca"]["secret"]["items"] == [{"key": "root.crt", "path": "root.crt"}]
    migration_template = rendered.get("Job", "xrouter-migrate")["spec"]["template"]
    migration = env(containers(migration_template)[0])
    assert migration["XROUTER_DATABASE_TLS_CA"]["value"] == "/etc/xrouter/database-ca/root.crt"
    assert {"name": "database-ca", "mountPath": "/etc/xrouter/database-ca", "readOnly": True} in \
        containers(migration_template)[0]["volumeMounts"]
    verified = render({"tls": {"redis": {"caSecret": "redis-ca", "checkHostname": True}}})
    router = env(containers(verified.get("Deployment", "router-service")["spec"]["template"])[0])
    assert router["XROUTER_REDIS_URL"]["value"].endswith("@xrouter-redis-cluster:6379")


def test_plaintext_backends_by_default() -> None:
    router = env(containers(render().get("Deployment", "router-service")["spec"]["template"])[0])
    assert router["XROUTER_REDIS_URL"]["value"].startswith("redis://")
    assert "XROUTER_REDIS_TLS_CA" not in router and "XROUTER_DATABASE_TLS_CA" not in router
