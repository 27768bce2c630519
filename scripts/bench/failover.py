"""`make bench-failover`: latency through a Redis master failover and the ledger's delay after a
router SIGKILL, measured on `make run-cluster`'s topology (scripts/run_cluster.py, started here).

1. Paced load (8 clients, non-streaming chat to the demo model, the master key, so no credit or
   limit keys are involved and every answer must be 200) for `--seconds`: p50/p99 end to end and
   inside the routers (their per-request log lines).
2. A Redis master SIGKILLed; once the cluster has promoted its replica (CLUSTER NODES), the same
   load again: the promoted master has no replica for the rest of the run (the killed node is not
   restarted), so every append to it is unreplicated (issue 17: p99 within 2x of before).
3. A router SIGKILLed under the same load: how long until every answered generation is in
   PostgreSQL (target: 5 s), and how many answers failed (target: 0).

Prints one JSON object per phase; exits 1 when a target is missed."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = 8
BODY = {"model": "demo", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else 0.0


class Load:
    """CLIENTS closed-loop clients; answers' ids and latencies, and their status codes."""

    def __init__(self, base: str, key: str) -> None:
        self._base, self._auth = base, {"Authorization": f"Bearer {key}"}
        self.latencies: list[float] = []
        self.codes: dict[int, int] = {}
        self.ids: list[str] = []

    async def run(self, seconds: float, during: Any = None) -> None:
        end = time.monotonic() + seconds
        async with httpx.AsyncClient(timeout=30) as http:
            async def client() -> None:
                while time.monotonic() < end:
                    started = time.perf_counter()
                    try:
                        r = await http.post(f"{self._base}/v1/chat/completions",
                                            headers=self._auth, json=BODY)
                        code = r.status_code
                    except httpx.HTTPError:
                        code = 0
                    self.latencies.append(time.perf_counter() - started)
                    self.codes[code] = self.codes.get(code, 0) + 1
                    if code == 200:
                        self.ids.append(r.json()["id"])
            work = [client() for _ in range(CLIENTS)]
            if during is not None:
                work.append(during())
            await asyncio.gather(*work)

    def summary(self) -> dict[str, Any]:
        return {"requests": len(self.latencies), "codes": self.codes,
                "p50_ms": round(percentile(self.latencies, 0.5) * 1000, 1),
                "p99_ms": round(percentile(self.latencies, 0.99) * 1000, 1)}


def router_durations(logs: Path, since: str, until: str) -> list[float]:
    """Seconds of each Chat in the routers' log lines timestamped in [since, until)."""
    out = []
    for log in sorted(logs.glob("router*.log")):
        for line in log.read_text(errors="replace").splitlines():
            if '"rpc":"Chat"' in line:
                row = json.loads(line)
                if since <= row["ts"] < until:
                    out.append(row["duration_ms"] / 1000)
    return out


def utc_now() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


async def phase(name: str, state: dict[str, Any], seconds: float,
                key: str) -> dict[str, Any]:
    since = utc_now()
    load = Load(state["base_url"], key)
    await load.run(seconds)
    inside = router_durations(Path(state["logs"]), since, utc_now())
    result = {"phase": name, **load.summary(),
              "router_p50_ms": round(percentile(inside, 0.5) * 1000, 1),
              "router_p99_ms": round(percentile(inside, 0.99) * 1000, 1)}
    print(json.dumps(result), flush=True)
    return result


def wait_promoted(state: dict[str, Any], killed: int, bound: float = 60.0) -> float:
    """Seconds until a surviving node sees the killed master failed and the cluster whole."""
    started = time.monotonic()
    survivor = next(p for p in state["redis"]["ports"] if p != killed)
    node = redis.Redis(port=survivor)
    while time.monotonic() - started < bound:
        nodes: dict[str, dict[str, Any]] = node.execute_command(  # type: ignore[no-untyped-call]
            "CLUSTER NODES")
        dead = [info for addr, info in nodes.items() if addr.split("@")[0].endswith(f":{killed}")]
        info = node.execute_command("CLUSTER", "INFO")  # type: ignore[no-untyped-call]
        whole = b"cluster_state:ok" in info
        if dead and "fail" in dead[0]["flags"] and not dead[0]["slots"] and whole:
            return time.monotonic() - started
        time.sleep(0.05)
    raise SystemExit(f"no failover of Redis port {killed} within {bound}s")


