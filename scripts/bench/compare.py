"""`BENCH_MODE=compare make bench`: what the cluster mode costs over the embedded mode (issue 3's
target), measured so that the machine's drift cancels out. Both stacks run at once (one gateway
and one router each, same catalog, same nginx upstream): embedded (SQLite, in-process limits) and
cluster (the tests' PostgreSQL pair and Redis Cluster). Rounds alternate between them, and the
report gives each stack's median CPU per request over the rounds, and the median of the per-round
differences of router CPU. The gateway does the same work in both stacks: its figures show how
much the machine itself moved. Writes bench-results/latest-compare.md."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import checks
import run as bench

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
# Issue 3's target is with limits on: a key with every limit set (never reached), unless 0.
LIMITED = os.environ.get("BENCH_LIMITS", "1") == "1"
SECONDS = int(os.environ.get("BENCH_SECONDS", "6"))
MESSAGES = [{"role": "user", "content": "Hello! Please say hello back."}]


class Stack:
    def __init__(self, name: str, tmp: Path, nginx_port: int, cluster: dict[str, str]) -> None:
        self.name = name
        self.tmp = tmp / name
        self.tmp.mkdir()
        self.port = bench.free_port()
        self.router, self.gateway = bench.start_services(self.tmp, nginx_port, self.port, cluster)
        self.url = f"http://127.0.0.1:{self.port}"
        self.answered = 0  # requests wrk counted as answered
        self.cut_off = 0  # at most this many more: in flight when wrk stopped, answered after

    def ready(self) -> None:
        bench.wait_ready(f"{self.url}/readyz")
        self.key = bench.bench_key(self.url, limited=LIMITED)

    def script(self, kind: str) -> Path:
        model = "bench/sse" if kind == "streaming" else "bench/plain"
        return bench.lua_script(self.tmp, kind, {"model": model, "messages": MESSAGES,
                                                 "stream": kind == "streaming"}, self.key)

    def load(self, kind: str, conns: int, seconds: int) -> tuple[float, float, float]:
        """(requests/s, router CPU ms per request, gateway CPU ms per request)."""
        r0, g0 = bench.cpu_seconds(self.router.pid), bench.cpu_seconds(self.gateway.pid)
        result = bench.wrk(f"{self.url}/v1/chat/completions", self.script(kind), conns, seconds)
        r1, g1 = bench.cpu_seconds(self.router.pid), bench.cpu_seconds(self.gateway.pid)
        n = result["requests"]
        self.answered += int(n)
        self.cut_off += conns
        return result["rps"], (r1 - r0) / n * 1000, (g1 - g0) / n * 1000

    def recorded(self) -> str:
        return checks.charged_once(self.name, self.url, self.key, self.answered, self.cut_off,
                                   get=bench.get, master_key=bench.MASTER_KEY)

    def stop(self) -> None:
        bench.terminate([self.router, self.gateway])


def main() -> int:
    if shutil.which("wrk") is None:
        print("bench: wrk is missing (scripts/bench.sh installs it)", file=sys.stderr)
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="xrouter-compare-"))
    with contextlib.ExitStack() as servers:
        cluster = servers.enter_context(bench.cluster_servers())
        nginx_port = bench.free_port()
        nginx = bench.start_nginx(tmp, nginx_port)
        stacks = [Stack("embedded", tmp, nginx_port, {}), Stack("cluster", tmp, nginx_port, cluster)]
        try:
            for stack in stacks:
                stack.ready()
            report = compare(stacks)
            report += "\n" + "\n".join(f"- {stack.recorded()}" for stack in stacks) + "\n"
        finally:
            for stack in stacks:
                stack.stop()
            nginx.send_signal(signal.SIGTERM)
            nginx.wait(10)
            shutil.rmtree(tmp, ignore_errors=True)
    print(report)
    out = bench.ROOT / "bench-results"
    out.mkdir(exist_ok=True)
    (out / "latest-compare.md").write_text(report)
    return 0


def compare(stacks: list[Stack]) -> str:
    limits = "every limit on" if LIMITED else "no request limits"
    lines = [f"# cluster against embedded ({time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} "
             f"cores, {ROUNDS} alternating rounds of {SECONDS}s per row, a key with {limits})",
             "",
             "| load | conns | embedded req/s | cluster req/s | embedded router ms/req "
             "| cluster router ms/req | added router ms/req (median of rounds, min-max) "
             "| gateway ms/req embedded / cluster |", "|---|---|---|---|---|---|---|---|"]
    for kind in ("non-streaming", "streaming"):
        for stack in stacks:
            stack.load(kind, 16, 2)  # warm-up
        for conns in (16, 64):
            rounds: dict[str, list[tuple[float, float, float]]] = {"embedded": [], "cluster": []}
            for i in range(ROUNDS):
                order = stacks if i % 2 == 0 else stacks[::-1]
                for stack in order:
                    rounds[stack.name].append(stack.load(kind, conns, SECONDS))
            added = [c[1] - e[1] for e, c in zip(rounds["embedded"], rounds["cluster"], strict=True)]
            median = _medians(rounds)
            lines.append(
                f"| {kind} | {conns} | {median('embedded', 0):.0f} | {median('cluster', 0):.0f} "
                f"| {median('embedded', 1):.3f} | {median('cluster', 1):.3f} "
                f"| {statistics.median(added):+.3f} ({min(added):+.3f} to {max(added):+.3f}) "
                f"| {median('embedded', 2):.3f} / {median('cluster', 2):.3f} |")
    return "\n".join(lines) + "\n"


def _medians(rounds: dict[str, list[tuple[float, float, float]]]) -> Callable[[str, int], float]:
    def median(name: str, field: int) -> float:
        return statistics.median(r[field] for r in rounds[name])
    return median


if __name__ == "__main__":
    sys.exit(main())
