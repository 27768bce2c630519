"""What one upstream call costs the router's process in its HTTP client: a pooled aiohttp
ClientSession against XRouter's own HTTP/1.1 client (providers/http1.py), POSTing the bench's
chat body to the bench's nginx upstream and parsing the JSON answer, on uvloop as the router
runs, at 16 calls in flight and at one. CPU of this process per call, best of 3 rounds.

    .venv/bin/python scripts/bench/upstream_client.py [calls per round]   (default 10000)
"""

from __future__ import annotations

import asyncio
import resource
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import orjson
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench

from xrouter_router.providers.http1 import HttpClient

BODY = orjson.dumps({"model": "bench", "messages": [
    {"role": "user", "content": "Hello! Please say hello back."}]})
HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer bench"}


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def _round(call: Callable[[], Awaitable[None]], n: int, in_flight: int) -> float:
    calls = iter(range(n))

    async def worker() -> None:
        for _ in calls:
            await call()
    start = _cpu()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return (_cpu() - start) / n * 1e6


async def main(port: int, n: int) -> None:
    url = f"http://127.0.0.1:{port}/plain/v1/chat/completions"
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100))
    client = HttpClient(connect_timeout=5.0, pool_size=100)

    async def with_aiohttp() -> None:
        async with session.post(url, data=BODY, headers=HEADERS) as resp:
            orjson.loads(await resp.read())

    async def with_http1() -> None:
        async with client.post(url, BODY, HEADERS) as resp:
            orjson.loads(await resp.read())
    for in_flight in (16, 1):
        for name, call in (("aiohttp ClientSession", with_aiohttp), ("XRouter http1", with_http1)):
            await _round(call, 500, in_flight)  # warm the pool
            best = min([await _round(call, n, in_flight) for _ in range(3)])
            print(f"{name:22} {in_flight:2} in flight: {best:6.1f} µs of CPU per call")
    await session.close()
    await client.close()


def _wait_for(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nginx did not listen on {port}")


if __name__ == "__main__":
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    tmp = Path(tempfile.mkdtemp(prefix="xr-upstream-"))
    nginx_port = bench.free_port()
    nginx = bench.start_nginx(tmp, nginx_port)
    try:
        _wait_for(nginx_port)
        uvloop.run(main(nginx_port, calls))
    finally:
        nginx.terminate()
        nginx.wait()
