"""What one request-path Redis command costs the router's process: a script (EVALSHA) and the
ledger's append with its WAIT, through redis-py's cluster client and through the lane
(storage/redis/lane.py), with 16 commands in flight, on uvloop as the router runs. Starts its
own Redis Cluster (3 masters + 3 replicas). CPU of this process per command, best of 3 rounds.

    .venv/bin/python scripts/bench/redis_calls.py [commands per round]   (default 4000)
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import uvloop

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # tests.infra: the same Redis Cluster as the tests

from tests.infra.redis_cluster import RedisCluster  # noqa: E402
from xrouter_router.storage.redis.clients import cluster_client  # noqa: E402
from xrouter_router.storage.redis.lane import Lane  # noqa: E402
from xrouter_router.storage.redis.ledger_stream import APPEND_SCRIPT  # noqa: E402
from xrouter_router.storage.redis.stats import Script  # noqa: E402

IN_FLIGHT = 16
SCRIPT = Script("return {'ok', redis.call('INCR', KEYS[1]), ARGV[1]}")
KEY, STREAM, RECENT = "xr:bench:{acct}:n", "xr:bench:ledger:{3}", "xr:bench:gen:{3}:g"
RECORD = b"r" * 600  # about a generation record's JSON


async def cpu_per_call(call: Callable[[], Awaitable[object]], count: int) -> float:
    async def worker() -> None:
        for _ in range(count // IN_FLIGHT):
            await call()
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
        best = min(best, (time.process_time() - started) / count * 1e6)
    return best


async def measure(url: str, count: int) -> list[tuple[str, float, float]]:
    client = cluster_client(url)
    await client.initialize()
    lane = Lane(client)
    append = ("EVAL", APPEND_SCRIPT, 2, STREAM, RECENT, 1000, RECORD, 60)
    wait = ("WAIT", 1, 100)

    async def script_client() -> object:
        return await client.evalsha(SCRIPT.sha, 1, KEY, "x")

    async def append_client() -> object:
        pipe = client.pipeline()
        pipe.execute_command(*append)
        pipe.execute_command(*wait, target_nodes=client.get_node_from_key(STREAM))
        return await pipe.execute(raise_on_error=False)

    await client.script_load(SCRIPT.text)
    rows = [("EVALSHA", await cpu_per_call(script_client, count),
             await cpu_per_call(lambda: lane.script(SCRIPT, [KEY], ["x"]), count)),
            ("ledger append: EVAL + WAIT, one connection", await cpu_per_call(append_client, count),
             await cpu_per_call(lambda: lane.send(STREAM, [append, wait]), count)),
            # The ledger's way since issue 16's fifth pass: one WAIT per turn of the loop.
            ("ledger append: EVAL, the turn's one WAIT", float("nan"),
             await cpu_per_call(lambda: lane.send(STREAM, [append], wait), count))]
    assert lane.fallbacks == 0, f"{lane.fallbacks} commands went through redis-py"
    await lane.close()
    await client.aclose()
    return rows


def main() -> int:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 4000
    cluster = RedisCluster().start()
    try:
        rows = uvloop.run(measure(cluster.url, count))
    finally:
        cluster.stop()
    print(f"CPU of the calling process per command, {IN_FLIGHT} in flight, best of 3 rounds of "
          f"{count}\n")
    print(f"{'command':<44}  {'redis-py cluster client':>23}  {'lane':>8}")
    for name, through_client, through_lane in rows:
        client_figure = "-" if math.isnan(through_client) else f"{through_client:.1f} µs"
        print(f"{name:<44}  {client_figure:>23}  {through_lane:>5.1f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
