"""Provider credentials from a mounted secret file (`XROUTER_PROVIDER_KEYS_FILE`).

Kubernetes and systemd hand the router one file holding every provider key (the deployment's
`provider-keys` secret) rather than one environment variable each. The file is dotenv-shaped:
`NAME=value` lines, `#` comments and blank lines ignored, optional `export ` prefix and matching
quotes around the value. The names are the catalog's `api_key_env` names; a variable set in the
process environment wins over the file. Values never appear in errors.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from xrouter_common.env import ConfigError

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse(text: str, where: str = "provider keys file") -> dict[str, str]:
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").lstrip()
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or not _NAME.fullmatch(name):
            raise ConfigError(f"{where}: line {number} is not NAME=value")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[name] = value
    return values


def environment(path: Path | None, env: Mapping[str, str] | None = None) -> Mapping[str, str]:
    """The environment the catalog resolves `api_key_env` against: the file, then the process."""
    base = os.environ if env is None else env
    if path is None:
        return base
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"XROUTER_PROVIDER_KEYS_FILE {path}: cannot read: {exc.strerror}") from None
    return {**parse(text, where=f"XROUTER_PROVIDER_KEYS_FILE {path}"), **base}
