"""`make bench-budget`: where the CPU of a non-streaming request goes, stage by stage, in place
(issue 16). The bench's set-up (scripts/bench/run.py: nginx upstream, one gateway and one router
process, a real key with accounting on, embedded mode unless BENCH_MODE=cluster) under wrk at 16
connections, while py-spy samples both processes (Python frames, by thread; 100 Hz) and perf
samples them natively. How a process's CPU divides between its threads is perf's (it counts
CPU; py-spy's idle detection counts a thread waking on a lock as busy, which made the earlier
table overstate the poller and executor threads). The event loop thread's share is then divided
by py-spy: each of its samples goes to the innermost stage one of its frames belongs to (STAGES),
or to "event loop, native" when no frame does (uvloop, gRPC's Cython callbacks). Share times the
process's measured CPU per request is the budget in microseconds. py-spy's Python-only view
attributes native work done inside a Python call (sqlite3, orjson, socket writes) to that call.
Without perf, py-spy's view alone is given (with its overstated threads).
With `perf` (Debian's linux-perf; its software clock works where hardware counters are not
exposed, as on this machine) both processes are also sampled natively over the same window, and
their CPU split by component: the interpreter, the kernel (context switches apart: each thread
hand-off between the event loop, gRPC's poller and the SQLite worker costs one), gRPC's core,
the event loop, SQLite, the C library. Prints Markdown tables; writes bench-results/budget.md."""

from __future__ import annotations

import collections
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import run as bench

SECONDS = int(os.environ.get("BENCH_SECONDS", "12"))
RATE = 100
# (stage, substrings of a frame "function (file:line)"): the first stage, leaf first, that a
# frame of the sample matches.
STAGES: dict[str, list[tuple[str, tuple[str, ...]]]] = {
    "gateway": [
        ("logs (access line)", ("logging/__init__", "xrouter_common/logs.py")),
        ("metrics", ("prometheus_client", "xrouter_gateway/metrics.py")),
        ("tracing hooks", ("opentelemetry", "TracingMiddleware")),
        ("request parse and validation", ("ChatFormat.parse", "parse_request", "to_proto ",
                                          "read_body", "api_key", "call_metadata")),
        ("response encoding", ("completion_json", "usage_json", "ChatFormat.whole")),
        ("gRPC client call", ("grpc/aio", "grpc/_", "router_client.py")),
        ("HTTP server (uvicorn, Starlette, middleware)", ("uvicorn", "starlette",
                                                         "http_protocol.py", "throttle.py",
                                                         "observability.py", "inbound.py")),
    ],
    "router": [
        ("logs (request line)", ("logging/__init__", "xrouter_common/logs.py")),
        ("metrics", ("prometheus_client", "accounting_metrics.py", "telemetry.py")),
        ("tracing hooks", ("opentelemetry", "tracing.py")),
        ("ledger and credits: SQL (SQLite; PostgreSQL in the cluster mode)", ("sqlite", "storage/sql/")),
        ("ledger and credits: Redis", ("storage/redis/", "redis/")),
        ("authentication", ("domain/auth.py", "KeyAuthenticator")),
        ("admission and settlement", ("domain/billing.py", "storage/memory.py",
                                      "domain/accounting.py", "domain/limits.py")),
        ("routing", ("domain/routing.py", "domain/failover.py", "domain/sticky.py",
                     "domain/stats.py")),
        ("upstream call (HTTP client)", ("providers/",)),
        ("proto conversion", ("transport/convert.py",)),
        ("gRPC server", ("grpc/aio", "grpc/_", "transport/servicer.py", "transport/")),
        ("chat service (rest)", ("domain/",)),
    ],
}
# perf's shared objects (and kernel symbols) by component.
# (a substring of the DSO's name, the component): the interpreter is libpython3.11.so when
# Python was built with --enable-shared, the python3.11 executable itself when linked statically.
COMPONENTS = (("libpython", "Python interpreter"), ("python3.", "Python interpreter"),
              ("cygrpc", "gRPC core"),
              ("loop.cpython", "event loop (uvloop)"), ("sqlite", "SQLite"),
              ("libc.so", "C library (malloc, memcpy, locks)"), ("_message", "protobuf"))
NATIVE = "event loop, native (no Python frame)"
EXECUTOR = "executor thread, native (no Python frame)"
POLLER = "gRPC poller thread (Python's)"
GRPC_THREADS = "gRPC core threads (event engine, timer)"
OTHER = "other Python"


