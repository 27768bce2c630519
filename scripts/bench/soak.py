"""Soak benchmark (not a test): one gateway and one router process (embedded mode) against nginx,
sent many requests, most with distinct forged keys (well formed, valid checksum, unknown to the
store) and the rest with one valid key; reports both processes' RSS at idle, after a warm-up and
at the end, so that memory which grows with the number of distinct keys shows. The gateway's
failed-auth throttle is off here (it would answer the forged keys itself).

    .venv/bin/python scripts/bench/soak.py --requests 1000000 --forged 100000

The load is generated here (asyncio, kept-alive connections), not by wrk."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import re
import subprocess
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import run as bench
import uvloop

from xrouter_common.apikeys import generate

_LENGTH = re.compile(rb"(?i)\r\ncontent-length: (\d+)")


@dataclass
class Load:
    """The requests to send, in order: request i uses the valid key when i % valid_every == 0,
    else the next forged key (cycling through them)."""

    port: int
    valid: bytes
    forged: list[bytes]
    valid_every: int
    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)

    def request(self, i: int) -> bytes:
        key = self.valid if i % self.valid_every == 0 else self.forged[i % len(self.forged)]
        body = b'{"model":"bench/plain","messages":[{"role":"user","content":"Hello!"}]}'
        return (b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\nAuthorization: Bearer " + key +
                b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


async def _connection(load: Load, numbers: itertools.count[int], until: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", load.port)
    try:
        while (i := next(numbers)) < until:
            writer.write(load.request(i))
            head = await reader.readuntil(b"\r\n\r\n")
            length = _LENGTH.search(head)
            if length is None:
                raise RuntimeError(f"no Content-Length in {head[:200]!r}")
            await reader.readexactly(int(length.group(1)))
            load.statuses[int(head[9:12])] += 1
            load.sent += 1
    finally:
        writer.close()


async def send(load: Load, first: int, count: int, connections: int) -> None:
    numbers = itertools.count(first)
    await asyncio.gather(*(_connection(load, numbers, first + count)
                           for _ in range(connections)))


def rss(router: subprocess.Popen[bytes], gateway: subprocess.Popen[bytes]) -> tuple[float, float]:
    return bench.rss_mb(router.pid), bench.rss_mb(gateway.pid)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1_000_000, help="requests after warm-up")
    parser.add_argument("--forged", type=int, default=100_000, help="distinct forged keys")
    parser.add_argument("--valid-every", type=int, default=10,
                        help="every Nth request uses the valid key")
    parser.add_argument("--warmup", type=int, default=20_000, help="requests before 'before'")
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="xrouter-soak-"))
    nginx_port, gw_port = bench.free_port(), bench.free_port()
    procs = [bench.start_nginx(tmp, nginx_port)]
    # The gateway's failed-auth throttle would answer the forged keys itself (429) after 20 a
    # minute from this one address: off, so that every forged key reaches the router's cache.
    router, gateway = bench.start_services(tmp, nginx_port, gw_port,
                                           {"XROUTER_GATEWAY_AUTH_FAILURES_PER_MINUTE": "0"})
    procs += [router, gateway]
    try:
        bench.wait_ready(f"http://127.0.0.1:{gw_port}/readyz")
        valid = bench.bench_key(f"http://127.0.0.1:{gw_port}", limited=True)
        load = Load(gw_port, valid.encode(), [generate("free").encode() for _ in range(args.forged)],
                    args.valid_every)
        time.sleep(1.0)
        idle = rss(router, gateway)
        uvloop.run(send(load, 0, args.warmup, args.connections))
        before = rss(router, gateway)
        started, cpu0 = time.monotonic(), bench.cpu_seconds(router.pid)
        uvloop.run(send(load, args.warmup, args.requests, args.connections))
        elapsed, cpu = time.monotonic() - started, bench.cpu_seconds(router.pid) - cpu0
        after = rss(router, gateway)
        print(report(args, load, idle, before=before, after=after, elapsed=elapsed, cpu=cpu))
        return 0
    finally:
        bench.stop(procs, tmp)


def report(args: argparse.Namespace, load: Load, idle: tuple[float, float], *,
           before: tuple[float, float], after: tuple[float, float], elapsed: float,
           cpu: float) -> str:
    distinct = min(args.forged, args.warmup + args.requests)
    return "\n".join([
        f"# soak ({time.strftime('%Y-%m-%d %H:%M')}): {args.warmup} warm-up + {args.requests} "
        f"requests, {distinct} distinct forged keys, every {args.valid_every}th with a valid key, "
        f"{args.connections} connections",
        "",
        f"answers: {dict(sorted(load.statuses.items()))}; {args.requests / elapsed:.0f} req/s, "
        f"router CPU {cpu / args.requests * 1000:.3f} ms/request",
        "",
        "| RSS MB | idle | after warm-up | at the end | end - warm-up |",
        "|---|---|---|---|---|",
        f"| router | {idle[0]:.1f} | {before[0]:.1f} | {after[0]:.1f} | {after[0] - before[0]:+.1f} |",
        f"| gateway | {idle[1]:.1f} | {before[1]:.1f} | {after[1]:.1f} | {after[1] - before[1]:+.1f} |",
    ])


if __name__ == "__main__":
    raise SystemExit(main())
