"""The Redis Cluster StatsStore: one hash per deployment, changed only by a versioned Lua script
that does exactly what domain.stats does, read through a short-lived local cache. Redis trouble
never reaches the request path: the store then serves its own (in-process) view."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import (
    AskError,
    ClusterDownError,
    NoScriptError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)

from xrouter_router.domain.stats import (
    ALPHA,
    BreakerPolicy,
    DeploymentStats,
    updated,
    with_throughput,
)
from xrouter_router.storage import tasks

log = logging.getLogger(__name__)

# Part of every key and of the script: bump it with any change of the script or of the hash
# layout, so that replicas of two releases never apply two versions to the same data.
VERSION = "v1"
KEY_TTL = 7 * 24 * 3600  # statistics of a deployment without traffic for a week expire
SEEN_TTL = 3600  # how long a replica's last applied write is remembered per deployment
BATCH = 256  # operations the writer takes from its queue at once
WARN_EVERY = 60.0
_NEVER = float("-inf")

# One call applies a deployment's queued operations in order: ('o', ok, latency, now) as
# domain.stats.updated(), ('t', tokens per second, '', '') as with_throughput(). A call that
# timed out may still run later, beside its retry: the writer's sequence number (KEYS[2],
# ARGV[1]) makes it run at most once. Numbers are written with %.17g so that they read back
# as the very doubles Python computes.
_UPDATE = f"""-- xrouter stats {VERSION}
local key, seen_key = KEYS[1], KEYS[2]
local seen = tonumber(redis.call('GET', seen_key))
if seen ~= nil and seen >= tonumber(ARGV[1]) then return redis.call('HGETALL', key) end
redis.call('SET', seen_key, ARGV[1], 'EX', {SEEN_TTL})
local to_open, cooldown, alpha = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local raw = redis.call('HGETALL', key)
local h = {{}}
for i = 1, #raw, 2 do h[raw[i]] = raw[i + 1] end
local function num(field) return tonumber(h[field]) end
local function ewma(old, new) if old == nil then return new end return old + alpha * (new - old) end
local function fmt(x) return string.format('%.17g', x) end
local function outcome(ok, latency, now)
  if h.provider == nil then h.provider = ARGV[2] end
  h.samples = string.format('%d', (num('samples') or 0) + 1)
  h.success = fmt(ewma(num('success'), ok and 1 or 0))
  h.updated = fmt(now)
  if ok then
    if latency ~= nil then h.latency_ms = fmt(ewma(num('latency_ms'), latency)) end
    h.failures = '0'
    h.open_since = nil
    return
  end
  local failures = (num('failures') or 0) + 1
  local opened = num('open_since')
  local half_open = opened ~= nil and now - opened >= cooldown
  if half_open or (opened == nil and failures >= to_open) then h.open_since = fmt(now) end
  h.failures = string.format('%d', failures)
  h.last_failure = fmt(now)
end
for i = 7, #ARGV, 4 do
  if ARGV[i] == 'o' then
    outcome(ARGV[i + 1] == '1', tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3]))
  elseif h.samples ~= nil then
    local tps, old = tonumber(ARGV[i + 1]), num('throughput')
    h.throughput = fmt(ewma(old, tps))
  end