def classify(stack: list[str], stages: list[tuple[str, tuple[str, ...]]]) -> str:
    for frame in reversed(stack):  # the leaf first
        for stage, needles in stages:
            if any(n in frame for n in needles):
                return stage
    leaf = stack[-1] if stack else ""
    if leaf.startswith("_worker") or "concurrent/futures" in leaf:
        return EXECUTOR
    if leaf.startswith(("Thread.run", "Thread._bootstrap")) or "threading.py" in leaf:
        return POLLER
    if leaf.startswith("Runner.run") or "asyncio/" in leaf:
        return NATIVE
    return OTHER


def shares(raw: Path, stages: list[tuple[str, tuple[str, ...]]], pid: int,
           threads: dict[int, float] | None = None) -> dict[str, float]:
    """Stage shares of a process's CPU. `raw` is py-spy's output with `--threads` (each stack
    starts with "thread (TID): name"); `threads` is perf's CPU share by thread id. With it, the
    event loop thread (TID == pid) gets its perf share, divided by its py-spy samples, and every
    other thread its own perf share under its name."""
    counts: collections.Counter[str] = collections.Counter()
    names: dict[int, str] = {}
    for line in raw.read_text().splitlines():
        stack_text, _, n = line.rpartition(" ")
        if not stack_text:
            continue
        thread, *stack = stack_text.split(";")
        tid = int(thread.split("(", 1)[1].split(")", 1)[0])
        names[tid] = thread.split(": ", 1)[-1]
        if threads is None or tid == pid:
            counts[classify(stack, stages)] += int(n)
    total = sum(counts.values()) or 1
    if threads is None:
        return {stage: count / total for stage, count in counts.items()}
    loop_share = threads.get(pid, 0.0)
    split = {stage: count / total * loop_share for stage, count in counts.items()}
    for tid, share in threads.items():
        if tid != pid:
            label = _thread_label(names.get(tid, ""))
            split[label] = split.get(label, 0.0) + share
    return split


def _thread_label(name: str) -> str:
    if "_poll_wrapper" in name:
        return POLLER
    if name.startswith("xrouter-sqlite"):
        return "SQLite worker thread"
    if name:
        return f"thread {name}"
    return GRPC_THREADS  # no Python frame ever: gRPC core's event engine and timer threads


def perf_threads(data: Path) -> dict[int, float]:
    """Shares of the samples in `data` by thread id."""
    out = subprocess.run(["perf", "report", "-i", str(data), "--sort", "pid", "--stdio",
                          "--no-children", "-g", "none"], capture_output=True, text=True,
                         check=True).stdout
    split: dict[int, float] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].endswith("%") and ":" in parts[1]:
            split[int(parts[1].split(":", 1)[0])] = float(parts[0][:-1]) / 100
    return split


def perf_components(data: Path) -> dict[str, float]:
    """Shares of the samples in `data` by component; the kernel's context switches apart."""
    def report(sort: str) -> list[tuple[float, str]]:
        out = subprocess.run(["perf", "report", "-i", str(data), "--sort", sort, "--stdio",
                              "--no-children", "-g", "none"], capture_output=True, text=True,
                             check=True).stdout
        rows = []
        for line in out.splitlines():
            parts = line.split(None, 1)
            if len(parts) == 2 and parts[0].endswith("%"):
                rows.append((float(parts[0][:-1]) / 100, parts[1].strip()))
        return rows
    split: dict[str, float] = collections.defaultdict(float)
    for share, dso in report("dso"):
        name = next((label for needle, label in COMPONENTS if needle in dso),
                    "kernel" if "kernel" in dso else "other native")
        split[name] += share
    switches = sum(share for share, sym in report("sym") if "finish_task_switch" in sym)
    split["kernel"] -= switches
    split["kernel: context switches"] += switches
    return dict(split)


def perf_works() -> bool:
    if shutil.which("perf") is None:
        return False
    probe = subprocess.run(["perf", "record", "-e", "cpu-clock", "-o", "/dev/null", "--", "true"],
                           check=False, capture_output=True)
    return probe.returncode == 0


