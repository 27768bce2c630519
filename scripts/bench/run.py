"""`make bench`: gateway + router (one process each) against nginx serving fixed OpenAI bodies,
loaded by wrk; reports requests/s, p50/p99, overhead over calling nginx directly, CPU per request
of both processes, time to first token, and idle memory. Writes bench-results/latest.md."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import checks
import floor_runs
import uvloop
from checks import Row

_R = TypeVar("_R")

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # tests.infra: the tests' own ports and servers
from tests.infra import ports  # noqa: E402

free_port = ports.free_port  # ports outside the kernel's ephemeral range (tests/infra/ports.py)

PY = ROOT / ".venv" / "bin" / "python"
MASTER_KEY = "xr-bench-master-key"
DURATION = int(os.environ.get("BENCH_SECONDS", "8"))
# The figures the targets are read from (XRouter at 16 connections, each run followed by one of
# the pass-through floor) come from this many pairs: on this VM one 8 s run can be 10-25% off
# another (floor_runs.py).
REPEAT = int(os.environ.get("BENCH_REPEAT", "3"))
# embedded (SQLite, in-process limits), cluster (PostgreSQL pair + Redis Cluster, started here),
# or both, one after the other (the default: issue 16's targets hold in both modes).
MODE = os.environ.get("BENCH_MODE", "both")
CHUNKS = 22


def upstream_bodies() -> tuple[str, str]:
    plain = {"id": "chatcmpl-bench", "object": "chat.completion", "created": 1, "model": "bench",
             "choices": [{"index": 0, "message": {"role": "assistant",
                                                  "content": "Hello! How can I help you today?"},
                          "finish_reason": "stop"}],
             "usage": {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21}}
    head = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1, "model": "bench"}
    events = [{**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                    "finish_reason": None}]}]
    events += [{**head, "choices": [{"index": 0, "delta": {"content": f" word{i}"},
                                     "finish_reason": None}]} for i in range(CHUNKS - 2)]
    events += [{**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
               {**head, "choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 20,
                                                 "total_tokens": 32}}]
    sse = "".join(f"data: {json.dumps(e, separators=(',', ':'))}\n\n" for e in events)
    sse += "data: [DONE]\n\n"
    return json.dumps(plain, separators=(",", ":")), sse


def start_nginx(tmp: Path, port: int) -> subprocess.Popen[bytes]:
    plain, sse = upstream_bodies()
    conf = (Path(__file__).with_name("nginx.conf.template").read_text()
            .replace("@DIR@", str(tmp)).replace("@PORT@", str(port))
            .replace("@PLAIN@", plain.replace("'", "\\'"))
            .replace("@SSE@", sse.replace("\n", "\\n").replace("'", "\\'")))
    (tmp / "nginx.conf").write_text(conf)
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    return subprocess.Popen([nginx, "-c", str(tmp / "nginx.conf"), "-p", str(tmp)],
                            stderr=subprocess.DEVNULL)


def write_catalog(tmp: Path, port: int) -> Path:
    path = tmp / "catalog.toml"
    path.write_text(f"""
[providers.plain]
type = "openai"
base_url = "http://127.0.0.1:{port}/plain/v1"
[providers.sse]
type = "openai"
base_url = "http://127.0.0.1:{port}/sse/v1"
[[models]]
id = "bench/plain"
  [[models.deployments]]
  provider = "plain"
  upstream_model = "bench"
  price = {{ prompt = "150", completion = "300" }}
[[models]]
id = "bench/sse"
  [[models.deployments]]
  provider = "sse"
  upstream_model = "bench"
  price = {{ prompt = "150", completion = "300" }}
