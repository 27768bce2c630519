"""The durable write path of generation records: StreamLedger appends each record to a sharded
Redis Stream (durable once Redis acknowledges it), and LedgerConsumer, running in every router
replica, moves the records into PostgreSQL in idempotent batches: exactly once, across router
crashes and PostgreSQL outages."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import os
import socket
import time
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ResponseError

from xrouter_router.domain.errors import InvalidRequest, Unavailable, XRouterError
from xrouter_router.domain.ledger import GenerationRecord, UsageRow, UsageTotals
from xrouter_router.storage.pg import (
    PgUsageLedger,
    generation_document,
    generation_from_document,
)

log = logging.getLogger(__name__)

# Part of every key: bump it with any change of the entry format or of the key layout.
VERSION = "v1"
GROUP = "xrouter-ledger"
FIELD = b"r"  # the entry's one field: the record as generation_document's JSON
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

    def dead(self, shard: int) -> str:
        """Entries PostgreSQL refuses (or that are not records), kept for an operator."""
        return f"{self.prefix}:{VERSION}:ledger-dead:{{{shard}}}"


class BatchLedger(Protocol):
    """What the consumer writes through (PgUsageLedger): a batch in one transaction,
    idempotently; how many records were new. InvalidRequest when a record cannot be stored."""

    async def record_many(self, records: Sequence[GenerationRecord]) -> int: ...


class _Warnings:
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


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _read_entries(reply: Any) -> list[Any]:
    """XREADGROUP's entries of one stream: [[stream, entries]] (RESP2), {stream: [entries]} (RESP3)."""
    if not reply:
        return []
    if isinstance(reply, dict):
        value = next(iter(reply.values()))
        return list(value[0]) if value and isinstance(value[0], list) else list(value)
    return list(reply[0][1])


class StreamLedger:
    """UsageLedger whose writes go through Redis: record() returns once the shard's master, and
    `replicas` of its replicas (WAIT), hold the record; a LedgerConsumer then writes it to
    PostgreSQL. When Redis cannot take it, record() writes to PostgreSQL directly (Unavailable when
    that fails too); when only the replication is not confirmed, it writes there as well (the
    stream's copy is then a harmless repeat). Reads go to PostgreSQL, except that get() first looks
    for a record still on its way; totals and reports lag by the consumer's flush interval.
    The caller owns `client`."""

    def __init__(self, client: RedisCluster, pg: PgUsageLedger, layout: StreamLayout | None = None,
                 *, max_len: int = 500_000, recent_ttl: int = 3600, replicas: int = 1,
                 replica_timeout: float = 0.1, timeout: float = 2.0) -> None:
        self._client = client
        self._pg = pg
        self._layout = layout or StreamLayout()
        # Per shard. The consumer deletes what it has written, so this bounds the backlog of a
        # long PostgreSQL outage: past it, XADD trims the oldest records (loss). Size it to the
        # outage to survive (16 shards x 500,000 is over an hour at 2,000 generations/s).
        self._max_len = max_len
        self._recent_ttl = recent_ttl
        self._replicas = replicas
        self._replica_timeout_ms = int(replica_timeout * 1000)
        self._timeout = timeout
        self._warnings = _Warnings("ledger: Redis did not take a record; written to PostgreSQL")
        self.direct_writes = 0  # records written to PostgreSQL by record() itself

    async def record(self, record: GenerationRecord) -> None:
        payload = orjson.dumps(generation_document(record))  # InvalidRequest before any write
        try:
            async with asyncio.timeout(self._timeout):
                replicated = await self._append(record.id, payload)
        except Exception as exc:  # noqa: BLE001 - any failure of Redis: write to PostgreSQL
            self._warnings.failed(exc)
            self.direct_writes += 1
            await self._pg.record(record)
            return
        if not replicated:
            self.direct_writes += 1
            try:
                await self._pg.record(record)
            except XRouterError as exc:  # the shard's master has it; the consumer will write it
                self._warnings.failed(exc)

    async def _append(self, generation_id: str, payload: bytes) -> bool:
        """XADD (and the recent record, and WAIT) in one round trip; whether enough replicas
        confirmed. Raises when the stream did not take the record."""
        shard = self._layout.shard(generation_id)
        stream = self._layout.stream(shard)
        await self._client.initialize()  # a no-op once done; get_node_from_key needs the slots
        pipe = self._client.pipeline()
        pipe.xadd(stream, {FIELD: payload}, maxlen=self._max_len, approximate=True)
        pipe.set(self._layout.recent(shard, generation_id), payload, ex=self._recent_ttl)
        node = self._client.get_node_from_key(stream) if self._replicas > 0 else None
        if node is not None:
            # On the pipeline's connection to the stream's node: WAIT covers that connection's
            # writes only.
            pipe.execute_command("WAIT", self._replicas, self._replica_timeout_ms, target_nodes=node)
        replies = await pipe.execute(raise_on_error=False)
        if isinstance(replies[0], BaseException):
            raise replies[0]
        if self._replicas <= 0:
            return True
        return node is not None and isinstance(replies[2], int) and replies[2] >= self._replicas

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


