"""helm/xrouter, offline: lint, renders with the default, production and managed-database values
validated against the Kubernetes schemas and the shared production properties, the values
schema, Secret handling, the migration hook, and the copies of the Grafana dashboards.

The Bitnami subcharts cannot be downloaded here. Helm's engine renders this chart's templates
without them (their objects are simply absent), while `helm install`/`template` and strict lint
refuse a chart whose declared dependencies are missing: those checks run on a copy without the
dependency stanza, and a test pins down the refusal itself (helm/xrouter/README.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml

from tests.deploy.helm_chart import (
    CHART,
    CHART_DASHBOARDS,
    DASHBOARDS,
    EXAMPLE_CATALOG,
    MANAGED_DB_VALUES,
    PRODUCTION_VALUES,
    Rendered,
    containers,
    env,
    install_dry_run,
    merged,
    metadata_annotations,
    pod_templates,
    property_problems,
    render,
    secret_references,
    values_file,
    without_dependencies,
)
from tests.deploy.manifests import KUBERNETES_VERSION, schema_problems

DEFAULTS = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
# `--set-file catalog.toml=config/catalog.example.toml`, as README.md shows for production.
REAL_CATALOG = {"catalog": {"toml": EXAMPLE_CATALOG.read_text(encoding="utf-8")}}
VALUE_SETS: dict[str, list[Path]] = {
    "default": [],
    "production": [PRODUCTION_VALUES],
    "managed-db": [MANAGED_DB_VALUES],
    "production+managed-db": [PRODUCTION_VALUES, MANAGED_DB_VALUES],
}
DEPENDENCY_CONDITIONS = {"postgresql-ha": "postgresql-ha.enabled",
                         "redis-cluster": "redis-cluster.enabled"}
MISSING_DEPENDENCIES = "chart directory is missing these dependencies: postgresql-ha,redis-cluster"
APP_SECRETS = {"dbPassword": "d", "redisPassword": "r", "providerKeys": "OPENAI_API_KEY=k",
               "masterKey": "m", "keySecret": "s"}


def values_for(value_set: str) -> dict[str, Any]:
    layers = [values_file(path) for path in VALUE_SETS[value_set]]
    if "production" in value_set:
        layers.append(REAL_CATALOG)
    return merged(*layers)


@pytest.fixture(scope="module")
def managed() -> Rendered:
    return render(values_file(MANAGED_DB_VALUES))


@pytest.fixture(scope="module")
def production() -> Rendered:
    return render(values_for("production"))


# ---- the chart and its dependencies ------------------------------------------------------------

def test_chart_metadata_and_pinned_bitnami_dependencies() -> None:
    metadata = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    assert (metadata["apiVersion"], metadata["name"]) == ("v2", "xrouter")
    assert (metadata["version"], metadata["appVersion"]) == ("0.1.0", "0.1.0")
    found = {dep["name"]: dep for dep in metadata["dependencies"]}
    assert {dep: found[dep]["condition"] for dep in found} == DEPENDENCY_CONDITIONS
    for dep in found.values():
        assert dep["repository"] == "https://charts.bitnami.com/bitnami"
        assert all(part.isdigit() for part in dep["version"].split(".")), "pin an exact version"
    assert found["postgresql-ha"]["version"].startswith("14.")
    assert found["redis-cluster"]["version"].startswith("11.")


def test_values_carry_the_documents_ha_numbers() -> None:
    postgresql = DEFAULTS["postgresql-ha"]["postgresql"]
    assert postgresql["replicaCount"] == 3
    # Bitnami's syncReplication would make replicaCount - 1 standbys synchronous.
    assert postgresql["syncReplication"] is False
    image_env = {var["name"]: var["value"] for var in postgresql["extraEnvVars"]}
    assert image_env == {"POSTGRESQL_SYNCHRONOUS_COMMIT_MODE": "on",
                         "POSTGRESQL_NUM_SYNCHRONOUS_REPLICAS": "1"}
    assert DEFAULTS["redis-cluster"]["cluster"] == {"nodes": 6, "replicas": 1}
    assert DEFAULTS["postgresql-ha"]["enabled"] is DEFAULTS["redis-cluster"]["enabled"] is True


def test_without_the_subcharts_helm_refuses_to_install_even_when_they_are_disabled() -> None:
    assert {dep["name"]: dep["status"] for dep in helm_python.dependency_list(CHART)} == {
        "postgresql-ha": "missing", "redis-cluster": "missing"}
    for values in ({}, values_file(MANAGED_DB_VALUES)):
        with pytest.raises(helm_python.HelmChartInvalidError, match="missing in charts/ directory"):
            install_dry_run(CHART, values)


def test_lint_finds_nothing_but_the_missing_subcharts() -> None:
    report = helm_python.lint(CHART, strict=True, kube_version=f"v{KUBERNETES_VERSION}.0")
    assert report["errors"] == [MISSING_DEPENDENCIES]


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_strict_lint_passes(value_set: str, tmp_path: Path) -> None:
    report = helm_python.lint(without_dependencies(tmp_path), values_for(value_set), strict=True,
                              kube_version=f"v{KUBERNETES_VERSION}.0")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] > 1] == []


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_install_dry_run_renders_the_release(value_set: str, tmp_path: Path) -> None:
    installed = install_dry_run(without_dependencies(tmp_path), values_for(value_set))
    rendered = render(values_for(value_set))
    as_set = {(doc["kind"], doc["metadata"]["name"]) for doc in installed.docs}
    hooks = {(doc["kind"], doc["metadata"]["name"]) for doc in rendered.hooks()}
    assert as_set == {(doc["kind"], doc["metadata"]["name"]) for doc in rendered.docs} - hooks
    assert hooks == {("Job", "xrouter-migrate")}
    assert installed.notes == rendered.notes


# ---- rendered manifests ------------------------------------------------------------------------

@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_rendered_manifests_are_valid_and_production_ready(value_set: str) -> None:
    rendered = render(values_for(value_set))
    assert schema_problems(rendered.docs) == []
    assert property_problems(rendered.docs) == []
    assert rendered.names("Deployment") == {"api-gateway", "router-service"}


def test_default_render_points_at_the_bitnami_services_it_cannot_render() -> None:
    rendered = render()
    router = rendered.get("Deployment", "router-service")
    variables = env(containers(router["spec"]["template"])[0])
    assert variables["XROUTER_DATABASE_URL"]["value"] == (
        "postgresql://xrouter@xrouter-postgresql-ha-pgpool:5432/xrouter?target_session_attrs=read-write")
    assert variables["XROUTER_REDIS_URL"]["value"] == "redis://:$(REDIS_PASSWORD)@xrouter-redis-cluster:6379"
    assert not rendered.names("StatefulSet"), "the Bitnami objects need `helm dependency build`"


def test_managed_databases_are_reached_with_passwords_from_the_secret(managed: Rendered) -> None:
    router = env(containers(managed.get("Deployment", "router-service")["spec"]["template"])[0])
    assert router["XROUTER_DATABASE_URL"]["value"] == (
        "postgresql://xrouter@xrouter-pg.example.internal:5432/xrouter?target_session_attrs=read-write")
    assert router["XROUTER_REDIS_URL"]["value"] == "redis://:$(REDIS_PASSWORD)@xrouter-redis.example.internal:6379"
    names = list(router)
    # Kubernetes expands $(REDIS_PASSWORD) only from a variable defined before.
    assert names.index("REDIS_PASSWORD") < names.index("XROUTER_REDIS_URL")
    assert router["PGPASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "db-password"


def test_gateway_targets_the_headless_router_service_of_the_release() -> None:
    rendered = render(values_file(MANAGED_DB_VALUES), namespace="team-a")
    router_pods = rendered.get("Deployment", "router-service")["spec"]["template"]["metadata"]["labels"]
    [headless] = [doc for doc in rendered.docs if doc["kind"] == "Service"
                  and doc["spec"].get("clusterIP") == "None"]
    assert headless["spec"]["selector"].items() <= router_pods.items()
    assert [p["port"] for p in headless["spec"]["ports"]] == [50051]
    assert headless["spec"]["publishNotReadyAddresses"] is False
    gateway = env(containers(rendered.get("Deployment", "api-gateway")["spec"]["template"])[0])
    expected = f"dns:///{headless['metadata']['name']}.team-a.svc.cluster.local:50051"
    assert gateway["XROUTER_ROUTER_TARGET"]["value"] == expected


def test_router_network_policy_admits_the_gateway_and_monitoring_only(managed: Rendered) -> None:
    policy = managed.get("NetworkPolicy", "router-service-policy")["spec"]
    assert policy["ingress"] == [
        {"from": [{"podSelector": {"matchLabels": {"app": "api-gateway",
                                                   "app.kubernetes.io/instance": "xrouter"}}}],
         "ports": [{"protocol": "TCP", "port": 50051}]},
        {"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
         "ports": [{"protocol": "TCP", "port": 9100}]},
    ]
    egress_ports = {port["port"] for rule in policy["egress"] for port in rule["ports"]}
    assert egress_ports == {53, 6379, 16379, 5432, 443, 8000}


def test_pods_carry_the_scrape_labels_and_annotations(managed: Rendered) -> None:
    for deployment, app, port in (("api-gateway", "api-gateway", "8000"),
                                  ("router-service", "router-service", "9100")):
        metadata = managed.get("Deployment", deployment)["spec"]["template"]["metadata"]
        assert metadata["labels"]["app"] == app
        assert metadata["labels"]["app.kubernetes.io/part-of"] == "xrouter"
        assert metadata["annotations"]["prometheus.io/port"] == port
    for doc, template in pod_templates(managed.docs):
        pod = template["spec"]
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, doc
        for container in containers(template):
            assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert {v["name"]: v for v in pod["volumes"]}[mounts["/tmp"]]["emptyDir"]


def test_probes_and_graceful_shutdown(managed: Rendered) -> None:
    gateway_pod = managed.get("Deployment", "api-gateway")["spec"]["template"]["spec"]
    [gateway] = gateway_pod["containers"]
    probes = {probe: gateway[probe]["httpGet"]["path"]
              for probe in ("startupProbe", "livenessProbe", "readinessProbe")}
    # Not /health for liveness: it is 503 whenever no router answers.
    assert probes == {"startupProbe": "/livez", "livenessProbe": "/livez", "readinessProbe": "/readyz"}
    assert gateway["lifecycle"] == {"preStop": {"sleep": {"seconds": 10}}}
    assert env(gateway)["XROUTER_GATEWAY_DRAIN_SECONDS"]["value"] == "30"
    assert gateway_pod["terminationGracePeriodSeconds"] >= 10 + 30  # preStop + uvicorn's drain
    router_pod = managed.get("Deployment", "router-service")["spec"]["template"]["spec"]
    [router] = router_pod["containers"]
    assert all(router[probe]["grpc"] == {"port": 50052}  # the health-only port
               for probe in ("startupProbe", "livenessProbe", "readinessProbe"))
    assert env(router)["XROUTER_SHUTDOWN_GRACE"]["value"] == "30"
    pre_stop = router["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert router_pod["terminationGracePeriodSeconds"] >= pre_stop + 30


def test_gigachat_ca_is_mounted_from_extra_volumes() -> None:
    volume = {"name": "ca-bundle", "configMap": {"name": "xrouter-ca-bundle"}}
    mount = {"name": "ca-bundle", "mountPath": "/etc/xrouter/ca", "readOnly": True}
    rendered = render(merged(values_file(MANAGED_DB_VALUES), {
        "router": {"extraVolumes": [volume], "extraVolumeMounts": [mount]}}))
    assert schema_problems(rendered.docs) == []
    pod = rendered.get("Deployment", "router-service")["spec"]["template"]["spec"]
    assert pod["volumes"][-1] == volume
    assert pod["containers"][0]["volumeMounts"][-1] == mount


def test_replicas_are_left_to_the_autoscalers_with_the_terraform_values() -> None:
    rendered = render(merged(values_file(MANAGED_DB_VALUES), {
        "image": {"gateway": {"repository": "cr.example/gw", "tag": "1.2.3"},
                  "router": {"repository": "cr.example/rt", "tag": "1.2.3"}},
        "gateway": {"replicaCount": 4, "nodeSelector": {"pool": "gateway"}},
        "router": {"replicaCount": 5, "nodeSelector": {"pool": "router"}},
        "secrets": {"existingSecret": "xrouter-secrets"}}))
    for tier, pool, image, floor in (("api-gateway", "gateway", "cr.example/gw:1.2.3", 4),
                                     ("router-service", "router", "cr.example/rt:1.2.3", 5)):
        deployment = rendered.get("Deployment", tier)
        assert "replicas" not in deployment["spec"]
        assert containers(deployment["spec"]["template"])[0]["image"] == image
        assert deployment["spec"]["template"]["spec"]["nodeSelector"] == {"pool": pool}
        assert rendered.get("HorizontalPodAutoscaler", tier)["spec"]["minReplicas"] == floor



def test_autoscalers_scale_on_cpu_and_memory_routers_up_to_twenty() -> None:
    """The origin's scaling document: routers 2..20 (our floor is 3), triggers CPU > 70 % and
    memory > 80 %."""
    rendered = render({})
    for tier, most in (("api-gateway", 10), ("router-service", 20)):
        spec = rendered.get("HorizontalPodAutoscaler", tier)["spec"]
        assert spec["maxReplicas"] == most
        assert [(m["resource"]["name"], m["resource"]["target"]) for m in spec["metrics"]] == [
            ("cpu", {"type": "Utilization", "averageUtilization": 70}),
            ("memory", {"type": "Utilization", "averageUtilization": 80})]

# ---- values schema and Secret handling ---------------------------------------------------------

@pytest.mark.parametrize(("values", "message"), [
    ({"gateway": {"replicaCount": "three"}}, "at '/gateway/replicaCount': got string, want integer"),
    ({"replicas": 3}, "additional properties 'replicas' not allowed"),
    ({"router": {"replicas": 3}}, "additional properties 'replicas' not allowed"),
    ({"gateway": {"service": {"type": "Ingress"}}}, "/gateway/service/type"),
])
def test_schema_rejects_bad_values(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm_python.HelmValuesError, match="schema") as failure:
        render(values)
    assert message in str(failure.value)


def test_schema_is_closed_except_for_the_subcharts() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert set(schema["properties"]) == set(DEFAULTS) | {"global"}
    open_objects = []

    def walk(node: dict[str, Any], path: str) -> None:
        if "properties" in node and node.get("additionalProperties") is not False:
            open_objects.append(path)
        for key, child in node.get("properties", {}).items():
            walk(child, f"{path}.{key}")
        for key, child in node.get("definitions", {}).items():
            walk(child, f"#{key}")

    walk(schema, "")
    assert sorted(open_objects) == [".postgresql-ha", ".redis-cluster"]


def test_schema_leaves_the_subcharts_values_to_bitnami() -> None:
    render({"postgresql-ha": {"pgpool": {"replicaCount": 2}, "anything": {"goes": True}},
            "redis-cluster": {"persistence": {"size": "16Gi"}}})


def test_creating_the_secret_requires_every_password() -> None:
    with pytest.raises(helm_python.HelmRenderError,
                       match=r"secrets\.dbPassword is required when secrets\.create is true"):
        render({"secrets": {"create": True}})
    with pytest.raises(helm_python.HelmRenderError, match=r"secrets\.postgresPassword is required"):
        render({"secrets": {"create": True, **APP_SECRETS}})
    created = render(merged(values_file(MANAGED_DB_VALUES), {"secrets": {"create": True, **APP_SECRETS}}))
    assert set(created.get("Secret", "xrouter-secrets")["data"]) == {
        "db-password", "redis-password", "provider-keys", "master-key", "key-secret"}
    bitnami = {"postgresPassword": "p", "repmgrPassword": "r", "pgpoolAdminPassword": "a",
               "pgpoolSrCheckPassword": "c"}
    bundled = render({"secrets": {"create": True, **APP_SECRETS, **bitnami}})
    data = bundled.get("Secret", "xrouter-secrets")["data"]
    assert set(data) - {"db-password", "redis-password", "provider-keys", "master-key", "key-secret"} == {
        "password", "postgres-password", "repmgr-password", "admin-password", "sr-check-password"}
    assert data["password"] == data["db-password"]


def test_by_default_the_chart_ships_no_secret(production: Rendered) -> None:
    assert not production.names("Secret")


@pytest.mark.parametrize("secret", ["xrouter-secrets", "custom-secret"])
def test_every_secret_reference_names_the_configured_secret(secret: str) -> None:
    values = {"secrets": {"existingSecret": secret},
              "postgresql-ha": {"postgresql": {"existingSecret": secret},
                                "pgpool": {"existingSecret": secret}},
              "redis-cluster": {"existingSecret": secret}, "backup": {"enabled": True}}
    rendered = render(values)
    # ...but the Secrets cert-manager fills for gateway <-> router mutual TLS.
    issued = {doc["spec"]["secretName"] for doc in rendered.docs if doc["kind"] == "Certificate"}
    assert issued == {"xrouter-grpc-ca", "router-grpc-tls", "gateway-grpc-tls"}
    references = [(obj, target) for obj, target in secret_references(rendered.docs)
                  if target not in issued]
    assert {obj for obj, _ in references} == {
        "Deployment/router-service", "Job/xrouter-migrate", "CronJob/xrouter-backup"}
    assert {target for _, target in references} == {secret}


def test_a_drain_longer_than_the_grace_period_is_refused() -> None:
    rendered = render({"gateway": {"drainSeconds": 300, "terminationGracePeriodSeconds": 320}})
    gateway = containers(rendered.get("Deployment", "api-gateway")["spec"]["template"])[0]
    assert env(gateway)["XROUTER_GATEWAY_DRAIN_SECONDS"]["value"] == "300"
    with pytest.raises(helm_python.HelmRenderError,
                       match=r"gateway\.terminationGracePeriodSeconds \(60\) must cover "
                             r"gateway\.preStopSleepSeconds \+ gateway\.drainSeconds \(310\)"):
        render({"gateway": {"drainSeconds": 300}})

def test_a_subchart_reading_another_secret_is_refused() -> None:
    with pytest.raises(helm_python.HelmRenderError, match=r"must equal secrets\.existingSecret"):
        render({"secrets": {"existingSecret": "other"}})


# ---- the migration hook ------------------------------------------------------------------------

def test_migration_hook_with_an_external_database(managed: Rendered) -> None:
    job = managed.get("Job", "xrouter-migrate")
    assert metadata_annotations(job) == {"helm.sh/hook": "pre-install,pre-upgrade",
                                "helm.sh/hook-weight": "0",
                                "helm.sh/hook-delete-policy": "before-hook-creation"}
    assert job["spec"]["backoffLimit"] <= 2 and job["spec"]["activeDeadlineSeconds"] >= 120
    [container] = containers(job["spec"]["template"])
    assert container["command"] == ["/opt/xrouter/bin/xrouter", "migrate", "--wait", "120"]
    assert container["image"] == "ghcr.io/xrouter/xrouter-router:0.1.0"
    # Before the release exists: nothing of the release, only the Secret made outside it.
    assert job["spec"]["template"]["spec"]["volumes"] == [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}]
    assert secret_references([job]) == [("Job/xrouter-migrate", "xrouter-secrets")]


def test_migration_hook_with_the_bundled_database_runs_after_it_is_created() -> None:
    job = render().get("Job", "xrouter-migrate")
    assert metadata_annotations(job)["helm.sh/hook"] == "post-install,pre-upgrade"


def test_a_created_secret_reaches_the_hook_through_its_own_hook_copy() -> None:
    rendered = render(merged(values_file(MANAGED_DB_VALUES), {"secrets": {"create": True, **APP_SECRETS}}))
    copy = rendered.get("Secret", "xrouter-migrate-db")
    assert metadata_annotations(copy) == {"helm.sh/hook": "pre-install,pre-upgrade",
                                 "helm.sh/hook-weight": "-5",
                                 "helm.sh/hook-delete-policy": "before-hook-creation,hook-succeeded"}
    assert set(copy["data"]) == {"db-password"}
    assert secret_references([rendered.get("Job", "xrouter-migrate")]) == [
        ("Job/xrouter-migrate", "xrouter-migrate-db")]
    assert "helm.sh/hook" not in metadata_annotations(rendered.get("Secret", "xrouter-secrets"))


# ---- backup, monitoring, dashboards, notes -----------------------------------------------------

def test_production_backup_cronjob(production: Rendered) -> None:
    cronjob = production.get("CronJob", "xrouter-backup")
    assert cronjob["spec"]["schedule"] == "0 3 * * *"
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    template = cronjob["spec"]["jobTemplate"]["spec"]["template"]
    [container] = containers(template)
    assert container["image"] == "postgres:16-bookworm"
    assert template["spec"]["securityContext"]["runAsUser"] == 999
    script = container["args"][0]
    assert "pg_dumpall" in script and "-mmin +10080 " in script  # 7 days
    claim = production.get("PersistentVolumeClaim", "xrouter-backups")
    assert metadata_annotations(claim) == {"helm.sh/resource-policy": "keep"}
    assert {v["name"]: v for v in template["spec"]["volumes"]}["backups"] == {
        "name": "backups", "persistentVolumeClaim": {"claimName": "xrouter-backups"}}


def test_service_monitor_is_optional_and_matches_the_scrape_job(production: Rendered) -> None:
    assert not render().names("ServiceMonitor")
    monitor = production.get("ServiceMonitor", "xrouter")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["podTargetLabels"] == ["app"]
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["http", "metrics"]
    assert all(e["relabelings"] == [{"targetLabel": "job", "replacement": "xrouter"}]
               for e in monitor["spec"]["endpoints"])
    ports = {doc["metadata"]["name"]: [p["name"] for p in doc["spec"]["ports"]]
             for doc in production.docs if doc["kind"] == "Service"}
    assert ports == {"api-gateway": ["http"], "router-service": ["metrics"],
                     "router-service-headless": ["grpc"]}


def test_dashboard_copies_are_byte_identical_to_observability() -> None:
    originals = sorted(p.name for p in DASHBOARDS.glob("*.json"))
    assert len(originals) == 6
    assert sorted(p.name for p in CHART_DASHBOARDS.iterdir()) == originals
    for file in originals:
        assert (CHART_DASHBOARDS / file).read_bytes() == (DASHBOARDS / file).read_bytes(), (
            f"cp observability/grafana/dashboards/{file} helm/xrouter/dashboards/")


def test_dashboards_configmap_holds_the_six_dashboards(managed: Rendered) -> None:
    configmap = managed.get("ConfigMap", "xrouter-dashboards")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert {key: value.encode() for key, value in configmap["data"].items()} == {
        path.name: path.read_bytes() for path in DASHBOARDS.glob("*.json")}


def test_notes_tell_how_to_call_the_api(managed: Rendered, production: Rendered) -> None:
    assert "kubectl -n xrouter port-forward service/api-gateway 8000:8000" in managed.notes
    assert "export XROUTER_URL=https://api.example.com" in production.notes
    for notes in (managed.notes, production.notes):
        assert "exec deploy/router-service -- /opt/xrouter/bin/xrouter keys create" in notes
        assert 'curl -sS "$XROUTER_URL/v1/models" -H "Authorization: Bearer $XROUTER_API_KEY"' in notes
