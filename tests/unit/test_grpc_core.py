"""Both services choose gRPC core's transport before gRPC loads (xrouter_common.grpc_core)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from xrouter_common.grpc_core import EXPERIMENTS, choose

# Imports a service's __main__ (not running it) and prints GRPC_EXPERIMENTS as it was when the
# first module of the grpc package was imported ("unset" when it was not yet set then).
PROBE = """
import importlib, os, sys
seen = []
class Watch:
    def find_spec(self, name, path=None, target=None):
        if (name == "grpc" or name.startswith("grpc.")) and not seen:
            seen.append(os.environ.get("GRPC_EXPERIMENTS", "unset"))
        return None
sys.meta_path.insert(0, Watch())
importlib.import_module(sys.argv[1])
print(seen[0] if seen else "grpc not imported")
"""


def test_an_operators_own_setting_wins_and_otherwise_the_iomgr_endpoints_are_chosen() -> None:
    environ = {"GRPC_EXPERIMENTS": "-event_engine_dns"}
    assert choose(environ) == "-event_engine_dns"
    assert environ == {"GRPC_EXPERIMENTS": "-event_engine_dns"}
    empty: dict[str, str] = {}
    assert choose(empty) == "-event_engine_client,-event_engine_listener" == EXPERIMENTS
    assert empty == {"GRPC_EXPERIMENTS": EXPERIMENTS}


@pytest.mark.parametrize("module", ["xrouter_router.__main__", "xrouter_gateway.__main__"])
def test_a_service_sets_the_transport_before_grpc_loads(module: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "GRPC_EXPERIMENTS"}
    out = subprocess.run([sys.executable, "-c", PROBE, module], env=env, capture_output=True,
                         text=True, timeout=60, check=True)
    assert out.stdout.strip() == EXPERIMENTS