@dataclass(slots=True)
class _Entry:
    entry_id: bytes | str
    payload: bytes
    record: GenerationRecord | None  # None: not a record (dead-lettered as it is)
    error: str = ""


@dataclass(slots=True)
class _Chunk:
    """Entries of one shard, handed to the flusher; `done` resolves once they are acknowledged
    (or left pending for a later claim)."""

    shard: int
    entries: list[_Entry]
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


def _entry(entry_id: bytes | str, fields: dict[Any, Any]) -> _Entry:
    payload = fields.get(FIELD, fields.get(FIELD.decode(), b""))
    payload = payload.encode() if isinstance(payload, str) else payload
    try:
        return _Entry(entry_id, payload, generation_from_document(orjson.loads(payload)))
    except (ValueError, KeyError, TypeError) as exc:
        return _Entry(entry_id, payload, None, f"not a record: {exc}")


class LedgerConsumer:
    """Moves records from every shard's stream into PostgreSQL, as consumer `name` of the group
    GROUP: one reader per shard (XREADGROUP with BLOCK), one flusher that writes what the readers
    took in batches of about `batch` (PgUsageLedger.record_many, idempotent), then acknowledges and
    deletes them. While PostgreSQL fails, the flusher retries with backoff and the entries stay
    pending (the backlog grows, and drains when it returns); a flusher's pending entries are kept
    fresh meanwhile, so that nobody claims them. Entries pending for `claim_idle` seconds (a
    consumer that died) are claimed (XAUTOCLAIM) and written again, which writes nothing twice.

    `block` must stay below the client's socket timeout. The caller owns `client`."""

    def __init__(self, client: RedisCluster, pg: BatchLedger, layout: StreamLayout | None = None,
                 *, name: str | None = None, batch: int = 500, block: float = 0.5,
                 linger: float = 0.02, claim_idle: float = 30.0, grace: float = 5.0,
                 backoff: float = 0.2, max_backoff: float = 5.0,
                 forget_consumers_after: float = 3600.0) -> None:
        self.name = name or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._client = client
        self._pg = pg
        self._layout = layout or StreamLayout()
        self._batch = batch
        self._block_ms = int(block * 1000)
        self._linger = linger
        self._claim_idle_ms = int(claim_idle * 1000)
        self._grace = grace
        self._backoff = (backoff, max_backoff)
        self._forget_ms = int(forget_consumers_after * 1000)
        self._queue: asyncio.Queue[_Chunk] = asyncio.Queue()
        self._readers: list[asyncio.Task[None]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._redis_warnings = _Warnings("ledger consumer: Redis unavailable")
        self._pg_warnings = _Warnings("ledger consumer: PostgreSQL refused a batch; retrying")
        # For metrics.
        self.written = 0  # records new to PostgreSQL
        self.repeated = 0  # records PostgreSQL already had
        self.dead_lettered = 0
        self.last_flush_seconds = 0.0  # how long the last batch took, write and acknowledgement
        self.last_flush_at = 0.0  # unix time of the last batch written

    @property
    def failures(self) -> int:
        return self._redis_warnings.failures + self._pg_warnings.failures

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._flusher = loop.create_task(self._flush_loop(), name="ledger-flusher")
        self._readers = [loop.create_task(self._read_loop(shard), name=f"ledger-reader-{shard}")
                         for shard in range(self._layout.shards)]
        self._readers.append(loop.create_task(self._claim_loop(), name="ledger-claimer"))

    async def stop(self) -> None:
        """Stop reading; write what was taken within the grace period. Whatever is left stays
        pending, for another replica to claim."""
        for task in self._readers:
            task.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)
        self._readers = []
        if self._flusher is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), self._grace)
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
            self._flusher = None
        left = sum(len(chunk.entries) for chunk in self._drain_queue())
        if left:
            log.warning("ledger consumer: %d records left pending at shutdown", left)

    async def backlog(self) -> int:
        """Records not yet in PostgreSQL, over every shard (written ones are deleted).
        Unavailable when Redis cannot say."""
        try:
            pipe = self._client.pipeline()
            for shard in range(self._layout.shards):
                pipe.xlen(self._layout.stream(shard))
            return sum(int(n) for n in await pipe.execute())
        except Exception as exc:
            raise Unavailable(f"ledger backlog: {type(exc).__name__}: {exc}") from exc

    # -- reading -------------------------------------------------------------------------------

    async def _read_loop(self, shard: int) -> None:
        stream = self._layout.stream(shard)
        grouped = False
        delay = self._backoff[0]
        while True:
            try:
                # Before any command: redis-py's cluster client misroutes commands issued while
                # it is not initialized (MOVED, then it resets every connection).
                await self._client.initialize()
                if not grouped:
                    await self._create_group(stream)
                    grouped = True
                entries = await self._read(stream)
            except Exception as exc:  # noqa: BLE001 - a reader outlives any failure of Redis
                grouped = grouped and "NOGROUP" not in str(exc)
                self._redis_warnings.failed(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._backoff[1])
                continue
            delay = self._backoff[0]
            if entries:
                await self._submit(shard, entries)

    async def _read(self, stream: str) -> list[Any]:
        # With the node given, redis-py does not ask a node for XREADGROUP's keys (COMMAND
        # GETKEYS) on every call.
        reply = await self._client.execute_command(
            "XREADGROUP", "GROUP", GROUP, self.name, "COUNT", self._batch, "BLOCK", self._block_ms,
            "STREAMS", stream, ">", target_nodes=self._client.get_node_from_key(stream))
        return _read_entries(reply)

    async def _create_group(self, stream: str) -> None:
        # From the stream's first entry: records appended before any consumer ran are read too.
        try:
            await self._client.xgroup_create(stream, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _claim_loop(self) -> None:
        """Every claim_idle / 2 seconds, take over what dead consumers left pending."""
        while True:
            await asyncio.sleep(self._claim_idle_ms / 2000)
            for shard in range(self._layout.shards):
                try:
                    await self._client.initialize()
                    await self._claim(shard)
                except Exception as exc:  # noqa: BLE001 - the claimer outlives any failure of Redis
                    self._redis_warnings.failed(exc)

    async def _claim(self, shard: int) -> None:
        stream = self._layout.stream(shard)
        start: bytes | str = "0-0"
        while True:
            reply = await self._client.xautoclaim(stream, GROUP, self.name, self._claim_idle_ms,
                                                  start_id=start, count=self._batch)
            start, entries = reply[0], reply[1]
            if entries:
                log.info("ledger consumer: claimed %d pending records of %s", len(entries), stream)
                await self._submit(shard, entries)
            if _text(start) == "0-0":
                break
        # Consumers that died leave their names in the group: forget those with nothing pending.
        for consumer in await self._client.xinfo_consumers(stream, GROUP):
            name = _text(consumer["name"])
            if name != self.name and consumer["pending"] == 0 and consumer["idle"] > self._forget_ms:
                await self._client.xgroup_delconsumer(stream, GROUP, name)

    async def _submit(self, shard: int, entries: Sequence[Any]) -> None:
        """Hands the entries to the flusher and waits until they are done: a reader takes no
        more than one batch ahead of PostgreSQL."""
        chunk = _Chunk(shard, [_entry(entry_id, fields) for entry_id, fields in entries])
        self._queue.put_nowait(chunk)
        await asyncio.shield(chunk.done)

    def _drain_queue(self) -> list[_Chunk]:
        chunks = []
        while not self._queue.empty():
            chunks.append(self._queue.get_nowait())
            self._queue.task_done()
        for chunk in chunks:
            if not chunk.done.done():
                chunk.done.set_result(None)
        return chunks

    # -- writing -------------------------------------------------------------------------------

    async def _flush_loop(self) -> None:
        while True:
            chunks = await self._take()
            try:
                await self._flush(chunks)
            except Exception:  # a bug here must not stop every later batch; the entries stay pending
                log.exception("ledger consumer: a batch of %d chunks failed", len(chunks))
            finally:
                for chunk in chunks:
                    if not chunk.done.done():
                        chunk.done.set_result(None)
                    self._queue.task_done()

    async def _take(self) -> list[_Chunk]:
        """The next chunks: at least one, then more for up to `linger` seconds while the batch
        is not full."""
        chunks = [await self._queue.get()]
        size = len(chunks[0].entries)
        deadline = time.monotonic() + self._linger
        while size < self._batch:
            if self._queue.empty():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    chunk = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            else:
                chunk = self._queue.get_nowait()
            chunks.append(chunk)
            size += len(chunk.entries)
        return chunks

    async def _flush(self, chunks: list[_Chunk]) -> None:
        started = time.monotonic()
        entries = [entry for chunk in chunks for entry in chunk.entries]
        delay, touched = self._backoff[0], started
        while True:
            try:
                new = await self._write(entries)
                break
            except XRouterError as exc:  # Unavailable (or a bug): keep the entries, retry
                self._pg_warnings.failed(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._backoff[1])
                if time.monotonic() - touched > self._claim_idle_ms / 3000:
                    await self._touch(chunks)
                    touched = time.monotonic()
        if await self._acknowledge(chunks):
            dead = sum(entry.record is None or bool(entry.error) for entry in entries)
            self.written += new
            self.repeated += len(entries) - dead - new
            self.dead_lettered += dead
            self.last_flush_seconds = time.monotonic() - started
            self.last_flush_at = time.time()

    async def _write(self, entries: list[_Entry]) -> int:
        """The records into PostgreSQL in one transaction; when PostgreSQL refuses the batch as
        invalid, one by one, marking those it refuses. How many were new."""
        records = [entry.record for entry in entries if entry.record is not None and not entry.error]
        try:
            return await self._pg.record_many(records)
        except InvalidRequest:
            pass
        new = 0
        for entry in entries:
            if entry.record is not None and not entry.error:
                try:
                    new += await self._pg.record_many([entry.record])
                except InvalidRequest as exc:
                    entry.error = f"refused by PostgreSQL: {exc.message}"
        return new

    async def _touch(self, chunks: list[_Chunk]) -> None:
        """Resets the idle time of entries we are still retrying, so nobody claims them."""
        try:
            pipe = self._client.pipeline()
            for chunk in chunks:
                pipe.xclaim(self._layout.stream(chunk.shard), GROUP, self.name, 0,
                            [entry.entry_id for entry in chunk.entries], justid=True)
            await pipe.execute()
        except Exception as exc:  # noqa: BLE001 - retrying the batch matters more
            self._redis_warnings.failed(exc)

    async def _acknowledge(self, chunks: list[_Chunk]) -> bool:
        """Dead-letters the refused entries, then acknowledges and deletes every entry, and the
        recent records of those written: one round trip per node. False when Redis failed (the
        entries then stay pending: a claim writes them again, which adds nothing)."""
        pipe = self._client.pipeline()
        for chunk in chunks:
            stream, ids = self._layout.stream(chunk.shard), [e.entry_id for e in chunk.entries]
            recents = []
            for entry in chunk.entries:
                if entry.error or entry.record is None:
                    log.error("ledger consumer: dead-lettered entry %s of %s: %s",
                              _text(entry.entry_id), stream, entry.error)
                    pipe.xadd(self._layout.dead(chunk.shard),
                              {FIELD: entry.payload, b"error": entry.error.encode()})
                else:
                    recents.append(self._layout.recent(chunk.shard, entry.record.id))
            pipe.xack(stream, GROUP, *ids)
            pipe.xdel(stream, *ids)
            if recents:
                pipe.execute_command("UNLINK", *recents)
        try:
            await pipe.execute()
        except Exception as exc:  # noqa: BLE001 - the entries stay pending, to be claimed
            self._redis_warnings.failed(exc)
            return False
        return True
