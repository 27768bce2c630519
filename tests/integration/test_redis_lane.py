"""Lane (storage/redis/lane.py) on real Redis Cluster nodes: the request path's commands go
straight to their slot's master and answer as the cluster client would; what the lane cannot
finish (a moved slot, a lost script cache, a hung node) ends through the client."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any

import pytest
import redis
import uvloop
from redis.crc import key_slot
from redis.exceptions import RedisClusterException, ResponseError

from tests.infra.fixtures import redis_cluster  # noqa: F401 - the session fixture
from tests.infra.redis_cluster import _DIE_WITH_PARENT, RedisCluster, free_ports
from xrouter_router.storage.redis.clients import cluster_client, command_table
from xrouter_router.storage.redis.lane import Lane
from xrouter_router.storage.redis.stats import Script

ECHO = Script("return {KEYS[1], ARGV[1]}")
FAILING = Script("return redis.error_reply('XRTEST refused ' .. ARGV[1])")
# Busy for ARGV[1] microseconds, then answers ARGV[2]: a reply that is still on its way.
SLOW = Script("""local t = redis.call('TIME')
local started = t[1] * 1000000 + t[2]
repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] - started > tonumber(ARGV[1])
return ARGV[2]""")


Run = Callable[[Coroutine[Any, Any, None]], None]


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Run:
    """Each scenario on both loops: the router runs on uvloop, whose transports are not
    asyncio's classes."""
    if request.param == "uvloop":
        return uvloop.run
    return asyncio.run


@contextlib.asynccontextmanager
async def lane_on(url: str, **options: Any) -> AsyncIterator[Lane]:
    client = cluster_client(url, **options)
    await client.initialize()
    lane = Lane(client, stall=options.get("socket_timeout", 1.0))
    try:
        yield lane
    finally:
        await lane.close()
        await client.aclose()


def keys_on_each_master(cluster: RedisCluster) -> dict[int, str]:
    """A fresh key per master port."""
    found: dict[int, str] = {}
    while len(found) < len(cluster.master_ports()):
        key = f"xrtest:{{{uuid.uuid4().hex[:8]}}}:k"
        found.setdefault(cluster.master_of(key), key)
    return found


async def _scripts_go_straight_to_each_master_one_connection_each(cluster: RedisCluster) -> None:
    keys = keys_on_each_master(cluster)
    async with lane_on(cluster.url) as lane:
        calls = [(key, str(i)) for i in range(100) for key in keys.values()]
        replies = await asyncio.gather(*(lane.script(ECHO, [k], [a]) for k, a in calls))
        assert replies == [[k.encode(), a.encode()] for k, a in calls]
        assert lane.fallbacks == 0
        assert sorted(lane.connected()) == sorted(f"127.0.0.1:{p}" for p in keys)


async def _a_node_that_lost_its_scripts_gets_them_again(cluster: RedisCluster) -> None:
    port, key = next(iter(keys_on_each_master(cluster).items()))
    async with lane_on(cluster.url) as lane:
        assert await lane.script(ECHO, [key], ["a"]) == [key.encode(), b"a"]
        with redis.Redis(port=port) as node:
            node.script_flush()
            assert await lane.script(ECHO, [key], ["b"]) == [key.encode(), b"b"]
            assert node.script_exists(ECHO.sha) == [True]
        assert lane.fallbacks == 0


async def _an_error_the_script_raises_is_a_response_error(cluster: RedisCluster) -> None:
    key = next(iter(keys_on_each_master(cluster).values()))
    async with lane_on(cluster.url) as lane:
        with pytest.raises(ResponseError, match=r"^XRTEST refused now$"):
            await lane.script(FAILING, [key], ["now"])
        assert await lane.script(ECHO, [key], ["after"]) == [key.encode(), b"after"]
        assert lane.fallbacks == 0


async def _a_caller_that_gives_up_leaves_the_next_reply_to_the_next_caller(
        cluster: RedisCluster) -> None:
    key = next(iter(keys_on_each_master(cluster).values()))
    async with lane_on(cluster.url) as lane:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await lane.script(SLOW, [key], [300_000, "late"])
        assert await lane.script(ECHO, [key], ["mine"]) == [key.encode(), b"mine"]
        assert lane.fallbacks == 0


