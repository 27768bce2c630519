"""Reading deploy/'s systemd units and env files the way systemd does, for the deploy tests."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from tests.support import ROOT

SYSTEMD_DIR = ROOT / "deploy" / "systemd"
ENV_DIR = ROOT / "deploy" / "env"
UNITS = sorted(p.name for p in SYSTEMD_DIR.iterdir() if p.suffix in {".service", ".timer"})
# Where the units expect the installed programs (deploy/README.md installs them there).
INSTALLED_PATHS = ("/opt/xrouter/venv/bin/", "/usr/local/sbin/")

Unit = dict[str, list[tuple[str, str]]]


def parse_unit(text: str) -> Unit:
    """Sections of (key, value) pairs in file order; keys may repeat, as in systemd."""
    unit: Unit = {}
    section: list[tuple[str, str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = unit.setdefault(line[1:-1], [])
            continue
        key, sep, value = line.partition("=")
        assert sep and section is not None, f"not a unit-file line: {raw!r}"
        section.append((key.strip(), value.strip()))
    return unit


def load(name: str) -> Unit:
    return parse_unit((SYSTEMD_DIR / name).read_text(encoding="utf-8"))


def values(unit: Unit, section: str, key: str) -> list[str]:
    return [v for k, v in unit.get(section, []) if k == key]


def value(unit: Unit, section: str, key: str) -> str:
    found = values(unit, section, key)
    assert len(found) == 1, f"{section}/{key}: {found}"
    return found[0]


def words(unit: Unit, section: str, key: str) -> set[str]:
    """Space-separated list settings (After=, Wants=...), all lines together."""
    return {word for line in values(unit, section, key) for word in line.split()}


def seconds(timespan: str) -> float:
    """A systemd time span such as 45s, 2min, 1h 30s."""
    scale = {"": 1.0, "s": 1.0, "sec": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0, "ms": 0.001}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", timespan):
        total += float(number) * scale[unit]
    return total


def command(line: str) -> list[str]:
    """An Exec*= line as argv: its prefix characters dropped, `$$` unescaped."""
    return shlex.split(line.lstrip("-@:+!").replace("$$", "$"))


def parse_env(text: str) -> tuple[dict[str, str], set[str]]:
    """An EnvironmentFile: the values set, and the names present only as `#NAME=` examples."""
    set_values: dict[str, str] = {}
    commented: set[str] = set()
    for raw in text.splitlines():
        line = raw.strip()
        if match := re.fullmatch(r"#([A-Z][A-Z0-9_]*)=.*", line):
            commented.add(match.group(1))
        elif line and not line.startswith("#"):
            name, sep, val = line.partition("=")
            assert sep and re.fullmatch(r"[A-Z][A-Z0-9_]*", name), f"not NAME=value: {raw!r}"
            set_values[name] = val
    return set_values, commented


def env_example(name: str) -> tuple[dict[str, str], set[str]]:
    return parse_env((ENV_DIR / f"{name}.env.example").read_text(encoding="utf-8"))


def render_for_verify(directory: Path) -> list[Path]:
    """Every unit copied into `directory` with its installed programs replaced by stubs there,
    so `systemd-analyze verify` can check that the commands exist and are executable."""
    stubs = directory / "bin"
    stubs.mkdir()
    rendered: list[Path] = []
    for name in UNITS:
        text = (SYSTEMD_DIR / name).read_text(encoding="utf-8")
        for prefix in INSTALLED_PATHS:
            for program in re.findall(rf"{re.escape(prefix)}([\w.-]+)", text):
                stub = stubs / program
                stub.write_text("#!/bin/sh\nexit 0\n")
                stub.chmod(0o755)
            text = text.replace(prefix, f"{stubs}/")
        target = directory / name
        target.write_text(text, encoding="utf-8")
        rendered.append(target)
    return rendered
