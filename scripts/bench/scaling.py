"""`make bench-scaling`: requests per second of one gateway process and one router against
XROUTER_GATEWAY_WORKERS=2 and two router replicas, on this machine (issue 16). Cluster mode (the
tests' PostgreSQL pair and Redis Cluster, as `BENCH_MODE=cluster make bench`): replicas of the
router share their state only there. The same nginx upstream, a real key with accounting on,
wrk at 64 connections (non-streaming, then a 22-chunk stream). CPU per request counts every
process of the set (the gateway's supervisor and workers included). Writes
bench-results/scaling.md."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import run as bench

SECONDS = int(os.environ.get("BENCH_SECONDS", "8"))
CONNS = 64
MESSAGES = [{"role": "user", "content": "Hello! Please say hello back."}]


def tree_cpu(pid: int) -> float:
    """CPU seconds of `pid` and its living descendants."""
    total = bench.cpu_seconds(pid)
    children = Path(f"/proc/{pid}/task/{pid}/children")
    for child in children.read_text().split() if children.exists() else ():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            total += tree_cpu(int(child))
    return total


@contextlib.contextmanager
def deployment(tmp: Path, nginx_port: int, cluster: dict[str, str], *, workers: int,
               routers: int) -> Iterator[tuple[str, list[subprocess.Popen[bytes]]]]:
    ports = [bench.free_port() for _ in range(routers)]
    gw_port = bench.free_port()
    env = {**os.environ, **cluster, "XROUTER_MASTER_KEY": bench.MASTER_KEY,
           "XROUTER_DATA_DIR": str(tmp / "data"),
           "XROUTER_CATALOG": str(bench.write_catalog(tmp, nginx_port)),
           "XROUTER_ROUTER_METRICS_PORT": "0", "XROUTER_GATEWAY_PORT": str(gw_port),
           "XROUTER_GATEWAY_WORKERS": str(workers),
           "XROUTER_ROUTER_TARGET": ",".join(f"127.0.0.1:{p}" for p in ports)}
    procs = [subprocess.Popen([str(bench.PY), "-m", "xrouter_router"], stderr=subprocess.DEVNULL,
                              env={**env, "XROUTER_ROUTER_LISTEN": f"127.0.0.1:{port}"})
             for port in ports]
    procs.append(subprocess.Popen([str(bench.PY), "-m", "xrouter_gateway"], env=env,
                                  stderr=subprocess.DEVNULL))
    try:
        url = f"http://127.0.0.1:{gw_port}"
        bench.wait_ready(f"{url}/readyz")
        yield url, procs
    finally:
        bench.terminate(procs, 15)


def measure(tmp: Path, url: str, procs: list[subprocess.Popen[bytes]],
            name: str) -> dict[str, tuple[float, float]]:
    key = bench.bench_key(url)
    figures = {}
    for kind, model in (("non-streaming", "bench/plain"), ("streaming", "bench/sse")):
        script = bench.lua_script(tmp, f"{name}-{kind}", {
            "model": model, "messages": MESSAGES, "stream": kind == "streaming"}, key)
        bench.wrk(f"{url}/v1/chat/completions", script, CONNS, 2)  # warm-up
        before = sum(tree_cpu(p.pid) for p in procs)
        result = bench.wrk(f"{url}/v1/chat/completions", script, CONNS, SECONDS)
        cpu = (sum(tree_cpu(p.pid) for p in procs) - before) / result["requests"] * 1000
        figures[kind] = (result["rps"], cpu)
    return figures


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="xrouter-scaling-"))
    nginx_port = bench.free_port()
    nginx = bench.start_nginx(tmp, nginx_port)
    rows = []
    try:
        with bench.cluster_servers() as cluster:
            for workers, routers in ((1, 1), (2, 2)):
                name = f"{workers}x{routers}"
                (tmp / name).mkdir()
                with deployment(tmp / name, nginx_port, cluster, workers=workers,
                                routers=routers) as (url, procs):
                    rows.append((workers, routers, measure(tmp / name, url, procs, name)))
    finally:
        bench.stop([nginx], tmp)
    cores = os.cpu_count() or 1
    lines = [f"# make bench-scaling ({time.strftime('%Y-%m-%d %H:%M')}, {cores} cores, cluster "
             f"mode, {CONNS} connections, {SECONDS}s per run)", "",
             "| gateway workers | routers | non-streaming req/s | CPU ms/req | streams/s | "
             "CPU ms/stream |", "|---|---|---|---|---|---|"]
    for workers, routers, fig in rows:
        (plain_rps, plain_cpu), (sse_rps, sse_cpu) = fig["non-streaming"], fig["streaming"]
        lines.append(f"| {workers} | {routers} | {plain_rps:.0f} | {plain_cpu:.3f} | "
                     f"{sse_rps:.0f} | {sse_cpu:.3f} |")
    (_, _, one), (_, _, two) = rows
    gain = {kind: two[kind][0] / one[kind][0] for kind in two}
    best = {kind: min(one[kind][1], two[kind][1]) for kind in one}
    lines += ["", f"Two of each against one of each: {gain['non-streaming']:.2f}x "
                  f"non-streaming, {gain['streaming']:.2f}x streaming, on {cores} cores (with "
                  "one of each both cores are busy already; more processes than cores only add "
                  "switching). To plan a deployment, per core of XRouter's own processes (1000 "
                  "ms / the lower CPU per request above; PostgreSQL, Redis and the upstream not "
                  f"counted): {1000 / best['non-streaming']:.0f} non-streaming requests/s or "
                  f"{1000 / best['streaming']:.0f} streams/s.", ""]
    report = "\n".join(lines)
    print(report)
    out = bench.ROOT / "bench-results"
    out.mkdir(exist_ok=True)
    (out / "scaling.md").write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