async def _a_moved_slot_goes_through_the_client_once_then_to_its_new_master(
        cluster: RedisCluster) -> None:
    keys = keys_on_each_master(cluster)
    (source, key), (target, _) = list(keys.items())[:2]
    slot = key_slot(key.encode())
    async with lane_on(cluster.url) as lane:
        assert await lane.script(ECHO, [key], ["before"]) == [key.encode(), b"before"]
        await asyncio.to_thread(move_slot, cluster, slot, source, target)
        try:
            assert await lane.script(ECHO, [key], ["moved"]) == [key.encode(), b"moved"]
            assert lane.fallbacks == 1  # MOVED: the client followed it and learned the new owner
            assert await lane.script(ECHO, [key], ["direct"]) == [key.encode(), b"direct"]
            assert lane.fallbacks == 1
            assert f"127.0.0.1:{target}" in lane.connected()
        finally:
            await asyncio.to_thread(move_slot, cluster, slot, target, source)


def wait_calls(port: int) -> int:
    with redis.Redis(port=port) as node:
        stats = node.info("commandstats")
    return int(stats.get("cmdstat_wait", {}).get("calls", 0))


async def _the_waits_of_one_turn_go_as_one_wait_that_answers_every_caller(
        cluster: RedisCluster) -> None:
    port, key = next(iter(keys_on_each_master(cluster).items()))
    async with lane_on(cluster.url) as lane:
        assert await lane.script(ECHO, [key], ["open"]) == [key.encode(), b"open"]
        before = wait_calls(port)
        replies = await asyncio.gather(*(lane.send(key, [("SET", f"{key}:{i}", i)], ("WAIT", 1, 5000))
                                         for i in range(20)))
        assert replies == [[b"OK", 1]] * 20  # each write on the master and on its one replica
        assert wait_calls(port) == before + 1
        with redis.Redis(port=cluster.replica_of(port)) as replica:
            replica.execute_command("READONLY")
            assert replica.mget([f"{key}:{i}" for i in range(20)]) == [b"%d" % i for i in range(20)]
        for i in range(2):  # turns of their own: a WAIT each
            assert await lane.send(key, [("SET", key, i)], ("WAIT", 1, 5000)) == [b"OK", 1]
        assert wait_calls(port) == before + 3
        assert lane.fallbacks == 0


def blocked_in_wait(port: int) -> int:
    """The id of the client whose WAIT blocks on the node `port`, once there is one."""
    deadline = time.monotonic() + 30
    with redis.Redis(port=port, decode_responses=True) as node:
        while True:
            waiting = [c for c in node.client_list() if c["cmd"] == "wait" and "b" in c["flags"]]
            if waiting:
                return int(waiting[0]["id"])
            assert time.monotonic() < deadline, "no client blocked in WAIT"
            time.sleep(0.01)


async def writes_blocked_in_one_wait(lane: Lane, key: str, port: int,
                                     timeout_ms: int) -> tuple[list[asyncio.Task[list[Any]]], int]:
    """Three writes of one turn, their shared WAIT blocked on the node `port` (two replicas
    asked of a master that has one: it blocks for `timeout_ms`); the calls and the id of the
    lane's client there."""
    assert await lane.script(ECHO, [key], ["open"]) == [key.encode(), b"open"]
    calls = [asyncio.ensure_future(lane.send(key, [("SET", f"{key}:{i}", i)], ("WAIT", 2, timeout_ms)))
             for i in range(3)]
    return calls, await asyncio.to_thread(blocked_in_wait, port)


async def _a_caller_that_gives_up_on_a_shared_wait_leaves_the_others_their_replies(
        cluster: RedisCluster) -> None:
    port, key = next(iter(keys_on_each_master(cluster).items()))
    async with lane_on(cluster.url) as lane:
        calls, _ = await writes_blocked_in_one_wait(lane, key, port, 1000)
        calls[0].cancel()
        assert await asyncio.gather(*calls[1:]) == [[b"OK", 1], [b"OK", 1]]
        assert calls[0].cancelled()
        assert await lane.script(ECHO, [key], ["after"]) == [key.encode(), b"after"]
        assert lane.fallbacks == 0


