"""The kustomize overlays of k8s/ render with `kubectl kustomize`, pass the strict Kubernetes
schemas, and wire the two tiers together as the deployment conventions say: names, ports,
the one Secret, probes, autoscaling, disruption budgets, network policies, the migration Job
and the backup CronJob. Monitoring objects: test_k8s_monitoring.py; plain files: test_k8s_files.py."""

from __future__ import annotations

import re
import tomllib
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.deploy.k8s_support import (
    ALL_OVERLAYS,
    APP_OVERLAYS,
    KUBECTL,
    MIGRATIONS,
    NAMESPACE,
    SECRET,
    SECRET_KEYS,
    as_workload,
    container,
    containers,
    env_of,
    find,
    labels_match,
    of_kind,
    pod_owners,
    render,
)
from tests.deploy.manifests import (
    Manifest,
    all_property_problems,
    inline_secret_problems,
    name,
    non_root_problems,
    resource_problems,
    schema_problems,
)
from xrouter_router.providers import anthropic, gemini, gigachat, yandexgpt

pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not on PATH: cannot render k8s/")

ROUTER_TARGET = "dns:///router-service-headless.xrouter.svc.cluster.local:50051"
# Created by the operator, not by the build (k8s/README.md: GigaChat's root CA).
EXTERNAL_CONFIGMAPS = frozenset({"xrouter-ca-bundle"})
PROVIDER_DEFAULT_URLS = {
    "gigachat": (gigachat.BASE_URL, gigachat.AUTH_URL),
    "yandexgpt": (yandexgpt.DEFAULT_URL,),
    "openai": ("https://api.openai.com/v1",),
    "anthropic": (anthropic.DEFAULT_BASE_URL,),
    "gemini": (gemini.DEFAULT_BASE_URL,),
}


def gateway(docs: list[Manifest]) -> Manifest:
    return find(docs, "Deployment", "api-gateway")


def router(docs: list[Manifest]) -> Manifest:
    return find(docs, "Deployment", "router-service")


@pytest.mark.parametrize("overlay", ALL_OVERLAYS)
def test_every_rendered_document_passes_the_strict_schemas(overlay: str) -> None:
    docs = render(overlay)
    assert docs
    assert schema_problems(docs) == []


@pytest.mark.parametrize("overlay", APP_OVERLAYS)
def test_the_tiers_have_the_production_properties(overlay: str) -> None:
    assert all_property_problems(render(overlay)) == []


@pytest.mark.parametrize("overlay", ALL_OVERLAYS)
def test_every_pod_is_hardened(overlay: str) -> None:
    docs = render(overlay)
    accounts = {d["metadata"]["name"]: d for d in of_kind(docs, "ServiceAccount")}
    problems = []
    for doc, template in pod_owners(docs):
        pod = as_workload(doc, template)
        problems += non_root_problems(pod) + resource_problems(pod) + inline_secret_problems([pod])
        spec = template["spec"]
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name(doc)
        assert spec["automountServiceAccountToken"] is False, name(doc)
        assert accounts[spec["serviceAccountName"]]["automountServiceAccountToken"] is False
        tmp = [v["name"] for v in spec["volumes"] if "emptyDir" in v]
        assert len(tmp) == 1, f"{name(doc)}: one emptyDir for /tmp"
        for c in containers(template):
            assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}, name(doc)
            assert {"name": tmp[0], "mountPath": "/tmp"} in c["volumeMounts"], name(doc)
            assert "resources" in c and "limits" in c["resources"], name(doc)
    assert problems == []


@pytest.mark.parametrize("overlay", ALL_OVERLAYS)
def test_every_pod_carries_the_xrouter_labels(overlay: str) -> None:
    for doc, template in pod_owners(render(overlay)):
        labels = template["metadata"]["labels"]
        assert labels["app.kubernetes.io/part-of"] == "xrouter", name(doc)
        assert {"app", "app.kubernetes.io/name", "app.kubernetes.io/component"} <= labels.keys()
        annotations = template["metadata"].get("annotations", {})
        ports = {p["containerPort"] for c in containers(template) for p in c.get("ports", [])}
        if ports:  # scraped: the annotated port is one the pod serves
            assert int(annotations["prometheus.io/port"]) in ports, name(doc)
        else:  # a Job: kept by the scrape job's label filter, so it must opt out
            assert annotations["prometheus.io/scrape"] == "false", name(doc)