async def in_postgres(url: str, ids: list[str], bound: float) -> tuple[int, float]:
    """(how many of `ids` PostgreSQL has, seconds until it had them all or `bound` passed)."""
    started = time.monotonic()
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        while True:
            cursor = await conn.execute("SELECT count(*) FROM generations WHERE id = ANY(%s)",
                                        (ids,))
            row = await cursor.fetchone()
            found = int(row[0]) if row else 0
            if found == len(ids) or time.monotonic() - started > bound:
                return found, time.monotonic() - started
            await asyncio.sleep(0.05)


async def router_kill(state: dict[str, Any], seconds: float, key: str) -> dict[str, Any]:
    """SIGKILL a router mid-load (the load goes on): the time from the kill until every answer
    given before it is in PostgreSQL; after the load, whether every answer is."""
    load = Load(state["base_url"], key)
    before: tuple[int, float, int] = (0, 0.0, 0)

    async def kill() -> None:
        nonlocal before
        await asyncio.sleep(seconds / 2)
        os.kill(state["routers"][0]["pid"], signal.SIGKILL)
        answered = list(load.ids)
        found, elapsed = await in_postgres(state["database_url"], answered, 60)
        before = (found, elapsed, len(answered))
    await load.run(seconds, kill)
    found, _ = await in_postgres(state["database_url"], load.ids, 60)
    result = {"phase": "router SIGKILL", **load.summary(), "answered_before_kill": before[2],
              "in_postgres_s_after_kill": round(before[1], 2),
              "all_answers": len(load.ids), "all_in_postgres": found,
              "targets_met": before[0] == before[2] and before[1] <= 5 and found == len(load.ids)}
    print(json.dumps(result), flush=True)
    return result


async def drill(state: dict[str, Any], seconds: float) -> int:
    key = state["master_key"]
    before = await phase("before", state, seconds, key)
    port = int(next(iter(state["redis"]["masters"])))
    os.kill(state["redis"]["masters"][str(port)], signal.SIGKILL)
    promoted = await asyncio.to_thread(wait_promoted, state, port)
    print(json.dumps({"phase": "redis master SIGKILL", "port": port,
                      "promoted_after_s": round(promoted, 2)}), flush=True)
    await phase("settling", state, 3, key)  # the clients learn the new topology
    after = await phase("replica-less master", state, seconds, key)
    crash = await router_kill(state, seconds, key)
    misses = []
    if after["p99_ms"] > 2 * before["p99_ms"]:
        misses.append("end-to-end p99 after the failover is over 2x before")
    if not crash["targets_met"]:
        misses.append("answered records not all in PostgreSQL within 5 s of the router SIGKILL")
    if set(crash["codes"]) != {200} or set(after["codes"]) != {200}:
        misses.append("some answers failed")
    print(json.dumps({"targets_missed": misses}), flush=True)
    return 1 if misses else 0


def main() -> int:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--seconds", type=float, default=15.0, help="per load phase")
    opts = args.parse_args()
    home = Path(tempfile.mkdtemp(prefix="xrouter-failover-"))
    env = {**os.environ, "XROUTER_CLUSTER_DIR": str(home),
           "XROUTER_GATEWAY_PORT": os.environ.get("XROUTER_GATEWAY_PORT", "18990")}
    with (home / "run-cluster.out").open("wb") as out:
        proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "run_cluster.py")],
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        state_file = home / "cluster.json"
        deadline = time.monotonic() + 300
        while not state_file.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"run-cluster did not start; see {home}/run-cluster.out")
            time.sleep(0.2)
        return asyncio.run(drill(json.loads(state_file.read_text()), opts.seconds))
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)


if __name__ == "__main__":
    sys.exit(main())
