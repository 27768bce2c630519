"""A catalog file with an unknown key stops the router at start: a non-zero exit and a message
naming the file, the table and the key (the router process itself, not the loader alone)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import catalog_toml


def _start(catalog: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XROUTER_MASTER_KEY": "m", "XROUTER_CATALOG": str(catalog),
           "XROUTER_DATA_DIR": str(tmp_path / "data"), "XROUTER_ROUTER_LISTEN": "127.0.0.1:0",
           "XROUTER_ROUTER_METRICS_PORT": "0", "FAKE_UPSTREAM_KEY": "k", "FAKE_WRONG_KEY": "k"}
    # A router that starts would serve until stopped: the timeout (far above the ~1 s a refusal
    # takes) only keeps a regression from hanging the suite.
    return subprocess.run([sys.executable, "-m", "xrouter_router"], env=env, text=True,
                          capture_output=True, timeout=60, check=False)


@pytest.mark.parametrize(("old", "new", "message"), [
    ('api_key_env = "FAKE_WRONG_KEY"', 'api_key_env = "FAKE_WRONG_KEY"\nmax_retries = 3',
     "providers.fakebad: unknown key 'max_retries' (known: api_key_env, base_url, "
     "collects_data, currency, headers, jurisdiction, reasoning_format, "
     "send_nonstandard_params, type)"),
    ('api_key_env = "FAKE_WRONG_KEY"', 'api_key_env = "FAKE_WRONG_KEY"\ncurrency = "dollars"',
     "providers.fakebad.currency must be an ISO 4217 currency code such as \"USD\", got "
     "'dollars'"),
    ('id = "test/echo"\n', 'id = "test/echo"\nlimits = { tokens_per_hour = 100 }\n',
     "models[1].limits: unknown key 'tokens_per_hour' (known: tokens_per_day, "
     "tokens_per_minute, tokens_per_request)"),
], ids=["provider", "currency", "model-limits"])
def test_an_unknown_key_stops_the_router_naming_file_table_and_key(
        tmp_path: Path, old: str, new: str, message: str) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text(catalog_toml("http://127.0.0.1:9/v1").replace(old, new), encoding="utf-8")
    done = _start(path, tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        f"xrouter-router: configuration error: {path}: {message}")
