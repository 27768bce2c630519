"""Every shell script in the repository passes shellcheck (its default severity, no exclusions)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.support import ROOT

SHELLCHECK = ROOT / ".venv" / "bin" / "shellcheck"
SHEBANG = re.compile(rb"#!\s*/(usr/)?bin/(env\s+)?(ba|da)?sh\b")


def shell_scripts() -> list[str]:
    """*.sh files and files with a sh/bash shebang: tracked, or new and not ignored."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True, timeout=30).stdout.splitlines()
    found = []
    for name in listed:
        path = ROOT / name
        if not path.is_file():
            continue
        if name.endswith(".sh") or SHEBANG.match(path.open("rb").readline()):
            found.append(name)
    return sorted(found)


def test_the_deploy_and_make_scripts_are_found() -> None:
    scripts = shell_scripts()
    assert {"deploy/backup/xrouter-backup.sh", "deploy/backup/xrouter-restore.sh",
            "scripts/run.sh", "scripts/test.sh", ".ci/run"} <= set(scripts)
    assert [s for s in scripts if not (ROOT / s).stat().st_mode & 0o111] == []  # all executable


@pytest.mark.parametrize("script", shell_scripts())
def test_shellcheck(script: str) -> None:
    if not SHELLCHECK.exists():
        pytest.skip("shellcheck is not in .venv (make install)")
    done = subprocess.run([str(SHELLCHECK), "--format=gcc", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=False)
    assert (done.returncode, done.stdout + done.stderr) == (0, ""), Path(script).name