""")
    return path


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait_ready(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(url)


# With BENCH_LIMITS=1 (compare.py's default): a key whose every limit is on but never reached, so
# that each request is also counted against requests per minute and per day, tokens per minute,
# and a concurrency slot.
LIMITS = {"requests_per_minute": 10**8, "requests_per_day": 10**9, "tokens_per_minute": 10**9,
          "concurrent": 10**4}


def bench_key(gateway: str, *, limited: bool = False) -> str:
    """A real key on an account with plenty of credits, so the bench measures the full path: key
    lookup, credit reservation and settlement, and the ledger record; tier max (no request
    limits), or, `limited`, LIMITS on top."""
    def post(path: str, body: dict[str, object]) -> dict[str, Any]:
        request = urllib.request.Request(gateway + path, data=json.dumps(body).encode(),
                                         method="POST", headers={
                                             "Authorization": f"Bearer {MASTER_KEY}",
                                             "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as resp:
            answer: dict[str, Any] = json.loads(resp.read())
            return answer

    post("/v1/credits", {"account_id": "bench", "amount": "1000000"})
    body: dict[str, object] = {"account_id": "bench", "tier": "max", "name": "bench"}
    if limited:
        body.update(LIMITS)
    created = post("/v1/keys", body)
    return str(created["key"])


def get(url: str, key: str) -> dict[str, Any]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        answer: dict[str, Any] = json.loads(resp.read())
        return answer


def lua_script(tmp: Path, name: str, body: dict[str, object], key: str | None) -> Path:
    path = tmp / f"{name}.lua"
    lines = ['wrk.method = "POST"', f"wrk.body = {json.dumps(json.dumps(body))}",
             'wrk.headers["Content-Type"] = "application/json"']
    if key:
        lines.append(f'wrk.headers["Authorization"] = "Bearer {key}"')
    path.write_text("\n".join(lines) + "\n")
    return path


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)$", text)
    if not m:
        raise ValueError(text)
    return float(m.group(1)) * _UNITS[m.group(2)]


def wrk(url: str, script: Path, conns: int, seconds: int) -> dict[str, float]:
    out = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", "-s",
                          str(script), url], capture_output=True, text=True, check=True).stdout
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
              "requests": float(re.search(r"(\d+) requests in", out).group(1))}  # type: ignore[union-attr]
    for pct in ("50", "99"):
        result[f"p{pct}"] = _ms(re.search(rf"\s{pct}%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"wrk saw {errors.group(1)} errors against {url}")
    return result


class _KeepAliveClient:
    """A minimal HTTP/1.1 client on one kept-alive connection that notes when the first SSE
    `data: {` arrives and then reads the response to its end (Content-Length or chunked)."""

    def __init__(self, port: int, path: str, body: bytes, key: str | None) -> None:
        self._port = port
        head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n")
        if key:
            head += f"Authorization: Bearer {key}\r\n"
        self._request = head.encode() + b"\r\n" + body
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def ttft_ms(self) -> float:
        if self._reader is None:
            self._reader, self._writer = await asyncio.open_connection("127.0.0.1", self._port)
        reader, writer = self._reader, self._writer
        assert writer is not None
        started = time.perf_counter()
        writer.write(self._request)
        buf = b""
        first = 0.0
        while b"\r\n\r\n" not in buf:
            buf += await reader.read(65536)
        head, _, rest = buf.partition(b"\r\n\r\n")
        chunked = b"transfer-encoding: chunked" in head.lower()
        length = re.search(rb"(?i)content-length: (\d+)", head)
        body = rest
        while True:
            if not first and b"data: {" in body:
                first = time.perf_counter() - started
            if chunked and body.endswith(b"0\r\n\r\n"):
                break
            if length and len(body) >= int(length.group(1)):
                break
            chunk = await reader.read(65536)
            if not chunk:
                raise RuntimeError("connection closed mid-response")
            body += chunk
        if not first:
            raise RuntimeError("no SSE data in the response")
        return first * 1000


TTFT_WARM_UP, TTFT_SAMPLES = 50, 500
TTFT_REQUESTS = TTFT_WARM_UP + TTFT_SAMPLES


def ttft_p50(port: int, path: str, body: bytes, key: str | None) -> float:
    async def run() -> list[float]:
        client = _KeepAliveClient(port, path, body, key)
        for _ in range(TTFT_WARM_UP):
            await client.ttft_ms()
        return [await client.ttft_ms() for _ in range(TTFT_SAMPLES)]
    return statistics.median(uvloop.run(run()))


def start_services(tmp: Path, nginx_port: int, gw_port: int,
                   cluster: dict[str, str]) -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]]:
    """One router and one gateway process, default settings (logs included): embedded mode, or
    cluster mode when `cluster` holds the database and Redis settings."""
    router_port = free_port()
    env = {**os.environ, **cluster, "XROUTER_MASTER_KEY": MASTER_KEY, "XROUTER_DATA_DIR": str(tmp / "data"),
           "XROUTER_CATALOG": str(write_catalog(tmp, nginx_port)),
           "XROUTER_ROUTER_LISTEN": f"127.0.0.1:{router_port}", "XROUTER_ROUTER_METRICS_PORT": "0",
           "XROUTER_GATEWAY_PORT": str(gw_port), "XROUTER_ROUTER_TARGET": f"127.0.0.1:{router_port}"}
    router = subprocess.Popen([str(PY), "-m", "xrouter_router"], env=env, stderr=subprocess.DEVNULL)
    gateway = subprocess.Popen([str(PY), "-m", "xrouter_gateway"], env=env,
                               stderr=subprocess.DEVNULL)
    return router, gateway


def main() -> int:
    if shutil.which("wrk") is None:
        print("bench: wrk is missing (scripts/bench.sh installs it)", file=sys.stderr)
        return 1
    for mode in ("embedded", "cluster") if MODE == "both" else (MODE,):
        with contextlib.ExitStack() as servers:
            cluster = servers.enter_context(cluster_servers()) if mode == "cluster" else {}
            if run(cluster):
                return 1
    return 0


@contextlib.contextmanager
def cluster_servers() -> Iterator[dict[str, str]]:
    """BENCH_MODE=cluster: the tests' Redis Cluster (3+3) and PostgreSQL pair (fsync on,
    synchronous standby), migrated; yields the router's settings for them."""
    from tests.infra.postgres_ha import DurablePostgresHA
    from tests.infra.redis_cluster import RedisCluster
    from xrouter_router.storage.sql.migrate import migrate

    redis = RedisCluster().start()
    try:
        postgres = DurablePostgresHA().start()
        try:
            asyncio.run(migrate(postgres.multi_host(), wait=10))
            yield {"XROUTER_DATABASE_URL": postgres.multi_host(), "XROUTER_REDIS_URL": redis.url,
                   "XROUTER_KEY_SECRET": "bench-key-secret"}
        finally:
            postgres.stop()
    finally:
        redis.stop()