@pytest.mark.parametrize("overlay", ALL_OVERLAYS)
def test_every_object_is_in_the_xrouter_namespace(overlay: str) -> None:
    for doc in render(overlay):
        namespace = doc["metadata"].get("namespace")
        if doc["kind"] == "Namespace":
            assert doc["metadata"]["name"] == NAMESPACE
        elif doc["metadata"]["name"] in ("xrouter-prometheus", "xrouter-dashboards"):
            assert (doc["kind"], namespace) == ("ConfigMap", "monitoring")
        else:
            assert namespace == NAMESPACE, name(doc)


@pytest.mark.parametrize("overlay", APP_OVERLAYS)
def test_the_router_service_is_headless_on_the_grpc_port(overlay: str) -> None:
    docs = render(overlay)
    service = find(docs, "Service", "router-service-headless")
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is False
    assert service["spec"]["ports"] == [
        {"name": "grpc", "port": 50051, "targetPort": "grpc", "protocol": "TCP"}]
    assert service["spec"]["selector"] == {"app": "router-service"}
    assert {"name": "grpc", "containerPort": 50051, "protocol": "TCP"} in \
        container(router(docs), "router-service")["ports"]


@pytest.mark.parametrize("overlay", APP_OVERLAYS)
def test_the_gateway_balances_over_the_headless_service(overlay: str) -> None:
    docs = render(overlay)
    env = env_of(container(gateway(docs), "api-gateway"))
    assert env["XROUTER_ROUTER_TARGET"] == ROUTER_TARGET
    host, port = ROUTER_TARGET.removeprefix("dns:///").rsplit(":", 1)
    service_name, namespace, rest = host.split(".", 2)
    assert rest == "svc.cluster.local"
    service = find(docs, "Service", service_name)
    assert service["metadata"]["namespace"] == namespace == NAMESPACE
    assert int(port) in [p["port"] for p in service["spec"]["ports"]]
    assert env | {"XROUTER_ROUTER_TARGET": None} == {
        "XROUTER_GATEWAY_HOST": "0.0.0.0", "XROUTER_GATEWAY_PORT": "8000",
        "XROUTER_ROUTER_TARGET": None, "XROUTER_GATEWAY_WORKERS": "1",
        "XROUTER_GATEWAY_DRAIN_SECONDS": "30",
        "XROUTER_GATEWAY_ROUTER_TLS_CA": "/etc/xrouter/grpc-tls/ca.crt",
        "XROUTER_GATEWAY_ROUTER_TLS_CERT": "/etc/xrouter/grpc-tls/tls.crt",
        "XROUTER_GATEWAY_ROUTER_TLS_KEY": "/etc/xrouter/grpc-tls/tls.key"}


