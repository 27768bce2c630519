"""Every YAML file of the repository passes yamllint with the repository's .yamllint, except Go
templates (helm/*/templates) and generated or vendored trees, which that file ignores."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / ".yamllint"


def yamllint(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "yamllint", "-c", str(CONFIG), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)


def yaml_files() -> list[str]:
    """Tracked and untracked-but-not-ignored files, as git sees them (so .venv never counts)."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                            cwd=ROOT, capture_output=True, check=True, timeout=30).stdout
    return sorted(path for path in listed.decode().split("\0")
                  if path.endswith((".yaml", ".yml")) and (ROOT / path).is_file())


def test_the_config_ignores_go_templates_and_generated_trees() -> None:
    candidates = ["helm/xrouter/templates/deployment.yaml", ".venv/lib/x/y.yaml",
                  "libs/common/gen/x.yaml", "helm/xrouter/values.yaml", "k8s/base/api-gateway.yaml"]
    listed = yamllint("--list-files", *candidates)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == ["helm/xrouter/values.yaml", "k8s/base/api-gateway.yaml"]


def test_every_yaml_file_passes_yamllint() -> None:
    files = yaml_files()
    assert "k8s/base/router-service.yaml" in files
    assert "observability/prometheus/prometheus.yml" in files
    # Files the config ignores are skipped even when named here.
    result = yamllint("--strict", "-f", "parsable", ".yamllint", *files)
    assert result.returncode == 0, result.stdout + result.stderr
