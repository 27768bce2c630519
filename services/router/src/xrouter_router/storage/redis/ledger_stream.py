"""The durable write path of generation records: StreamLayout (where records live in Redis) and
StreamLedger, which appends each record to a sharded Redis Stream (durable once Redis acknowledges
it), falling back to PostgreSQL. The consumer that moves them into PostgreSQL: ledger_consumer."""

from __future__ import annotations

import asyncio
import builtins
import logging
import time
import zlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from xrouter_router.domain.ledger import GenerationRecord, UsageRow, UsageTotals
from xrouter_router.storage import tasks
from xrouter_router.storage.record_codec import generation_document, generation_from_document
from xrouter_router.storage.redis.lane import Lane, LaneMiss
from xrouter_router.storage.sql.pg import PgUsageLedger
from xrouter_router.storage.timing import Latency

log = logging.getLogger(__name__)

# Part of every key: bump it with any change of the entry format or of the key layout.
VERSION = "v2"  # v2: the consumer also posts each record's charge
GROUP = "xrouter-ledger"
FIELD = b"r"  # the entry's one field: the record as generation_document's JSON
# The entry and the recent record in one atomic step (their keys share the shard's hash tag).
# EVAL, not EVALSHA: redis-py refuses EVALSHA in cluster pipelines, and the node caches the
# compiled script. Cheaper than XADD and SET as two pipelined commands (about 60 µs of CPU).
# KEYS: stream, recent record; ARGV: the stream's approximate cap, the record, its TTL.
APPEND_SCRIPT = f"""-- xrouter ledger append {VERSION}
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', '{FIELD.decode()}', ARGV[2])
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
return 1
"""
WARN_EVERY = 60.0
# Calls to Redis catch every Exception, not only RedisError: under connection churn redis-py's
# cluster client also raises RedisClusterException, OSError, even AttributeError.


@dataclass(frozen=True, slots=True)
class StreamLayout:
    """Where records live in Redis. A generation id hashes to one of `shards` streams; its recent
    record (what get() reads until the record is in PostgreSQL) shares the stream's hash slot, so
    the two are written in one round trip. Every replica must use the same layout."""

    shards: int = 16
    prefix: str = "xr"

    def shard(self, generation_id: str) -> int:
        return zlib.crc32(generation_id.encode()) % self.shards

    def stream(self, shard: int) -> str:
        return f"{self.prefix}:{VERSION}:ledger:{{{shard}}}"

    def recent(self, shard: int, generation_id: str) -> str:
        return f"{self.prefix}:{VERSION}:gen:{{{shard}}}:{generation_id}"

    def probe(self, shard: int) -> str:
        """A key in the stream's slot that the replication probe writes (StreamLedger)."""
        return f"{self.prefix}:{VERSION}:probe:{{{shard}}}"

    def dead(self, shard: int) -> str:
        """Entries PostgreSQL refuses (or that are not records), kept for an operator."""
        return f"{self.prefix}:{VERSION}:ledger-dead:{{{shard}}}"


