"""scripts/run_cluster.py names the service that exited while starting, with the end of its log
(CI once saw only "a service exited while starting; see the logs", and the logs were gone)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from tests.infra.ports import free_port

ROOT = Path(__file__).resolve().parents[2]


def run_cluster() -> ModuleType:
    spec = importlib.util.spec_from_file_location("run_cluster", ROOT / "scripts" / "run_cluster.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_service_that_exits_while_starting_is_named_with_its_log(tmp_path: Path) -> None:
    script = run_cluster()
    log = tmp_path / "router0.log"
    log.write_text("an earlier line\n")
    logs: dict[object, Path] = {}
    proc = script._spawn("xrouter_no_such_service", {}, log, logs)
    proc.wait(timeout=30)
    assert logs == {proc: log}
    with pytest.raises(SystemExit) as exited:
        script._wait_ready(f"http://127.0.0.1:{free_port()}/readyz", logs, bound=30)
    message = str(exited.value)
    assert message.startswith(f"run-cluster: a service exited while starting (exit code 1); "
                              f"the end of {log}:\nan earlier line\n")
    assert "No module named xrouter_no_such_service" in message