async def _a_connection_lost_while_a_shared_wait_blocks_fails_its_callers_then_heals(
        cluster: RedisCluster) -> None:
    port, key = next(iter(keys_on_each_master(cluster).items()))
    async with lane_on(cluster.url) as lane:
        calls, victim = await writes_blocked_in_one_wait(lane, key, port, 5000)
        with redis.Redis(port=port) as node:
            node.client_kill_filter(_id=victim)
        failed = await asyncio.gather(*calls, return_exceptions=True)
        assert [type(error) for error in failed] == [redis.asyncio.ConnectionError] * 3
        # Through the client until it succeeds, then the lane again, on a new connection.
        assert await lane.script(ECHO, [key], ["healed"]) == [key.encode(), b"healed"]
        assert await lane.send(key, [("GET", f"{key}:0")], ("WAIT", 1, 5000)) == [b"0", 1]
        assert lane.fallbacks == 1


def move_slot(cluster: RedisCluster, slot: int, source: int, target: int) -> None:
    """An empty slot's resharding, as `redis-cli --cluster reshard` does it."""
    with redis.Redis(port=source, decode_responses=True) as src, \
            redis.Redis(port=target, decode_responses=True) as dst:
        source_id, target_id = src.execute_command("CLUSTER MYID"), dst.execute_command("CLUSTER MYID")
        dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", source_id)
        src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", target_id)
        assert src.execute_command("CLUSTER COUNTKEYSINSLOT", slot) == 0
        dst.execute_command("CLUSTER SETSLOT", slot, "NODE", target_id)
        src.execute_command("CLUSTER SETSLOT", slot, "NODE", target_id)
    deadline = time.monotonic() + 10
    while not all(owner(port, slot) == target for port in cluster.master_ports()):
        assert time.monotonic() < deadline, f"slot {slot} never moved to {target}"
        time.sleep(0.05)


def owner(port: int, slot: int) -> int:
    with redis.Redis(port=port) as node:
        for first, last, master, *_ in node.execute_command("CLUSTER SLOTS"):
            if first <= slot <= last:
                return int(master[1])
    raise AssertionError(f"slot {slot} not served")


# -- a node of our own: a password, and a node that stops answering ----------------------------


@contextlib.contextmanager
def lone_node(password: str) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """A one-node cluster (every slot on one master) that wants a password."""
    port = free_ports(1)[0]
    with tempfile.TemporaryDirectory(prefix="xr-lane-") as folder:
        proc = subprocess.Popen(
            [*_DIE_WITH_PARENT, "redis-server", "--cluster-enabled", "yes", "--save", "",
             "--appendonly", "no", "--bind", "127.0.0.1", "--port", str(port), "--dir", folder,
             "--requirepass", password], stdout=subprocess.DEVNULL)
        try:
            node = redis.Redis(port=port, password=password, decode_responses=True)
            deadline = time.monotonic() + 10
            while True:
                with contextlib.suppress(redis.ConnectionError):
                    node.cluster("ADDSLOTSRANGE", 0, 16383)
                    break
                assert time.monotonic() < deadline, "the lone node never started"
                time.sleep(0.05)
            while node.cluster("INFO").get("cluster_state") != "ok":
                assert time.monotonic() < deadline, "the lone node's cluster never came up"
                time.sleep(0.05)
            node.close()
            yield port, proc
        finally:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
            proc.wait()


