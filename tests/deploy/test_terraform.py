"""Offline checks of terraform/: formatting, structure (variables, module calls, references),
secrets, the cloud boundary and the node sizes of the deployment document. Providers cannot be
downloaded here, so `terraform init`/`validate` are not run; these checks stand in for them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import hcl2
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
TERRAFORM = REPO / "terraform"
CLOUD_MODULE = TERRAFORM / "modules" / "yandex-k8s"
RELEASE_MODULE = TERRAFORM / "modules" / "xrouter-release"
TFVARS_EXAMPLE = TERRAFORM / "prod.tfvars.example"
DEPLOYMENT_DOC = REPO.parent / "shared/reference/xrouter-origin/architecture/deployment.md"

# "Hardware Requirements (Per Node)" of the deployment document: pool -> (cores, memory in GB).
DOCUMENT_SIZES = {"gateway": (4, 8), "router": (8, 16), "database": (8, 32), "cache": (4, 16)}
DOCUMENT_ROLES = {"API Gateway": "gateway", "Router Service": "router", "Database": "database",
                  "Cache": "cache"}

SECRET_KEYS = {"db-password", "redis-password", "provider-keys", "master-key", "key-secret"}
# The keys the Bitnami PostgreSQL HA subchart reads from the same Secret (helm/xrouter/values.yaml).
BITNAMI_SECRET_KEYS = {"password", "postgres-password", "repmgr-password", "admin-password",
                       "sr-check-password"}
SECRET_NAME = re.compile(r"password|passwd|secret|token|api_?key|private_?key|master_?key|access_?key",
                         re.IGNORECASE)
MODULE_META_ARGUMENTS = {"source", "version", "providers", "depends_on", "count", "for_each"}

Block = dict[str, Any]


def _unquote(text: str) -> str:
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


@cache
def _parse(path: Path) -> Block:
    parsed: Block = hcl2.loads(path.read_text(encoding="utf-8"))
    return parsed


def _labelled(docs: list[Block], kind: str) -> Iterator[tuple[str, Block]]:
    """Blocks with one label (variable, output, module, provider) as (label, body)."""
    for doc in docs:
        for entry in doc.get(kind, []):
            for label, body in entry.items():
                yield _unquote(label), body


def _typed(docs: list[Block], kind: str) -> Iterator[tuple[str, str, Block]]:
    """Blocks with two labels (resource, data) as (type, name, body)."""
    for type_, by_name in _labelled(docs, kind):
        for name, body in by_name.items():
            if not name.startswith("__"):
                yield type_, _unquote(name), body


@dataclass(frozen=True)
class Module:
    path: Path

    @property
    def files(self) -> list[Path]:
        return sorted(self.path.glob("*.tf"))

    @property
    def docs(self) -> list[Block]:
        return [_parse(path) for path in self.files]

    @property
    def text(self) -> str:
        return "\n".join(path.read_text(encoding="utf-8") for path in self.files)

    @property
    def variables(self) -> dict[str, Block]:
        return dict(_labelled(self.docs, "variable"))

    @property
    def outputs(self) -> dict[str, Block]:
        return dict(_labelled(self.docs, "output"))

    @property
    def locals(self) -> set[str]:
        return {name for doc in self.docs for block in doc.get("locals", []) for name in block
                if not name.startswith("__")}

    def resources(self, type_: str) -> list[Block]:
        return [body for kind, _, body in _typed(self.docs, "resource") if kind == type_]


ROOT = Module(TERRAFORM)
# Every .tf file of the configuration, not the copies `terraform init` leaves in .terraform/.
TF_FILES = sorted(path for path in TERRAFORM.rglob("*.tf") if ".terraform" not in path.parts)
MODULES = [ROOT, *(Module(path) for path in sorted((TERRAFORM / "modules").iterdir()) if path.is_dir())]


def _ids(modules: list[Module]) -> list[str]:
    return [str(module.path.relative_to(TERRAFORM)) for module in modules]


def _tfvars_example() -> Block:
    return {key: value for key, value in _parse(TFVARS_EXAMPLE).items() if not key.startswith("__")}


def _is_literal(value: object) -> bool:
    return isinstance(value, str) and value.startswith('"') and "${" not in value


def test_layout() -> None:
    for module in (ROOT, Module(CLOUD_MODULE), Module(RELEASE_MODULE)):
        names = {path.name for path in module.files}
        assert {"variables.tf", "outputs.tf", "versions.tf"} <= names, module.path
    assert {"main.tf", "README.md", "prod.tfvars.example"} <= {p.name for p in TERRAFORM.iterdir()}


def test_terraform_fmt() -> None:
    terraform = shutil.which("terraform") or ("/usr/local/bin/terraform"
                                              if os.access("/usr/local/bin/terraform", os.X_OK) else None)
    if terraform is None:
        pytest.skip("terraform is not installed: `terraform fmt -check -recursive` not run")
    env = {**os.environ, "CHECKPOINT_DISABLE": "1"}
    result = subprocess.run([terraform, "fmt", "-check", "-recursive", "-diff"], cwd=TERRAFORM, env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, f"terraform fmt would change:\n{result.stdout}{result.stderr}"


@pytest.mark.parametrize("path", [*TF_FILES, TFVARS_EXAMPLE],
                         ids=lambda path: str(path.relative_to(TERRAFORM)))
def test_every_file_parses(path: Path) -> None:
    assert _parse(path)


@pytest.mark.parametrize("module", MODULES, ids=_ids(MODULES))
def test_variables_and_outputs_are_documented(module: Module) -> None:
    assert module.variables, module.path
    for name, body in module.variables.items():
        assert _unquote(str(body.get("description", ""))).strip(), f"variable {name}: no description"
        assert body.get("type"), f"variable {name}: no type"
    for name, body in module.outputs.items():
        assert _unquote(str(body.get("description", ""))).strip(), f"output {name}: no description"


@pytest.mark.parametrize("module", MODULES, ids=_ids(MODULES))
def test_secret_variables_are_sensitive_without_default(module: Module) -> None:
    for name, body in module.variables.items():
        if SECRET_NAME.search(name):
            assert body.get("sensitive") is True, f"variable {name} holds a secret: mark it sensitive"
        if body.get("sensitive"):
            # `default = null` only makes the variable optional; no value is baked in.
            assert body.get("default") is None, f"sensitive variable {name} has a default"


@pytest.mark.parametrize("module", MODULES, ids=_ids(MODULES))
def test_references_are_declared(module: Module) -> None:
    text = module.text
    assert set(re.findall(r"\bvar\.([A-Za-z_][\w-]*)", text)) <= set(module.variables)
    assert set(re.findall(r"\blocal\.([A-Za-z_][\w-]*)", text)) <= module.locals


def test_module_calls_match_module_interfaces() -> None:
    calls = dict(_labelled(ROOT.docs, "module"))
    assert set(calls) == {"cluster", "release"}
    for name, call in calls.items():
        module = Module((TERRAFORM / _unquote(call["source"])).resolve())
        passed = {key for key in call if not key.startswith("__")} - MODULE_META_ARGUMENTS
        declared = module.variables
        required = {var for var, body in declared.items() if "default" not in body}
        assert passed <= set(declared), f"module {name}: undeclared inputs {passed - set(declared)}"
        assert required <= passed, f"module {name}: required inputs not passed {required - passed}"
        used = set(re.findall(rf"\bmodule\.{name}\.(\w+)", ROOT.text))
        assert used <= set(module.outputs), f"module {name}: undeclared outputs {used - set(module.outputs)}"


def _secret_literals(node: object, where: str) -> Iterator[str]:
    """Paths of attributes named like a secret whose value is a string literal."""
    if isinstance(node, list):
        for index, item in enumerate(node):
            yield from _secret_literals(item, f"{where}[{index}]")
    elif isinstance(node, dict):
        for key, value in node.items():
            if key.startswith("__"):
                continue
            name = _unquote(key)
            # A secret's name or ID is not a secret.
            if (SECRET_NAME.search(name.replace("-", "_")) and not name.lower().endswith(("name", "_id"))
                    and _is_literal(value)):
                yield f"{where}.{name}"
            yield from _secret_literals(value, f"{where}.{name}")


@pytest.mark.parametrize("module", MODULES, ids=_ids(MODULES))
def test_no_hard_coded_secrets(module: Module) -> None:
    found = [hit for path in module.files for kind in ("resource", "data", "provider", "module", "locals")
             for hit in _secret_literals(_parse(path).get(kind, []), f"{path.name}:{kind}")]
    assert not found, f"string literals assigned to secret-named attributes: {found}"


def test_tfvars_example_assigns_every_non_secret_root_variable_only() -> None:
    assigned = set(_tfvars_example())
    declared = ROOT.variables
    secret = {name for name, body in declared.items() if body.get("sensitive")}
    assert assigned <= set(declared), f"undeclared variables: {assigned - set(declared)}"
    assert not assigned & secret, f"secrets belong in TF_VAR_* variables: {assigned & secret}"
    assert set(declared) - secret <= assigned, f"not in the example: {set(declared) - secret - assigned}"
    assert {"TF_VAR_db_password", "TF_VAR_provider_keys"} <= set(re.findall(
        r"TF_VAR_\w+", TFVARS_EXAMPLE.read_text(encoding="utf-8")))


def test_cloud_provider_only_in_the_cluster_module() -> None:
    for path in TF_FILES:
        if path.parent == CLOUD_MODULE:
            continue
        hits = re.findall(r"\byandex_\w+", path.read_text(encoding="utf-8"))
        assert not hits, f"{path.relative_to(TERRAFORM)} uses {sorted(set(hits))}"
    cloud = Module(CLOUD_MODULE)
    assert cloud.resources("yandex_kubernetes_cluster") and cloud.resources("yandex_kubernetes_node_group")


def _document_sizes() -> dict[str, tuple[int, int]]:
    text = DEPLOYMENT_DOC.read_text(encoding="utf-8")
    section = text.split("Hardware Requirements (Per Node)", 1)[1].split("####", 1)[0]
    rows = re.findall(r"^- \*\*(.+?)\*\*: (\d+) cores, (\d+)GB RAM", section, re.MULTILINE)
    return {DOCUMENT_ROLES[role]: (int(cores), int(memory)) for role, cores, memory in rows}


def test_sizes_are_copied_from_the_document() -> None:
    if not DEPLOYMENT_DOC.exists():
        pytest.skip(f"{DEPLOYMENT_DOC} is not here; the sizes are checked against the copy in this test")
    assert _document_sizes() == DOCUMENT_SIZES


@pytest.mark.parametrize("source", ["root default", "prod.tfvars.example"])
def test_node_pools_are_sized_from_the_document(source: str) -> None:
    pools = (ROOT.variables["node_pools"]["default"] if source == "root default"
             else _tfvars_example()["node_pools"])
    assert {pool: (spec["cores"], spec["memory"]) for pool, spec in pools.items()} == DOCUMENT_SIZES
    for pool, spec in pools.items():
        assert 0 <= spec["min_per_zone"] <= spec["max_per_zone"], pool


def test_cluster_module() -> None:
    cloud = Module(CLOUD_MODULE)
    variables = cloud.variables
    assert _unquote(variables["kubernetes_version"]["default"]) == "1.31"
    assert _unquote(variables["release_channel"]["default"]) == "STABLE"
    assert "node_pools" in variables and "default" not in variables["node_pools"]
    [cluster] = cloud.resources("yandex_kubernetes_cluster")
    assert cluster["master"][0]["regional"], "the master must be regional"
    assert cluster["kms_provider"][0]["key_id"] == "${yandex_kms_symmetric_key.secrets.id}"
    [group] = cloud.resources("yandex_kubernetes_node_group")
    assert group["node_labels"] == {"${(var.pool_label_key)}": "${each.value.pool}"}
    assert group["scale_policy"][0]["auto_scale"]
    assert [_unquote(zone) for zone in ROOT.variables["zones"]["default"]] == [
        "ru-central1-a", "ru-central1-b", "ru-central1-d"]
    assert {"cluster_id", "endpoint", "ca_certificate"} <= set(cloud.outputs)
    assert cloud.outputs["ca_certificate"].get("sensitive") is True


def test_release_module() -> None:
    release = Module(RELEASE_MODULE)
    [secret] = release.resources("kubernetes_secret_v1")
    assert _unquote(secret["metadata"][0]["name"]) == "xrouter-secrets"
    assert {_unquote(key) for key in secret["data"]} == SECRET_KEYS | BITNAMI_SECRET_KEYS
    [helm] = release.resources("helm_release")
    assert helm["chart"] == "${var.chart_path}"
    assert re.search(r"secret_name\s*=\s*kubernetes_secret_v1\.xrouter\.metadata\[0\]\.name", release.text)
    assert re.search(r"secrets\s*=\s*\{\s*existingSecret\s*=\s*local\.secret_name", release.text)
    assert _unquote(release.variables["namespace"]["default"]) == "xrouter"
    call = dict(_labelled(ROOT.docs, "module"))["release"]
    assert call["chart_path"] == "${local.chart_path}"
    assert re.search(r'chart_path\s*=\s*"\$\{path\.root\}/\.\./helm/xrouter"', ROOT.text)


def test_secrets_stay_out_of_helm_values() -> None:
    release = Module(RELEASE_MODULE)
    secret_variables = {name for name, body in release.variables.items() if body.get("sensitive")}
    [helm] = release.resources("helm_release")
    referenced = set(re.findall(r"\bvar\.(\w+)", str(helm)))
    assert not referenced & secret_variables, "secrets reach the pods through xrouter-secrets only"
    values = release.text.split("values = merge(", 1)[1].split("\n  )\n", 1)[0]
    assert not set(re.findall(r"\bvar\.(\w+)", values)) & secret_variables
    for setting in helm.get("set_sensitive", []) + helm.get("set", []):
        assert not _is_literal(setting["value"]), f"{setting['name']} is a literal"


# Values the release module sets, as key paths of the chart's values.yaml.
CHART_VALUE_PATHS = [
    "image.gateway.tag", "image.router.tag", "secrets.existingSecret", "secrets.create", "catalog.toml",
    "gateway.replicaCount", "gateway.nodeSelector", "gateway.tolerations", "gateway.service.type",
    "gateway.ingress.enabled", "gateway.ingress.host", "gateway.ingress.issuer.name",
    "router.replicaCount", "router.nodeSelector", "router.tolerations",
    "postgresql-ha.enabled", "postgresql-ha.postgresql.replicaCount",
    "postgresql-ha.postgresql.existingSecret", "postgresql-ha.pgpool.existingSecret",
    "redis-cluster.enabled", "redis-cluster.existingSecret", "redis-cluster.existingSecretPasswordKey",
    "redis-cluster.cluster.nodes", "redis-cluster.cluster.replicas",
]


def test_release_values_exist_in_the_chart() -> None:
    chart_values = REPO / "helm/xrouter/values.yaml"
    if not chart_values.exists():
        pytest.skip("helm/xrouter/values.yaml is not there: the values' key paths are not checked")
    defaults = yaml.safe_load(chart_values.read_text(encoding="utf-8"))
    text = Module(RELEASE_MODULE).text
    for path in CHART_VALUE_PATHS:
        node = defaults
        for key in path.split("."):
            assert isinstance(node, dict) and key in node, f"{path}: not in helm/xrouter/values.yaml"
            node = node[key]
        leaf = path.rsplit(".", 1)[-1]
        assert re.search(rf'(\b|"){re.escape(leaf)}"?\s*=', text), f"{path}: not set by the module"


def test_versions_are_pinned() -> None:
    [block] = _parse(TERRAFORM / "versions.tf")["terraform"]
    assert _unquote(block["required_version"]) == ">= 1.5"
    [required] = block["required_providers"]
    providers = {name: spec for name, spec in required.items() if not name.startswith("__")}
    assert {name: _unquote(spec["source"]) for name, spec in providers.items()} == {
        "yandex": "yandex-cloud/yandex", "helm": "hashicorp/helm",
        "kubernetes": "hashicorp/kubernetes", "random": "hashicorp/random"}
    for name, spec in providers.items():
        assert _unquote(spec["version"]).startswith("~> "), name