end
local out = {{}}
for field, value in pairs(h) do out[#out + 1] = field; out[#out + 1] = value end
redis.call('DEL', key)
if #out > 0 then
  redis.call('HSET', key, unpack(out))
  redis.call('EXPIRE', key, ARGV[6])
end
return out
"""


@dataclass(frozen=True, slots=True)
class Script:
    text: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        # Computed once: every call sends it.
        object.__setattr__(self, "sha", hashlib.sha1(self.text.encode()).hexdigest())


async def run_script(client: RedisCluster, script: Script, keys: Sequence[str],
                     args: Sequence[str | int]) -> Any:
    """EVALSHA through the cluster client; EVAL when the node lacks the script (script caches
    are per node and not replicated: a promoted replica, a restarted node), which also caches
    it there."""
    try:
        return await client.evalsha(script.sha, len(keys), *keys, *args)
    except NoScriptError:
        return await client.eval(script.text, len(keys), *keys, *args)


UPDATE_SCRIPT = Script(_UPDATE)


@dataclass(frozen=True, slots=True)
class _Outcome:
    provider: str
    ok: bool
    latency_ms: float | None
    now: float


@dataclass(frozen=True, slots=True)
class _Throughput:
    tokens_per_second: float


_Op = _Outcome | _Throughput


@dataclass(frozen=True, slots=True)
class _Call:
    """One script call: a deployment's queued operations, applied at once, in order."""

    deployment: str
    ops: tuple[_Op, ...]
    seq: int


def _apply(stats: DeploymentStats | None, op: _Op, policy: BreakerPolicy) -> DeploymentStats | None:
    """What InMemoryStats does with one operation (and what the script does in Redis)."""
    if isinstance(op, _Outcome):
        return updated(stats or DeploymentStats(provider=op.provider), ok=op.ok,
                       latency_ms=op.latency_ms, now=op.now, policy=policy)
    return None if stats is None else with_throughput(stats, op.tokens_per_second)


def _script_args(call: _Call, provider: str, policy: BreakerPolicy) -> list[str | int]:
    args: list[str | int] = [call.seq, provider, policy.failures_to_open,
                             repr(float(policy.cooldown)), repr(ALPHA), KEY_TTL]
    for op in call.ops:
        if isinstance(op, _Outcome):
            latency = "" if op.latency_ms is None else repr(float(op.latency_ms))
            args += ["o", "1" if op.ok else "0", latency, repr(float(op.now))]
        else:
            args += ["t", repr(float(op.tokens_per_second)), "", ""]
    return args


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def decode(reply: Any, provider: str = "") -> DeploymentStats | None:
    """A deployment's hash (HGETALL's mapping, or the script's flat list) as statistics."""
    if isinstance(reply, list):
        reply = dict(zip(reply[::2], reply[1::2], strict=True))
    if not reply:
        return None
    h = {_text(k): _text(v) for k, v in reply.items()}

    def number(field: str) -> float | None:
        value = h.get(field)
        return None if value is None else float(value)

    return DeploymentStats(
        provider=h.get("provider", provider), samples=int(h.get("samples", "0")),
        latency_ms=number("latency_ms"), throughput=number("throughput"),
        success=number("success"), failures=int(h.get("failures", "0")),
        open_since=number("open_since"), last_failure=number("last_failure"),
        updated=number("updated") or 0.0)


def _transient(exc: Exception) -> bool:
    """Worth retrying: the cluster is unreachable, slow, failing over or resharding."""
    return not isinstance(exc, ResponseError) or isinstance(
        exc, ClusterDownError | TryAgainError | ReadOnlyError | AskError)


class RedisStats:
    """Statistics shared by every router replica through Redis Cluster.

    Reads come from a local cache, refreshed from Redis at most every `cache_ttl` seconds per
    deployment, and wait at most `read_timeout` for Redis. Writes apply to the local cache at
    once and reach Redis through a bounded queue and one background writer, in order, retried
    while Redis is unreachable; the writer gathers what arrives within `linger` seconds, so
    that under load one script call carries many outcomes of a deployment. close() closes
    `client` too unless `shared` (another owner closes it: the router's ClusterClients).
    """

    def __init__(self, client: RedisCluster, deployments: Mapping[str, str],
                 policy: BreakerPolicy | None = None, *, prefix: str = "xr",
                 cache_ttl: float = 0.25, read_timeout: float = 0.1, retry_after: float = 1.0,
                 queue_size: int = 10_000, drain_timeout: float = 5.0,
                 linger: float = 0.02, shared: bool = False) -> None:
        self._client = client
        self._shared = shared
        self._providers = dict(deployments)
        self._policy = policy or BreakerPolicy()
        self._prefix = f"{prefix}:{VERSION}:"
        self._cache_ttl = cache_ttl
        self._read_timeout = read_timeout
        self._retry_after = retry_after
        self._drain_timeout = drain_timeout
        self._linger = linger
        self._local: dict[str, DeploymentStats] = {}
        self._fetched: dict[str, float] = {}
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._pending: dict[str, int] = {}  # operations queued, not yet in Redis
        self._writes = 0
        self._written_at: dict[str, int] = {}
        self._queue: asyncio.Queue[tuple[str, _Op]] = asyncio.Queue(queue_size)
        self._writer: asyncio.Task[None] | None = None
        self._writer_id = uuid.uuid4().hex
        self._seq = 0
        self._down_until = _NEVER
        self._warned = _NEVER
        self._failing = False
        self._closed = False
        self.errors = 0
        self.dropped = 0

    @property
    def policy(self) -> BreakerPolicy:
        return self._policy

    def key(self, deployment: str) -> str:
        return f"{self._prefix}stats:{{{deployment}}}"

    async def snapshot(self, deployments: Iterable[str]) -> Mapping[str, DeploymentStats]:
        ids = tuple(deployments)
        await self._refresh(ids, force=False)
        local = self._local
        return {d: local[d] for d in ids if d in local}

    async def record(self, deployment: str, provider: str, *, ok: bool,
                     latency_ms: float | None, now: float) -> None:
        self._submit(deployment, _Outcome(provider, ok, latency_ms, now))

    async def record_throughput(self, deployment: str, tokens_per_second: float) -> None:
        self._submit(deployment, _Throughput(tokens_per_second))

    async def all(self) -> Mapping[str, DeploymentStats]:
        ids = tuple(dict.fromkeys([*self._providers, *self._local]))
        await self._refresh(ids, force=True)
        return {d: self._local[d] for d in ids if d in self._local}

    async def flush(self) -> None:
        """Until every update queued so far is in Redis (or given up as not retryable)."""
        await self._queue.join()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            try:
                await asyncio.wait_for(self._queue.join(), self._drain_timeout)
            except TimeoutError:
                log.warning("stats: %d updates not written to Redis at shutdown", self._queue.qsize())
        await tasks.stop([*self._inflight.values(), self._writer])
        if not self._shared:
            await self._client.aclose()

    # -- writes ----------------------------------------------------------------------------

    def _submit(self, deployment: str, op: _Op) -> None:
        state = _apply(self._local.get(deployment), op, self._policy)
        if state is not None:
            self._local[deployment] = state
        if self._closed:
            return
        if self._queue.full():
            self.dropped += 1
            return
        self._pending[deployment] = self._pending.get(deployment, 0) + 1
        self._queue.put_nowait((deployment, op))
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write_loop())

    async def _write_loop(self) -> None:
        while True:
            items = [await self._queue.get()]
            if self._linger > 0 and not self._closed:
                # Under load, one script call then carries many outcomes (per deployment).
                await asyncio.sleep(self._linger)
            while len(items) < BATCH and not self._queue.empty():
                items.append(self._queue.get_nowait())
            grouped: dict[str, list[_Op]] = {}
            for deployment, op in items:
                grouped.setdefault(deployment, []).append(op)
            calls = []
            for deployment, ops in grouped.items():
                self._seq += 1
                calls.append(_Call(deployment, tuple(ops), self._seq))
            try:
                await self._write(calls)
            except Exception as exc:  # a bug here must not stop every later write
                log.exception("stats: writer failed; %d updates lost", len(items))
                self._failed(exc)
                self._pending.clear()  # later settlements tolerate the missing counts
            finally:
                for _ in items:
                    self._queue.task_done()

    async def _write(self, calls: list[_Call]) -> None:
        """Until every call is applied, or failed for a reason that retrying will not cure."""
        while calls:
            delay = self._down_until - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            retry = []
            for call, reply in zip(calls, await self._send(calls), strict=True):
                try:
                    if isinstance(reply, Exception):
                        raise reply
                    state = decode(reply, self._providers.get(call.deployment, ""))
                except Exception as exc:  # noqa: BLE001 - the writer outlives any failure of Redis
                    self._failed(exc)
                    if _transient(exc):
                        retry.append(call)
                        continue
                    state = None
                else:
                    self._recovered()
                self._settle(call, state)
            calls = retry

    async def _send(self, calls: list[_Call]) -> list[Any]:
        """Each call's reply or exception; several calls share one round trip per node."""
        if len(calls) == 1:  # a pipeline costs more than one command
            try:
                return [await self._eval(calls[0])]
            except Exception as exc:  # noqa: BLE001 - handed back as the reply
                return [exc]
        try:
            # redis-py refuses EVALSHA in cluster pipelines; EVAL costs about the same (the
            # node caches the compiled script) and needs no reloading after a failover.
            pipe = self._client.pipeline()
            for call in calls:
                pipe.eval(UPDATE_SCRIPT.text, 2, *self._keys(call), *self._args(call))
            return list(await pipe.execute(raise_on_error=False))
        except Exception as exc:  # noqa: BLE001 - handed back as every call's reply
            return [exc] * len(calls)

    async def _eval(self, call: _Call) -> Any:
        return await run_script(self._client, UPDATE_SCRIPT, self._keys(call), self._args(call))

    def _keys(self, call: _Call) -> tuple[str, str]:
        return self.key(call.deployment), f"{self._prefix}seen:{{{call.deployment}}}:{self._writer_id}"

    def _args(self, call: _Call) -> list[str | int]:
        provider = next((op.provider for op in call.ops if isinstance(op, _Outcome)),
                        self._providers.get(call.deployment, ""))
        return _script_args(call, provider, self._policy)

    def _settle(self, call: _Call, state: DeploymentStats | None) -> None:
        """`call` is done; `state` is what Redis answered (None: given up)."""
        d = call.deployment
        left = self._pending.get(d, 0) - len(call.ops)
        if left > 0:
            self._pending[d] = left
        else:
            self._pending.pop(d, None)
        self._writes += 1
        self._written_at[d] = self._writes
        # While later operations are on their way, the local view (which has them) knows better.
        if state is not None and left <= 0:
            self._local[d] = state

    # -- reads -----------------------------------------------------------------------------

    async def _refresh(self, ids: tuple[str, ...], *, force: bool) -> None:
        now = time.monotonic()
        if self._closed or now < self._down_until:
            return
        waiting: set[asyncio.Task[None]] = set()
        stale: list[str] = []
        for d in ids:
            task = self._inflight.get(d)
            if task is not None:
                waiting.add(task)
            elif force or now - self._fetched.get(d, _NEVER) >= self._cache_ttl:
                stale.append(d)
        if stale:
            waiting.add(self._start_fetch(tuple(stale)))
        if waiting:
            await asyncio.wait(waiting, timeout=self._read_timeout)

    def _start_fetch(self, ids: tuple[str, ...]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(self._fetch(ids))
        for d in ids:
            self._inflight[d] = task

        def forget(done: asyncio.Task[None]) -> None:
            for d in ids:
                if self._inflight.get(d) is done:
                    del self._inflight[d]
        task.add_done_callback(forget)
        return task

    async def _fetch(self, ids: tuple[str, ...]) -> None:
        started = self._writes
        try:
            if len(ids) == 1:  # a pipeline costs more than one command
                replies: list[Any] = [await self._client.hgetall(self.key(ids[0]))]
            else:
                pipe = self._client.pipeline()
                for d in ids:
                    pipe.hgetall(self.key(d))
                replies = await pipe.execute(raise_on_error=False)
        except Exception as exc:  # noqa: BLE001 - reported as a count and a rate-limited warning
            self._failed(exc)
            return
        fetched = time.monotonic()
        error: Exception | None = None
        for d, reply in zip(ids, replies, strict=True):
            try:
                if isinstance(reply, Exception):
                    raise reply
                state = decode(reply, self._providers.get(d, ""))
            except Exception as exc:  # noqa: BLE001 - one bad reply spoils no other
                error = exc
                continue
            self._fetched[d] = fetched
            # A write of ours newer than this read, or still queued, knows better.
            if state is not None and d not in self._pending and self._written_at.get(d, 0) <= started:
                self._local[d] = state
        if error is None:
            self._recovered()
        else:
            self._failed(error)

    # -- failures --------------------------------------------------------------------------

    def _failed(self, exc: Exception) -> None:
        self.errors += 1
        now = time.monotonic()
        if _transient(exc):
            self._down_until = now + self._retry_after
        if now - self._warned >= WARN_EVERY:
            self._warned = now
            self._failing = True
            log.warning("stats: Redis unavailable (%s: %s); serving this replica's statistics; "
                        "%d errors so far", type(exc).__name__, str(exc)[:200], self.errors)

    def _recovered(self) -> None:
        if self._failing:
            self._failing = False
            log.info("stats: Redis reachable again after %d errors", self.errors)