async def _a_node_with_a_password_and_a_node_that_stops_answering() -> None:
    with lone_node("s3cret-lane") as (port, proc):
        url = f"redis://:s3cret-lane@127.0.0.1:{port}"
        async with lane_on(url, socket_timeout=0.3, socket_connect_timeout=0.3) as lane:
            assert await lane.script(ECHO, ["a"], ["1"]) == [b"a", b"1"]
            assert lane.fallbacks == 0 and lane.connected() == [f"127.0.0.1:{port}"]

            proc.send_signal(signal.SIGSTOP)
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.1):
                    await lane.script(ECHO, ["a"], ["2"])
            await asyncio.sleep(0.35)  # past the lane's stall bound: the next call gives up on it
            with pytest.raises((redis.RedisError, RedisClusterException)):  # the client, in its time
                await lane.script(ECHO, ["a"], ["3"])
            assert lane.fallbacks == 1 and lane.connected() == []
            proc.send_signal(signal.SIGCONT)

            # Through the client until it succeeds, then the lane again, on a new connection.
            assert await lane.script(ECHO, ["a"], ["4"]) == [b"a", b"4"]
            assert lane.fallbacks == 2
            assert await lane.script(ECHO, ["a"], ["5"]) == [b"a", b"5"]
            assert lane.fallbacks == 2 and lane.connected() == [f"127.0.0.1:{port}"]


async def _a_password_changed_under_a_running_client_leaves_the_lane_for_the_client() -> None:
    with lone_node("old") as (port, _):
        async with lane_on(f"redis://:old@127.0.0.1:{port}") as lane:
            assert await lane.client.ping() is True  # the client's pooled, authenticated connection
            with redis.Redis(port=port, password="old") as node:
                node.config_set("requirepass", "new")
            # The lane's connection must authenticate again and cannot: the client still can.
            await lane.close()
            assert await lane.script(ECHO, ["a"], ["1"]) == [b"a", b"1"]
            assert lane.fallbacks == 1 and lane.connected() == []


ON_THE_CLUSTER = [_scripts_go_straight_to_each_master_one_connection_each,
                  _a_node_that_lost_its_scripts_gets_them_again,
                  _an_error_the_script_raises_is_a_response_error,
                  _a_caller_that_gives_up_leaves_the_next_reply_to_the_next_caller,
                  _a_moved_slot_goes_through_the_client_once_then_to_its_new_master,
                  _the_waits_of_one_turn_go_as_one_wait_that_answers_every_caller,
                  _a_caller_that_gives_up_on_a_shared_wait_leaves_the_others_their_replies,
                  _a_connection_lost_while_a_shared_wait_blocks_fails_its_callers_then_heals]
ON_A_LONE_NODE = [_a_node_with_a_password_and_a_node_that_stops_answering,
                  _a_password_changed_under_a_running_client_leaves_the_lane_for_the_client]


@pytest.mark.parametrize("scenario", ON_THE_CLUSTER, ids=lambda f: f.__name__.strip("_"))
def test_on_the_cluster(run: Run, redis_cluster: RedisCluster,  # noqa: F811
                        scenario: Callable[[RedisCluster], Coroutine[Any, Any, None]]) -> None:
    run(scenario(redis_cluster))


@pytest.mark.parametrize("scenario", ON_A_LONE_NODE, ids=lambda f: f.__name__.strip("_"))
def test_on_a_lone_node(run: Run, scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    run(scenario())


def test_tls_takes_the_lane_and_credential_providers_stay_with_the_client() -> None:
    assert Lane(cluster_client("redis://127.0.0.1:7000")).enabled
    assert Lane(cluster_client("rediss://127.0.0.1:7000")).enabled
    assert not Lane(cluster_client("redis://127.0.0.1:7000"), enabled=False).enabled


async def test_the_clients_of_a_process_share_one_command_table(
        redis_cluster: RedisCluster) -> None:  # noqa: F811
    table = command_table()
    clients = [cluster_client(redis_cluster.url, commands=table) for _ in range(3)]
    try:
        await asyncio.gather(*(c.initialize() for c in clients))
        assert all(c.commands_parser is table for c in clients)
        assert {"mset", "mget", "evalsha", "xadd"} <= set(table.commands)
        # Key positions come from the shared table: multi-key commands route on every client.
        tag = uuid.uuid4().hex
        await clients[0].mset({f"{{{tag}}}a": "1", f"{{{tag}}}b": "2"})
        for c in clients:
            assert await c.mget(f"{{{tag}}}a", f"{{{tag}}}b") == [b"1", b"2"]
    finally:
        for c in clients:
            await c.aclose()