class Warnings:
    """A warning at most every WARN_EVERY seconds, with a count of the failures in between."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._last = float("-inf")
        self.failures = 0

    def failed(self, exc: BaseException) -> None:
        self.failures += 1
        now = time.monotonic()
        if now - self._last >= WARN_EVERY:
            self._last = now
            log.warning("%s (%s: %s); %d failures so far", self._what, type(exc).__name__,
                        " ".join(str(exc).split())[:200], self.failures)



class StreamLedger:
    """UsageLedger whose writes go through Redis: record() returns once the shard's master, and
    `replicas` of its replicas (WAIT), hold the record; a LedgerConsumer then writes it to
    PostgreSQL. When Redis cannot take it, record() writes to PostgreSQL directly (Unavailable when
    that fails too). When only the replication is not confirmed (the shard's master has no live
    replica), the record is written to PostgreSQL as well, off the request path (the stream's
    copy is then a harmless repeat), that master is marked, and the appends to it wait for no
    replica (they are written to PostgreSQL the same way) until a background probe (a write and
    a WAIT every `probe_every` seconds, on a pooled connection of its own, never the lane's)
    is confirmed again. So a master without a replica costs only the appends already waiting
    when it was first found, not one per probe (docs/accounts.md, "How a charge travels"). Reads go to
    PostgreSQL, except that get() first looks for a record still on its way; totals and reports
    lag by the consumer's flush interval. Records carry their charges when `pg` charges
    (PgUsageLedger(charge=True)); `on_stored` is told of a record written to PostgreSQL here
    (RedisCreditGuard.applied). The caller owns `client`. Appends go through `lane` when given
    (storage/redis/lane.py)."""

    def __init__(self, client: RedisCluster, pg: PgUsageLedger, layout: StreamLayout | None = None,
                 *, lane: Lane | None = None, max_len: int = 500_000, recent_ttl: int = 3600,
                 replicas: int = 1, replica_timeout: float = 0.1, timeout: float = 2.0,
                 on_stored: Callable[[Sequence[GenerationRecord]], Awaitable[None]] | None = None,
                 probe_every: float = 1.0, max_deferred: int = 10_000) -> None:
        self._client = client
        self._lane = lane or Lane(client, enabled=False)
        self._pg = pg
        self._on_stored = on_stored
        self._layout = layout or StreamLayout()
        # Per shard. The consumer deletes what it has written, so this bounds the backlog of a
        # long PostgreSQL outage: past it, XADD trims the oldest records (loss). Size it to the
        # outage to survive (16 shards x 500,000 is over an hour at 2,000 generations/s).
        self._max_len = max_len
        self._recent_ttl = recent_ttl
        self._replicas = replicas
        self._replica_timeout_ms = int(replica_timeout * 1000)
        self._timeout = timeout
        self._warnings = Warnings("ledger: Redis did not take a record; written to PostgreSQL")
        self._probe_every = probe_every
        self._slots: dict[str, int] = {}
        # Masters (node names) whose appends skip the WAIT, each with its probe.
        self._unreplicated: dict[str, asyncio.Task[None]] = {}
        self._deferred: set[asyncio.Task[None]] = set()
        self._max_deferred = max_deferred
        self.direct_writes = 0  # records written to PostgreSQL by record() itself
        self.replica_timeouts = 0  # WAITs of appends no replica confirmed in time
        self.probe_timeouts = 0  # the probes' WAITs no replica confirmed in time
        self.deferred_writes = 0  # records written to PostgreSQL off the request path
        self.latency = Latency()  # of the appends (XADD, recent record, WAIT: one round trip)

    async def record(self, record: GenerationRecord) -> None:
        payload = orjson.dumps(generation_document(record))  # InvalidRequest before any write
        started = time.perf_counter()
        stream = self._layout.stream(self._layout.shard(record.id))
        master = self._master(stream) if self._replicas > 0 else None
        wait = self._replicas > 0 and master not in self._unreplicated
        try:
            async with asyncio.timeout(self._timeout):
                replicated = await self._append(record.id, stream, payload, wait)
        except Exception as exc:  # noqa: BLE001 - any failure of Redis: write to PostgreSQL
            self.latency.observe(time.perf_counter() - started)
            self._warnings.failed(exc)
            await self._write_directly(record)
            return
        self.latency.observe(time.perf_counter() - started)
        if replicated or self._replicas <= 0:
            return
        if wait:
            self.replica_timeouts += 1
            master = master or self._master(stream)  # the append taught the client the slots
            if master is not None and master not in self._unreplicated:
                self._unreplicated[master] = asyncio.ensure_future(
                    self._probe(master, stream, self._layout.shard(record.id)))
        self._defer(record)

    async def _probe(self, master: str, stream: str, shard: int) -> None:
        """Every `probe_every` seconds, a write next to `stream` and a WAIT on a pooled
        connection (never the lane's, which the appends share: a WAIT there would hold up every
        append behind it); once the replicas confirm one, or the stream's slot has another
        master (a failover: its appends find out afresh), the appends to `master` wait again."""
        probe = self._layout.probe(shard)
        try:
            while self._master(stream) == master:
                await asyncio.sleep(self._probe_every)
                try:
                    async with asyncio.timeout(self._timeout + self._replica_timeout_ms / 1000):
                        replies = await self._pipeline(stream, ("SET", probe, b"1", "PX", 60_000),
                                                       True)
                    if self._replicated(replies):
                        return
                except Exception as exc:  # noqa: BLE001 - Redis failing: the appends find out
                    self._warnings.failed(exc)
                    continue
                self.probe_timeouts += 1
        finally:
            self._unreplicated.pop(master, None)

    def _master(self, stream: str) -> str | None:
        """The node name of the stream's master, from the client's slot map (None: unknown yet)."""
        slot = self._slots.get(stream)
        if slot is None:
            slot = self._slots[stream] = key_slot(stream.encode())
        try:
            return str(self._client.nodes_manager.get_node_from_slot(slot).name)
        except Exception:  # noqa: BLE001 - no slot map yet: wait for the replica as usual
            return None

    def _defer(self, record: GenerationRecord) -> None:
        """PostgreSQL gets the record off the request path; the stream's copy stays for the
        consumer (a harmless repeat). Past `max_deferred` writes in flight, only the stream's."""
        if len(self._deferred) >= self._max_deferred:
            return
        task = asyncio.ensure_future(self._write_quietly(record))
        self._deferred.add(task)
        task.add_done_callback(self._deferred.discard)

    async def _write_quietly(self, record: GenerationRecord) -> None:
        self.deferred_writes += 1
        try:
            await self._pg.record(record)
            if self._on_stored is not None:
                await self._on_stored((record,))
        except Exception as exc:  # noqa: BLE001 - the master has it; the consumer will write it
            self._warnings.failed(exc)

    async def settle(self) -> None:
        """Waits for the deferred writes in flight."""
        while self._deferred:
            await asyncio.gather(*list(self._deferred), return_exceptions=True)

    async def close(self, grace: float = 5.0) -> None:
        """At shutdown: the deferred writes get `grace` seconds; those still running then are
        cancelled (their records are in the stream, for the consumers)."""
        await tasks.stop(list(self._unreplicated.values()))
        try:
            await asyncio.wait_for(self.settle(), grace)
        except TimeoutError:
            await tasks.stop(list(self._deferred))

    async def _write_directly(self, record: GenerationRecord) -> None:
        self.direct_writes += 1
        await self._pg.record(record)
        if self._on_stored is not None:
            try:
                await self._on_stored((record,))
            except Exception as exc:  # noqa: BLE001 - Redis counts the charge as deferred
                self._warnings.failed(exc)

    async def _append(self, generation_id: str, stream: str, payload: bytes, wait: bool) -> bool:
        """The entry and the recent record (APPEND_SCRIPT), and WAIT when `wait`, in one round
        trip; whether enough replicas confirmed (False without a WAIT). Raises when the stream
        did not take the record."""
        shard = self._layout.shard(generation_id)
        append = ("EVAL", APPEND_SCRIPT, 2, stream, self._layout.recent(shard, generation_id),
                  self._max_len, payload, self._recent_ttl)
        waiting = ("WAIT", self._replicas, self._replica_timeout_ms)
        try:
            replies = await self._lane.send(stream, [append], waiting if wait else None)
        except LaneMiss:
            replies = await self._pipeline(stream, append, wait)
            self._lane.resume()
        return self._replicated(replies)

    def _replicated(self, replies: list[Any]) -> bool:
        if isinstance(replies[0], BaseException):  # an error reply, or redis-py's failure
            raise replies[0]
        return len(replies) > 1 and isinstance(replies[1], int) and replies[1] >= self._replicas

    async def _pipeline(self, stream: str, append: tuple[str | int | bytes, ...],
                        wait: bool) -> list[Any]:
        """_append through the cluster client: a pipeline of the same commands."""
        await self._client.initialize()  # a no-op once done; get_node_from_key needs the slots
        pipe = self._client.pipeline()
        pipe.execute_command(*append)
        if wait:
            # On the pipeline's connection to the stream's node: WAIT covers that connection's
            # writes only.
            node = self._client.get_node_from_key(stream)
            pipe.execute_command("WAIT", self._replicas, self._replica_timeout_ms, target_nodes=node)
        return list(await pipe.execute(raise_on_error=False))

    def unreplicated(self) -> list[str]:
        """The masters whose appends wait for no replica now (node names)."""
        return list(self._unreplicated)

    @property
    def lane_fallbacks(self) -> int:
        return self._lane.fallbacks

    async def get(self, generation_id: str) -> GenerationRecord | None:
        # Redis first: the consumer deletes the recent record only after PostgreSQL committed it,
        # so a miss there and then a miss in PostgreSQL means there is no such record.
        shard = self._layout.shard(generation_id)
        try:
            async with asyncio.timeout(self._timeout):
                await self._client.initialize()
                raw = await self._client.get(self._layout.recent(shard, generation_id))
        except Exception as exc:  # noqa: BLE001 - any failure of Redis: read PostgreSQL
            self._warnings.failed(exc)
            raw = None
        if raw is not None:
            try:
                return generation_from_document(orjson.loads(raw))
            except (ValueError, KeyError, TypeError):
                log.warning("ledger: the recent record of %s is not a record", generation_id)
        return await self._pg.get(generation_id)

    async def totals(self, *, key_id: str | None = None, account_id: str | None = None,
                     since: float | None = None) -> UsageTotals:
        return await self._pg.totals(key_id=key_id, account_id=account_id, since=since)

    async def report(self, *, account_id: str | None, group_by: Sequence[str], since: float,
                     until: float) -> builtins.list[UsageRow]:
        return await self._pg.report(account_id=account_id, group_by=group_by, since=since,
                                     until=until)

    async def charged(self, *, account_id: str, since: float,
                      until: float) -> builtins.list[GenerationRecord]:
        """From PostgreSQL: a record still in the stream is not on a statement yet."""
        return await self._pg.charged(account_id=account_id, since=since, until=until)