def loaded_rows(tmp: Path, nginx_port: int, messages: list[dict[str, str]], *, key: str,
                via_gateway: Callable[[Path, int, int], dict[str, float]], router: int,
                gateway: int) -> tuple[list[Row], dict[str, float], dict[str, float]]:
    """XRouter under wrk at 16 and 64 connections, each kind against nginx directly too; at 16,
    REPEAT runs each followed by a run of the pass-through floor. The rows, the floors (median)
    and the targets' multiples (median of the pairs)."""
    rows: list[Row] = []
    floors: dict[str, float] = {}
    multiples: dict[str, float] = {}
    passthrough = floor_runs.Passthrough(tmp, nginx_port, messages)
    try:
        for kind, model, path in (("non-streaming", "bench/plain", "/plain/v1/chat/completions"),
                                  ("streaming", "bench/sse", "/sse/v1/chat/completions")):
            stream = kind == "streaming"
            via = lua_script(tmp, f"{kind}-gw", {"model": model, "messages": messages,
                                                 "stream": stream}, key)
            direct = lua_script(tmp, f"{kind}-direct", {"model": "bench", "messages": messages,
                                                        "stream": stream}, None)
            via_gateway(via, 16, 2)  # warm-up
            for conns in (16, 64):
                d = wrk(f"http://127.0.0.1:{nginx_port}{path}", direct, conns, DURATION)

                def once(conns: int = conns, via: Path = via) -> tuple[dict[str, float], float,
                                                                       float, float]:
                    r0, g0 = cpu_seconds(router), cpu_seconds(gateway)
                    g = via_gateway(via, conns, DURATION)
                    r1, g1 = cpu_seconds(router), cpu_seconds(gateway)
                    return (g, (r1 - r0 + g1 - g0) / g["requests"] * 1000,
                            (g1 - g0) / g["requests"] * 1000, (r1 - r0) / g["requests"] * 1000)
                if conns == 16:  # each run paired with a floor run just after it
                    pairs = [(once(), passthrough.cpu_ms(kind)) for _ in range(REPEAT)]
                    floors[kind] = median([f for _, f in pairs], key=float)
                    multiples[kind] = median([x[1] / f for x, f in pairs], key=float)
                    runs = [x for x, _ in pairs]
                else:
                    runs = [once()]
                g, cpu, gw_cpu, router_cpu = median(runs, key=lambda r: r[1])
                rows.append((kind, conns, g["rps"], g["p50"], g["p99"], d["rps"], d["p50"],
                             g["p50"] - d["p50"], cpu, gw_cpu, router_cpu))
    finally:
        passthrough.close()
    return rows, floors, multiples