def main() -> int:
    spy = shutil.which("py-spy") or str(bench.PY.parent / "py-spy")
    if not Path(spy).exists():
        raise SystemExit("py-spy is missing: make install")
    with contextlib.ExitStack() as servers:
        cluster = servers.enter_context(bench.cluster_servers()) if bench.MODE == "cluster" else {}
        return budget(spy, cluster)


def budget(spy: str, cluster: dict[str, str]) -> int:
    mode = "cluster" if cluster else "embedded"
    tmp = Path(tempfile.mkdtemp(prefix="xrouter-budget-"))
    nginx_port, gw_port = bench.free_port(), bench.free_port()
    procs = [bench.start_nginx(tmp, nginx_port)]
    router, gateway = bench.start_services(tmp, nginx_port, gw_port, cluster)
    procs += [router, gateway]
    try:
        gw = f"http://127.0.0.1:{gw_port}"
        bench.wait_ready(f"{gw}/readyz")
        key = bench.bench_key(gw)
        body = {"model": "bench/plain", "stream": False,
                "messages": [{"role": "user", "content": "Hello! Please say hello back."}]}
        script = bench.lua_script(tmp, "budget", body, key)
        url = f"{gw}/v1/chat/completions"
        bench.wrk(url, script, 16, 2)  # warm-up
        pids = {"gateway": gateway.pid, "router": router.pid}
        spies = {name: subprocess.Popen(
            [spy, "record", "-r", str(RATE), "-d", str(SECONDS + 1), "--threads", "-f", "raw", "-o",
             str(tmp / f"{name}.txt"), "-p", str(pid)], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL) for name, pid in pids.items()}
        perfs = {name: subprocess.Popen(
            ["perf", "record", "-e", "cpu-clock", "-F", "499", "-o", str(tmp / f"{name}.perf"),
             "-p", str(pid), "--", "sleep", str(SECONDS + 1)], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL) for name, pid in pids.items()} if perf_works() else {}
        time.sleep(0.5)  # py-spy and perf attach
        before = {name: bench.cpu_seconds(pid) for name, pid in pids.items()}
        result = bench.wrk(url, script, 16, SECONDS)
        per_request = {name: (bench.cpu_seconds(pid) - before[name]) / result["requests"] * 1e6
                       for name, pid in pids.items()}
        for proc in [*spies.values(), *perfs.values()]:
            proc.wait()
        report = render(per_request, {name: shares(
            tmp / f"{name}.txt", STAGES[name], pid,
            perf_threads(tmp / f"{name}.perf") if perfs else None)
            for name, pid in pids.items()}, result, mode)
        if perfs:
            report += "\n" + render_native(per_request, {
                name: perf_components(tmp / f"{name}.perf") for name in perfs})
        print(report)
        out = bench.ROOT / "bench-results"
        out.mkdir(exist_ok=True)
        (out / ("budget-cluster.md" if cluster else "budget.md")).write_text(report)
        for name in pids:  # py-spy's raw stacks, for a closer look at a stage
            shutil.copy(tmp / f"{name}.txt", out / f"budget-{mode}-{name}.spy.txt")
        return 0
    finally:
        bench.stop(procs, tmp)


def render(per_request: dict[str, float], split: dict[str, dict[str, float]],
           result: dict[str, float], mode: str) -> str:
    lines = [f"# CPU budget of a non-streaming request, in place ({time.strftime('%Y-%m-%d %H:%M')},"
             f" {mode} mode, 16 connections, {result['rps']:.0f} req/s under py-spy)", "",
             "| process | stage | share | µs per request |", "|---|---|---|---|"]
    for name in ("gateway", "router"):
        for stage, share in sorted(split[name].items(), key=lambda kv: -kv[1]):
            lines.append(f"| {name} | {stage} | {share * 100:.1f}% | "
                         f"{share * per_request[name]:.0f} |")
        lines.append(f"| {name} | **total** | 100% | **{per_request[name]:.0f}** |")
    return "\n".join(lines) + "\n"


def render_native(per_request: dict[str, float], split: dict[str, dict[str, float]]) -> str:
    lines = ["| process | component (perf, cpu-clock) | share | µs per request |",
             "|---|---|---|---|"]
    for name in ("gateway", "router"):
        for part, share in sorted(split[name].items(), key=lambda kv: -kv[1]):
            lines.append(f"| {name} | {part} | {share * 100:.1f}% | "
                         f"{share * per_request[name]:.0f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
