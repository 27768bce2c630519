"""`make run-cluster` as a user runs it: the whole production topology comes up on 127.0.0.1,
answers with the printed key in the cluster mode, survives a router SIGKILL, and Ctrl-C stops
every process it started."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.support import free_port

ROOT = Path(__file__).resolve().parents[2]
# Starting six Redis nodes, a PostgreSQL pair with fsync on, migrations and three services on a
# loaded 2-core machine; a bound, not a speed expectation.
START_BOUND = 240.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is a dead process its parent has not reaped yet.
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "State:\tZ" in status.read_text())


def _state(path: Path, proc: subprocess.Popen[bytes], log: Path) -> dict[str, Any]:
    deadline = time.monotonic() + START_BOUND
    while not path.exists():
        assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
        assert time.monotonic() < deadline, "run-cluster did not come up"
        time.sleep(0.2)
    state: dict[str, Any] = json.loads(path.read_text())
    return state


def test_run_cluster_serves_survives_a_router_kill_and_stops_everything(tmp_path: Path) -> None:
    home, log = tmp_path / "cluster", tmp_path / "run-cluster.log"
    env = {**os.environ, "XROUTER_CLUSTER_DIR": str(home),
           "XROUTER_GATEWAY_PORT": str(free_port())}
    env.pop("XROUTER_DATABASE_URL", None)
    env.pop("XROUTER_REDIS_URL", None)
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "run_cluster.py")],
                                env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        state = _state(home / "cluster.json", proc, log)
        banner = log.read_text()
        assert state["demo_key"] in banner and "Chaos drill" in banner
        base, auth = state["base_url"], {"Authorization": f"Bearer {state['demo_key']}"}
        with httpx.Client(timeout=30) as http:
            health = http.get(f"{base}/health").json()
            assert health["mode"] == "cluster"
            assert (health["components"]["db"], health["components"]["cache"]) == ("up", "up")
            body = {"model": "demo", "messages": [{"role": "user", "content": "Hello!"}]}
            first = http.post(f"{base}/v1/chat/completions", headers=auth, json=body)
            assert first.status_code == 200, first.text
            assert len(state["redis"]["ports"]) == 6 and len(state["redis"]["masters"]) == 3

            os.kill(state["routers"][0]["pid"], signal.SIGKILL)  # the drill's first step
            answers = [http.post(f"{base}/v1/chat/completions", headers=auth, json=body)
                       for _ in range(5)]
            assert [a.status_code for a in answers] == [200] * 5
            generation = http.get(f"{base}/v1/generation", headers=auth,
                                  params={"id": answers[-1].json()["id"]})
            assert generation.status_code == 200

        proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert proc.wait(timeout=120) == 0
        assert not (home / "cluster.json").exists()
        assert [pid for pid in state["pids"] if _alive(pid)] == []
    finally:
        if proc.poll() is None:
            proc.kill()  # its services die with it (setpriv --pdeathsig)
            proc.wait()
