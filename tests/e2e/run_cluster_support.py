"""`make run-cluster` started as a user starts it (scripts/run_cluster.py), for the e2e tests that
drive the production topology on 127.0.0.1: its state (cluster.json) once it is up, and a stop
that leaves nothing running."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support import free_port

ROOT = Path(__file__).resolve().parents[2]
# Starting six Redis nodes, a PostgreSQL pair with fsync on, migrations and three services on a
# loaded 2-core machine; a bound, not a speed expectation.
START_BOUND = 240.0


@dataclass
class Started:
    proc: subprocess.Popen[bytes]
    state: dict[str, Any]
    home: Path
    log: Path


@contextlib.contextmanager
def run_cluster(tmp_path: Path, env: dict[str, str] | None = None) -> Iterator[Started]:
    """Starts run_cluster.py with `env` added to this process's environment (without any
    XROUTER_DATABASE_URL or XROUTER_REDIS_URL of the test run) and waits for its cluster.json;
    on exit kills it if it still runs (its services die with it: setpriv --pdeathsig)."""
    home, log = tmp_path / "cluster", tmp_path / "run-cluster.log"
    full = {**os.environ, "XROUTER_CLUSTER_DIR": str(home),
            "XROUTER_GATEWAY_PORT": str(free_port()), **(env or {})}
    full.pop("XROUTER_DATABASE_URL", None)
    full.pop("XROUTER_REDIS_URL", None)
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "run_cluster.py")],
                                env=full, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        path = home / "cluster.json"
        deadline = time.monotonic() + START_BOUND
        while not path.exists():
            assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "run-cluster did not come up"
            time.sleep(0.2)
        yield Started(proc, json.loads(path.read_text()), home, log)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
