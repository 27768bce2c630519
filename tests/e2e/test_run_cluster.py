"""`make run-cluster` as a user runs it: the whole production topology comes up on 127.0.0.1,
answers with the printed key in the cluster mode, survives a router SIGKILL, and Ctrl-C stops
every process it started."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx

from tests.e2e.run_cluster_support import run_cluster
from tests.infra.redis_cluster import process_alive


def test_run_cluster_serves_survives_a_router_kill_and_stops_everything(tmp_path: Path) -> None:
    with run_cluster(tmp_path) as started:
        proc, state, home = started.proc, started.state, started.home
        banner = started.log.read_text()
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
        assert [pid for pid in state["pids"] if process_alive(pid)] == []
