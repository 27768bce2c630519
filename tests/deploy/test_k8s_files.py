"""The plain files of k8s/ (no kubectl needed): the catalog loads with the router's own loader,
the Secret's example has exactly the five keys, the observability copies have not drifted, no
kustomization can render a Secret, and the README carries the operator's commands."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.deploy.k8s_support import K8S, ROOT, SECRET, SECRET_KEYS
from tests.deploy.manifests import load_all, schema_problems
from xrouter_common.env import ConfigError
from xrouter_router import provider_keys
from xrouter_router.catalog_file import parse

CATALOG = K8S / "base" / "catalog.toml"
KEYS_EXAMPLE = K8S / "provider-keys.example.env"
SECRET_EXAMPLE = K8S / "secret.example.yaml"
README = K8S / "README.md"
MONITORING = K8S / "components" / "monitoring"
OBSERVABILITY = ROOT / "observability"
PLACEHOLDER = "REPLACE-ME"


def catalog_key_names() -> set[str]:
    data = tomllib.loads(CATALOG.read_text(encoding="utf-8"))
    return {spec["api_key_env"] for spec in data["providers"].values() if "api_key_env" in spec}


def example_keys() -> dict[str, str]:
    return provider_keys.parse(KEYS_EXAMPLE.read_text(encoding="utf-8"))


def test_the_catalog_loads_with_the_keys_the_example_names() -> None:
    config = parse(tomllib.loads(CATALOG.read_text(encoding="utf-8")), example_keys(), str(CATALOG))
    assert [(p.name, p.type) for p in config.providers] == [
        ("gigachat", "gigachat"), ("yandexgpt", "yandexgpt"), ("openai", "openai")]
    pro = config.catalog.resolve("gigachat-pro")
    assert [d.provider for d in pro.deployments] == ["gigachat", "yandexgpt"]
    assert config.catalog.resolve("gpt-4o-mini").id == "openai/gpt-4o-mini"


@pytest.mark.parametrize("missing", sorted(catalog_key_names()))
def test_the_catalog_needs_every_key_of_the_example(missing: str) -> None:
    env = {k: v for k, v in example_keys().items() if k != missing}
    with pytest.raises(ConfigError, match=missing):
        parse(tomllib.loads(CATALOG.read_text(encoding="utf-8")), env, str(CATALOG))


def test_the_examples_name_exactly_the_catalogs_keys() -> None:
    assert example_keys().keys() == catalog_key_names()
    secret = yaml.safe_load(SECRET_EXAMPLE.read_text(encoding="utf-8"))
    assert provider_keys.parse(secret["stringData"]["provider-keys"]).keys() == catalog_key_names()
    assert set(example_keys().values()) == {PLACEHOLDER}


def test_the_secret_example_has_the_five_keys_and_placeholders_only() -> None:
    docs = load_all(SECRET_EXAMPLE.read_text(encoding="utf-8"))
    assert schema_problems(docs) == []
    [secret] = docs
    assert (secret["kind"], secret["metadata"]["name"], secret["metadata"]["namespace"]) == \
        ("Secret", SECRET, "xrouter")
    assert "data" not in secret
    assert secret["stringData"].keys() == SECRET_KEYS
    for key, value in secret["stringData"].items():
        values = provider_keys.parse(value).values() if key == "provider-keys" else [value]
        assert set(values) == {PLACEHOLDER}, key


def kustomizations() -> list[Path]:
    return sorted(K8S.rglob("kustomization.yaml"))


def test_no_kustomization_can_render_a_secret() -> None:
    assert {str(p.parent.relative_to(K8S)) for p in kustomizations()} >= {
        "base", "migrate", "components/monitoring", "components/prometheus-operator", "overlays/dev",
        "overlays/dev/migrate", "overlays/prod", "overlays/prod/migrate", "overlays/prod-prometheus-operator"}
    for path in kustomizations():
        text = path.read_text(encoding="utf-8")
        config = yaml.safe_load(text)
        assert "secretGenerator" not in config, path
        for resource in config.get("resources", []):
            target = (path.parent / resource).resolve()
            assert target != SECRET_EXAMPLE.resolve(), path
            if target.is_file():
                kinds = {doc["kind"] for doc in load_all(target.read_text(encoding="utf-8"))}
                assert "Secret" not in kinds, target


def test_the_observability_copies_are_byte_identical() -> None:
    pairs = [(OBSERVABILITY / "prometheus" / n, MONITORING / "prometheus" / n)
             for n in ("prometheus.yml", "alerts.yml")]
    sources = sorted((OBSERVABILITY / "grafana" / "dashboards").glob("*.json"))
    assert [p.name for p in sorted((MONITORING / "dashboards").iterdir())] == [p.name for p in sources]
    pairs += [(source, MONITORING / "dashboards" / source.name) for source in sources]
    for source, copy in pairs:
        assert copy.read_bytes() == source.read_bytes(), \
            f"{copy.relative_to(ROOT)} drifted: run scripts/sync-k8s-observability.sh"


def test_the_prometheusrule_is_alerts_yml_indented_under_spec() -> None:
    alerts = (OBSERVABILITY / "prometheus" / "alerts.yml").read_text(encoding="utf-8")
    rule = (K8S / "components" / "prometheus-operator" / "prometheusrule.yaml").read_text(encoding="utf-8")
    header, body = rule.split("spec:\n", 1)
    assert "kind: PrometheusRule" in header
    assert body == "".join(line if line == "\n" else "  " + line
                           for line in alerts.splitlines(keepends=True)), \
        "prometheusrule.yaml drifted: run scripts/sync-k8s-observability.sh"


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("diff") is None,
                    reason="bash and diff are needed to run the sync script")
def test_the_sync_script_agrees_in_check_mode() -> None:
    result = subprocess.run(["bash", str(ROOT / "scripts" / "sync-k8s-observability.sh"), "--check"],
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def readme() -> str:
    return README.read_text(encoding="utf-8")


@pytest.mark.parametrize("command", [
    "kubectl apply -f k8s/base/namespace.yaml",
    "-f k8s/charts/postgresql-ha-values.yaml",
    "kubectl -n xrouter create configmap xrouter-ca-bundle --from-file=russian_trusted_root_ca.pem",
    "kubectl -n xrouter delete job xrouter-migrate --ignore-not-found",
    "kubectl apply -k k8s/overlays/prod/migrate",
    "kubectl -n xrouter wait --for=condition=complete --timeout=10m job/xrouter-migrate",
    "kubectl apply -k k8s/overlays/prod",
    "kubectl -n xrouter rollout status deployment/router-service --timeout=10m",
    "kubectl -n xrouter rollout status deployment/api-gateway --timeout=10m",
])
def test_the_readme_has_the_operator_commands(command: str) -> None:
    assert command in readme()


def test_the_readme_creates_the_secret_with_its_five_keys() -> None:
    match = re.search(r"kubectl -n xrouter create secret generic xrouter-secrets((?:.*\\\n)*.*)", readme())
    assert match is not None
    keys = set(re.findall(r"--from-(?:literal|file)=([a-z-]+)=", match.group(1)))
    assert keys == SECRET_KEYS


def test_every_path_the_readme_names_exists() -> None:
    paths = set(re.findall(r"\b((?:k8s|observability|scripts|docs|config)/[\w./-]*[\w])", readme()))
    assert paths
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert missing == []


def test_the_kustomize_path_installs_postgresql_with_one_synchronous_standby() -> None:
    """The kustomize install path sets the same PostgreSQL HA values as the Helm chart: 3 nodes,
    synchronous_commit on, exactly one synchronous standby (not the chart's syncReplication,
    which makes both standbys synchronous)."""
    values = yaml.safe_load((K8S / "charts" / "postgresql-ha-values.yaml").read_text(encoding="utf-8"))
    chart = yaml.safe_load((ROOT / "helm" / "xrouter" / "values.yaml").read_text(encoding="utf-8"))
    ours = values["postgresql"]
    assert {k: v for k, v in chart["postgresql-ha"]["postgresql"].items() if k != "existingSecret"} == ours
    assert ours["replicaCount"] == 3 and ours["syncReplication"] is False
    assert {e["name"]: e["value"] for e in ours["extraEnvVars"]} == {
        "POSTGRESQL_SYNCHRONOUS_COMMIT_MODE": "on", "POSTGRESQL_NUM_SYNCHRONOUS_REPLICAS": "1"}
