"""The floors of `make bench`, measured in the same run as XRouter (floor.py is each floor's
server): the bare gRPC echo and the routing microbenchmark once, after XRouter's rows; the
Starlette + aiohttp pass-through beside the running gateway and router, its runs alternating
with XRouter's at 16 connections. A target is then the median of the paired multiples (XRouter
over the floor run just after it): on this VM a slow phase can last minutes and move every
figure by 10-25%, and a pair sees the same phase where two medians taken minutes apart need
not (docs/performance.md, issue 16)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


class Passthrough:
    """The pass-through floor's process, started once; cpu_ms() measures one run."""

    def __init__(self, tmp: Path, nginx_port: int, messages: list[dict[str, str]]) -> None:
        import run as bench  # the bench's helpers (run.py imports this module)

        self._bench = bench
        self._port = port = bench.free_port()
        self._proc = subprocess.Popen([str(bench.PY), str(HERE / "floor.py"), "passthrough",
                                       str(port),
                                       f"http://127.0.0.1:{nginx_port}/plain/v1/chat/completions",
                                       f"http://127.0.0.1:{nginx_port}/sse/v1/chat/completions"])
        self._scripts: dict[str, tuple[str, Path]] = {}
        try:
            bench.wait_for_port(port)
            for kind, path, stream in (("non-streaming", "/v1/chat/completions", False),
                                       ("streaming", "/v1/stream", True)):
                script = bench.lua_script(tmp, f"floor-{kind}", {
                    "model": "bench", "messages": messages, "stream": stream}, None)
                self._scripts[kind] = (f"http://127.0.0.1:{port}{path}", script)
                bench.wrk(*self._scripts[kind], 16, 2)  # warm-up
        except BaseException:
            self.close()
            raise

    def cpu_ms(self, kind: str) -> float:
        """CPU ms per request (per stream) of one run at 16 connections."""
        before = self._bench.cpu_seconds(self._proc.pid)
        res = self._bench.wrk(*self._scripts[kind], 16, self._bench.DURATION)
        return (self._bench.cpu_seconds(self._proc.pid) - before) / res["requests"] * 1000

    def close(self) -> None:
        self._proc.terminate()
        self._proc.wait(10)


def fixed_floors() -> dict[str, float]:
    """The bare grpc.aio unary echo (client's and server's CPU per call) and the routing
    microbenchmark (µs per request, 20 deployments)."""
    import run as bench

    port = bench.free_port()
    server = subprocess.Popen([str(bench.PY), str(HERE / "floor.py"), "grpc-server", str(port)])
    try:
        time.sleep(1.0)
        s0 = bench.cpu_seconds(server.pid)
        n = 10_000
        client = subprocess.run([str(bench.PY), str(HERE / "floor.py"), "grpc-client", str(port),
                                 str(n)], capture_output=True, text=True, check=True)
        server_ms = (bench.cpu_seconds(server.pid) - s0) / (n + 500) * 1000
    finally:
        server.terminate()
        server.wait(10)
    routing = subprocess.run([str(bench.PY), str(HERE / "routing.py"), "20"],
                             capture_output=True, text=True, check=True)
    return {"grpc_client": float(client.stdout.strip()), "grpc_server": server_ms,
            "routing_20": float(routing.stdout)}