@pytest.mark.parametrize("overlay", APP_OVERLAYS)
def test_the_router_environment_matches_its_mounts(overlay: str) -> None:
    docs = render(overlay)
    deployment = router(docs)
    c = container(deployment, "router-service")
    names = [e["name"] for e in c["env"]]
    assert names.index("REDIS_PASSWORD") < names.index("XROUTER_REDIS_URL")  # $(VAR) expansion
    env = env_of(c)
    assert env["XROUTER_ROUTER_LISTEN"] == "[::]:50051"
    assert env["XROUTER_ROUTER_METRICS_PORT"] == "9100"
    assert env["XROUTER_SHUTDOWN_GRACE"] == "30"
    assert re.fullmatch(r"postgresql://xrouter@[a-z0-9-]+:5432/xrouter\?target_session_attrs=read-write",
                        env["XROUTER_DATABASE_URL"])
    assert re.fullmatch(r"redis://:\$\(REDIS_PASSWORD\)@[a-z0-9-]+:6379", env["XROUTER_REDIS_URL"])
    refs = {n: (v["secretKeyRef"]["name"], v["secretKeyRef"]["key"]) for n, v in env.items()
            if isinstance(v, dict)}
    assert refs == {"XROUTER_MASTER_KEY": (SECRET, "master-key"),
                    "XROUTER_KEY_SECRET": (SECRET, "key-secret"),
                    "PGPASSWORD": (SECRET, "db-password"),
                    "REDIS_PASSWORD": (SECRET, "redis-password")}
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    catalog = mounts[env["XROUTER_CATALOG"]]
    assert catalog["subPath"] == "catalog.toml"
    assert find(docs, "ConfigMap", volumes[catalog["name"]]["configMap"]["name"])["data"].keys() == \
        {"catalog.toml"}
    keys_dir, keys_file = env["XROUTER_PROVIDER_KEYS_FILE"].rsplit("/", 1)
    secret = volumes[mounts[keys_dir]["name"]]["secret"]
    assert secret["secretName"] == SECRET
    assert secret["items"] == [{"key": "provider-keys", "path": keys_file}]


@pytest.mark.parametrize("overlay", APP_OVERLAYS)
def test_the_gigachat_ca_bundle_is_mounted_from_its_configmap(overlay: str) -> None:
    docs = render(overlay)
    catalog = tomllib.loads(next(d for d in of_kind(docs, "ConfigMap")
                                 if d["metadata"]["name"].startswith("xrouter-catalog"))
                            ["data"]["catalog.toml"])
    bundle_dir, _ = catalog["providers"]["gigachat"]["ca_bundle"].rsplit("/", 1)
    deployment = router(docs)
    mount = next(m for m in container(deployment, "router-service")["volumeMounts"]
                 if m["mountPath"] == bundle_dir)
    volume = next(v for v in deployment["spec"]["template"]["spec"]["volumes"]
                  if v["name"] == mount["name"])
    assert volume["configMap"]["name"] in EXTERNAL_CONFIGMAPS


def secret_references(template: dict[str, Any]) -> list[tuple[str, str | None]]:
    """(secret name, key) of every env secretKeyRef, envFrom secretRef and secret volume item."""
    found: list[tuple[str, str | None]] = []
    for c in containers(template):
        for e in c.get("env", []):
            if "secretKeyRef" in e.get("valueFrom", {}):
                ref = e["valueFrom"]["secretKeyRef"]
                found.append((ref["name"], ref["key"]))
        found += [(source["secretRef"]["name"], None) for source in c.get("envFrom", [])
                  if "secretRef" in source]
    for volume in template["spec"].get("volumes", []):
        if "secret" in volume:
            items = volume["secret"].get("items") or [{"key": None}]
            found += [(volume["secret"]["secretName"], item["key"]) for item in items]
    return found


@pytest.mark.parametrize("overlay", ALL_OVERLAYS)
def test_every_secret_reference_names_a_key_of_xrouter_secrets(overlay: str) -> None:
    """...or a Secret that a rendered cert-manager Certificate fills (mounted whole)."""
    docs = render(overlay)
    assert of_kind(docs, "Secret") == []  # created by the operator, never rendered
    issued = {c["spec"]["secretName"] for c in of_kind(docs, "Certificate")}
    for doc, template in pod_owners(docs):
        for secret, key in secret_references(template):
            if secret in issued:
                assert key is None, f"{name(doc)}: {secret} is mounted whole"
                continue
            assert secret == SECRET, name(doc)
            assert key in SECRET_KEYS, f"{name(doc)}: key {key}"


def configmap_references(template: dict[str, Any]) -> set[str]:
    found = set()
    for c in containers(template):
        found |= {e["valueFrom"]["configMapKeyRef"]["name"] for e in c.get("env", [])
                  if "configMapKeyRef" in e.get("valueFrom", {})}
        found |= {s["configMapRef"]["name"] for s in c.get("envFrom", []) if "configMapRef" in s}
    for volume in template["spec"].get("volumes", []):
        if "configMap" in volume:
            found.add(volume["configMap"]["name"])
        for source in volume.get("projected", {}).get("sources", []):
            if "configMap" in source:
                found.add(source["configMap"]["name"])
    return found