def run(cluster: dict[str, str]) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="xrouter-bench-"))
    nginx_port, gw_port = free_port(), free_port()
    procs: list[subprocess.Popen[bytes]] = [start_nginx(tmp, nginx_port)]
    router, gateway = start_services(tmp, nginx_port, gw_port, cluster)
    procs += [router, gateway]
    try:
        gw = f"http://127.0.0.1:{gw_port}"
        wait_ready(f"{gw}/readyz")
        key = bench_key(gw, limited=os.environ.get("BENCH_LIMITS") == "1")
        time.sleep(1.0)
        idle = {"router": rss_mb(router.pid), "gateway": rss_mb(gateway.pid)}
        messages = [{"role": "user", "content": "Hello! Please say hello back."}]
        served = [0, 0]  # requests the gateway answered, and at most how many more after wrk stopped

        def via_gateway(script: Path, conns: int, seconds: int) -> dict[str, float]:
            result = wrk(f"{gw}/v1/chat/completions", script, conns, seconds)
            served[0] += int(result["requests"])
            served[1] += conns
            return result
        rows, floors, multiples = loaded_rows(tmp, nginx_port, messages, key=key,
                                              via_gateway=via_gateway, router=router.pid,
                                              gateway=gateway.pid)
        single = {}
        for kind, path in (("non-streaming", "/plain/v1/chat/completions"),
                           ("streaming", "/sse/v1/chat/completions")):
            d = wrk(f"http://127.0.0.1:{nginx_port}{path}",
                    tmp / f"{kind}-direct.lua", 1, max(3, DURATION // 2))
            g = via_gateway(tmp / f"{kind}-gw.lua", 1, max(3, DURATION // 2))
            single[kind] = (d["p50"], g["p50"])
        ttft_direct = ttft_p50(nginx_port, "/sse/v1/chat/completions", json.dumps(
            {"model": "bench", "messages": messages, "stream": True}).encode(), None)
        ttft_gw = ttft_p50(gw_port, "/v1/chat/completions", json.dumps(
            {"model": "bench/sse", "messages": messages, "stream": True}).encode(), key)
        served[0] += TTFT_REQUESTS
        accounting = checks.charged_once("cluster" if cluster else "embedded", gw, key, *served,
                                         get=get, master_key=MASTER_KEY)
        time.sleep(1.0)
        after = {"router": rss_mb(router.pid), "gateway": rss_mb(gateway.pid)}
        fixed = floor_runs.fixed_floors()
        report = render(rows, single, ttft_d=ttft_direct, ttft_g=ttft_gw, idle=idle, after=after,
                        floors={**fixed, "passthrough": floors["non-streaming"],
                                "passthrough_stream": floors["streaming"]},
                        multiples=multiples, mode="cluster" if cluster else "embedded")
        report += f"\nAccounting check: {accounting}.\n"
        print(report)
        out = ROOT / "bench-results"
        out.mkdir(exist_ok=True)
        (out / ("latest-cluster.md" if cluster else "latest.md")).write_text(report)
        return 0
    finally:
        stop(procs, tmp)


def terminate(procs: list[subprocess.Popen[bytes]], grace: float = 10.0) -> None:
    """SIGTERM every process, then SIGKILL what has not exited after `grace` seconds."""
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            p.kill()


def stop(procs: list[subprocess.Popen[bytes]], tmp: Path) -> None:
    """terminate() every process; remove `tmp`."""
    terminate(procs)
    shutil.rmtree(tmp, ignore_errors=True)


def median(runs: list[_R], key: Callable[[_R], float]) -> _R:
    """The run whose `key` is the median (the lower middle of an even count)."""
    return sorted(runs, key=key)[(len(runs) - 1) // 2]


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), 0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"port {port}")


def render(rows: list[Row], single: dict[str, tuple[float, float]], *, ttft_d: float,
           ttft_g: float, idle: dict[str, float], after: dict[str, float],
           floors: dict[str, float], multiples: dict[str, float],
           mode: str = "embedded") -> str:
    lines = [
        f"# make bench, {mode} mode ({time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, "
        f"{DURATION}s per run, one gateway + one router process, nginx upstream; the 16-connection "
        f"rows and the pass-through floors are each the median of {REPEAT} runs, alternating, and "
        f"a target's multiple the median of the {REPEAT} paired multiples)",
        "",
        "| mode | conns | req/s | p50 ms | p99 ms | direct req/s | direct p50 ms | added p50 ms "
        "| CPU ms/req (both) | gateway | router |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append("| {} | {} | {:.0f} | {:.2f} | {:.2f} | {:.0f} | {:.2f} | {:.2f} | {:.3f} | "
                     "{:.3f} | {:.3f} |".format(*r))
    lines += ["", "| at one connection | direct p50 ms | via XRouter p50 ms | added ms |",
              "|---|---|---|---|"]
    for kind, (d, g) in single.items():
        lines.append(f"| {kind} (whole response) | {d:.3f} | {g:.3f} | {g - d:.3f} |")
    lines.append(f"| streaming, time to first token | {ttft_d:.3f} | {ttft_g:.3f} | {ttft_g - ttft_d:.3f} |")
    lines += ["", "| memory (RSS MB) | gateway | router |", "|---|---|---|",
              f"| idle after start | {idle['gateway']:.1f} | {idle['router']:.1f} |",
              f"| idle after the load | {after['gateway']:.1f} | {after['router']:.1f} |", "",
              "| floors, same run (CPU ms per request, 16 concurrent) | ms |", "|---|---|",
              f"| bare grpc.aio unary echo: client | {floors['grpc_client']:.3f} |",
              f"| bare grpc.aio unary echo: server | {floors['grpc_server']:.3f} |",
              f"| bare Starlette + aiohttp pass-through (one process, no gRPC) | "
              f"{floors['passthrough']:.3f} |",
              f"| the same, a {CHUNKS}-chunk stream relayed event by event (per stream) | "
              f"{floors['passthrough_stream']:.3f} |",
              f"| routing per request, 20 deployments with live statistics (plan + record) | "
              f"{floors['routing_20'] / 1000:.3f} |", ""]
    lines += checks.targets(rows, single, ttft_d=ttft_d, ttft_g=ttft_g, idle=idle, floors=floors,
                            multiples=multiples, chunks=CHUNKS)
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