@pytest.mark.parametrize("overlay", ALL_OVERLAYS)
def test_every_referenced_configmap_is_rendered(overlay: str) -> None:
    docs = render(overlay)
    rendered = {d["metadata"]["name"] for d in of_kind(docs, "ConfigMap")
                if d["metadata"]["namespace"] == NAMESPACE}
    for doc, template in pod_owners(docs):
        missing = configmap_references(template) - rendered - EXTERNAL_CONFIGMAPS
        assert missing == set(), name(doc)


@pytest.mark.parametrize("overlay", APP_OVERLAYS)
def test_probes_use_ports_the_container_declares(overlay: str) -> None:
    for doc, template in pod_owners(render(overlay)):
        for c in containers(template):
            names = {p["name"] for p in c.get("ports", [])}
            numbers = {p["containerPort"] for p in c.get("ports", [])}
            for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
                if kind not in c:
                    continue
                probe = c[kind]
                handler = probe.get("httpGet") or probe.get("grpc") or probe.get("tcpSocket")
                assert handler is not None, f"{name(doc)} {kind}"
                port = handler["port"]
                assert port in (names if isinstance(port, str) else numbers), f"{name(doc)} {kind}"


@pytest.mark.parametrize("overlay", APP_OVERLAYS)
def test_probes_are_the_agreed_endpoints(overlay: str) -> None:
    docs = render(overlay)
    g = container(gateway(docs), "api-gateway")
    assert g["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert g["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    r = container(router(docs), "router-service")
    # The plaintext health-only port: kubelet's gRPC probes speak no TLS.
    assert {"name": "health", "containerPort": 50052, "protocol": "TCP"} in r["ports"]
    assert env_of(r)["XROUTER_ROUTER_HEALTH_LISTEN"] == "[::]:50052"
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert r[kind]["grpc"] == {"port": 50052}


@pytest.mark.parametrize("overlay", APP_OVERLAYS)
def test_rollouts_surge_and_drain(overlay: str) -> None:
    docs = render(overlay)
    for deployment in (gateway(docs), router(docs)):
        assert deployment["spec"]["strategy"] == {
            "type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
        assert "replicas" not in deployment["spec"]  # the HPA owns the count
    pod = gateway(docs)["spec"]["template"]["spec"]
    command = container(gateway(docs), "api-gateway")["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    drain = int(env_of(container(gateway(docs), "api-gateway"))["XROUTER_GATEWAY_DRAIN_SECONDS"])
    assert drain == 30
    assert pod["terminationGracePeriodSeconds"] >= int(command[1]) + drain
    grace = int(env_of(container(router(docs), "router-service"))["XROUTER_SHUTDOWN_GRACE"])
    assert router(docs)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= grace + 10


REPLICAS = {"dev": {"api-gateway": (1, 3), "router-service": (1, 3)},
            "prod": {"api-gateway": (2, 10), "router-service": (3, 20)}}


@pytest.mark.parametrize("overlay", APP_OVERLAYS)
def test_autoscalers_target_the_deployments(overlay: str) -> None:
    docs = render(overlay)
    hpas = of_kind(docs, "HorizontalPodAutoscaler")
    targets = sorted(h["spec"]["scaleTargetRef"]["name"] for h in hpas)
    assert targets == sorted(d["metadata"]["name"] for d in of_kind(docs, "Deployment"))
    expected = REPLICAS[overlay.split("-", maxsplit=1)[0]]
    for hpa in hpas:
        ref = hpa["spec"]["scaleTargetRef"]
        assert (ref["apiVersion"], ref["kind"]) == ("apps/v1", "Deployment")
        find(docs, "Deployment", ref["name"])
        assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == expected[ref["name"]]
        assert hpa["spec"]["metrics"] == [
            {"type": "Resource", "resource": {
                "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}},
            {"type": "Resource", "resource": {
                "name": "memory", "target": {"type": "Utilization", "averageUtilization": 80}}}]


@pytest.mark.parametrize("overlay", APP_OVERLAYS)
def test_disruption_budgets_select_one_deployment_and_never_block_a_drain(overlay: str) -> None:
    docs = render(overlay)
    minimum = {h["spec"]["scaleTargetRef"]["name"]: h["spec"]["minReplicas"]
               for h in of_kind(docs, "HorizontalPodAutoscaler")}
    budgets = of_kind(docs, "PodDisruptionBudget")
    assert len(budgets) == 2
    for pdb in budgets:
        selector = pdb["spec"]["selector"]["matchLabels"]
        matched = [d for d in of_kind(docs, "Deployment")
                   if labels_match(selector, d["spec"]["template"]["metadata"]["labels"])]
        assert len(matched) == 1, name(pdb)
        if "minAvailable" in pdb["spec"]:
            assert pdb["spec"]["minAvailable"] < minimum[matched[0]["metadata"]["name"]]
        else:
            assert pdb["spec"]["maxUnavailable"] == 1
    if overlay.startswith("prod"):
        assert find(docs, "PodDisruptionBudget", "api-gateway")["spec"] == {
            "minAvailable": 1, "selector": {"matchLabels": {"app": "api-gateway"}}}
        assert find(docs, "PodDisruptionBudget", "router-service")["spec"] == {
            "maxUnavailable": 1, "selector": {"matchLabels": {"app": "router-service"}}}


@pytest.mark.parametrize(("overlay", "kind"), [
    ("dev", "ClusterIP"), ("prod", "ClusterIP"), ("prod-prometheus-operator", "ClusterIP")])
def test_the_gateway_service(overlay: str, kind: str) -> None:
    service = find(render(overlay), "Service", "api-gateway")
    assert service["spec"]["type"] == kind
    assert service["spec"]["selector"] == {"app": "api-gateway"}
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]


def open_ports(rules: list[dict[str, Any]], peer: dict[str, Any] | None = None) -> set[tuple[str, int]]:
    """(protocol, port) the rules admit from/to `peer` (None: rules without peers, i.e. anyone)."""
    found = set()
    for rule in rules:
        peers = rule.get("to", rule.get("from"))
        if (peer is None and peers is None) or (peer is not None and peers == [peer]):
            found |= {(p["protocol"], p["port"]) for p in rule["ports"]}
    return found


KUBE_DNS = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}
DNS = {("UDP", 53), ("TCP", 53)}


def provider_ports(catalog: dict[str, Any]) -> set[tuple[str, int]]:
    ports = set()
    for spec in catalog["providers"].values():
        urls = list(PROVIDER_DEFAULT_URLS[spec["type"]])
        urls[0] = spec.get("base_url", urls[0])
        if spec["type"] == "gigachat":
            urls[1] = spec.get("auth_url", urls[1])
        for url in urls:
            parts = urlsplit(url)
            ports.add(("TCP", parts.port or {"https": 443, "http": 80}[parts.scheme]))
    return ports


@pytest.mark.parametrize("overlay", APP_OVERLAYS)
def test_network_policies_admit_exactly_the_needed_traffic(overlay: str) -> None:
    docs = render(overlay)
    gateway_policy = find(docs, "NetworkPolicy", "api-gateway-policy")["spec"]
    assert gateway_policy["podSelector"] == {"matchLabels": {"app": "api-gateway"}}
    assert open_ports(gateway_policy["ingress"]) == {("TCP", 8000)}
    assert open_ports(gateway_policy["egress"], {"podSelector": {"matchLabels": {
        "app": "router-service"}}}) == {("TCP", 50051)}
    assert open_ports(gateway_policy["egress"], KUBE_DNS) == DNS

    policy = find(docs, "NetworkPolicy", "router-service-policy")["spec"]
    assert open_ports(policy["ingress"], {"podSelector": {"matchLabels": {"app": "api-gateway"}}}) \
        == {("TCP", 50051)}
    assert open_ports(policy["ingress"], {"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "monitoring"}}}) == {("TCP", 9100)}
    assert open_ports(policy["egress"], KUBE_DNS) == DNS
    catalog = tomllib.loads(next(d for d in of_kind(docs, "ConfigMap")
                                 if d["metadata"]["name"].startswith("xrouter-catalog"))
                            ["data"]["catalog.toml"])
    assert ("TCP", 9443) in provider_ports(catalog)  # GigaChat's OAuth endpoint
    assert open_ports(policy["egress"]) == {("TCP", 5432), ("TCP", 6379), ("TCP", 16379)} | \
        provider_ports(catalog)


def image_tags(docs: list[Manifest]) -> dict[str, str]:
    tags: dict[str, str] = {}
    for _, template in pod_owners(docs):
        for c in containers(template):
            image, _, tag = c["image"].rpartition(":")
            assert image and "/" not in tag, f"{c['image']} has no tag"
            assert tag != "latest"
            assert tags.setdefault(image, tag) == tag, f"{image}: two tags"
    return tags


@pytest.mark.parametrize("overlay", APP_OVERLAYS)
def test_images_are_pinned_and_the_migration_runs_the_same_release(overlay: str) -> None:
    tags = image_tags(render(overlay))
    assert tags == {"ghcr.io/xrouter/xrouter-gateway": "0.1.0",
                    "ghcr.io/xrouter/xrouter-router": "0.1.0", "postgres": "16-bookworm"}
    assert image_tags(render(MIGRATIONS[overlay])) == {"ghcr.io/xrouter/xrouter-router": "0.1.0"}


@pytest.mark.parametrize("overlay", APP_OVERLAYS)
def test_the_migration_job_runs_xrouter_migrate_against_the_routers_database(overlay: str) -> None:
    migration = render(MIGRATIONS[overlay])
    job = find(migration, "Job", "xrouter-migrate")
    migrate = container(job, "migrate")
    assert migrate["command"] == ["/opt/xrouter/bin/xrouter", "migrate", "--wait", "120"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    docs = render(overlay)
    r = container(router(docs), "router-service")
    assert migrate["image"] == r["image"]
    assert env_of(migrate)["XROUTER_DATABASE_URL"] == env_of(r)["XROUTER_DATABASE_URL"]
    assert env_of(migrate)["PGPASSWORD"] == env_of(r)["PGPASSWORD"]
    assert of_kind(docs, "Job") == []  # applied on its own, before the Deployments roll


@pytest.mark.parametrize("overlay", APP_OVERLAYS)
def test_the_backup_dumps_everything_daily_and_keeps_seven_days(overlay: str) -> None:
    docs = render(overlay)
    cron = find(docs, "CronJob", "xrouter-backup")
    assert re.fullmatch(r"\d+ \d+ \* \* \*", cron["spec"]["schedule"])
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    backup = container(cron, "backup")
    assert backup["image"] == "postgres:16-bookworm"
    assert pod["securityContext"]["runAsUser"] == backup["securityContext"]["runAsUser"] == 999
    script = "\n".join(backup["command"] + backup["args"])
    assert re.search(r"^pg_dumpall .*\| gzip > ", script, re.MULTILINE)
    assert "set -euo pipefail" in script
    directory = re.search(r'^dir=(\S+)$', script, re.MULTILINE)
    assert directory is not None
    assert re.search(r"""^find "\$dir" -type f -name 'full_backup_\*\.sql\.gz' -mtime \+7 -delete$""",
                     script, re.MULTILINE)
    mount = next(m for m in backup["volumeMounts"] if directory.group(1).startswith(m["mountPath"]))
    claim = next(v for v in pod["volumes"] if v["name"] == mount["name"])["persistentVolumeClaim"]
    assert find(docs, "PersistentVolumeClaim", claim["claimName"])["metadata"]["name"] == "xrouter-backups"
    url = urlsplit(env_of(container(router(docs), "router-service"))["XROUTER_DATABASE_URL"])
    env = env_of(backup)
    assert (env["PGHOST"], env["PGPORT"], env["PGUSER"]) == (url.hostname, str(url.port), url.username)
