"""LedgerConsumer, running in every router replica: moves the records StreamLedger appended to
the Redis Streams into PostgreSQL in idempotent batches (consumer group, claims of dead consumers'
entries, dead letters): exactly once, across router crashes and PostgreSQL outages."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ResponseError

from xrouter_router.domain.errors import InvalidRequest, Unavailable, XRouterError
from xrouter_router.domain.ledger import GenerationRecord
from xrouter_router.storage import tasks
from xrouter_router.storage.record_codec import generation_from_document
from xrouter_router.storage.redis.ledger_liveness import Liveness
from xrouter_router.storage.redis.ledger_stream import FIELD, GROUP, StreamLayout, Warnings
from xrouter_router.storage.timing import Latency

log = logging.getLogger(__name__)


class BatchLedger(Protocol):
    """What the consumer writes through (PgUsageLedger): a batch in one transaction,
    idempotently; how many records were new. InvalidRequest when a record cannot be stored."""

    async def record_many(self, records: Sequence[GenerationRecord]) -> int: ...


# Told which records PostgreSQL now holds (RedisCreditGuard.applied); raises when it failed.
Stored = Callable[[Sequence[GenerationRecord]], Awaitable[None]]


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


@dataclass(slots=True)
class _Entry:
    entry_id: bytes | str
    payload: bytes
    record: GenerationRecord | None  # None: not a record (dead-lettered as it is)
    error: str = ""


@dataclass(slots=True)
class _Chunk:
    """Entries of one shard, handed to the flusher; `done` resolves once they are acknowledged
    (True) or left pending (False: Redis failed after the write; read again or claimed)."""

    shard: int
    entries: list[_Entry]
    done: asyncio.Future[bool] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


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
    took in batches of about `batch` (PgUsageLedger.record_many, idempotent: with the records'
    charges in the cluster mode), tells `on_stored` (the credit guard: those charges are in the
    store now), then acknowledges and deletes them. A reader whose read returned under a quarter
    of `batch` waits `pause` seconds before the next: records reach PostgreSQL up to that much
    later, in fewer round trips. While PostgreSQL fails, the flusher retries with backoff and
    the entries stay pending (the backlog grows, and drains when it returns); so they do while
    `on_stored` fails (Redis: a claim later repeats both, which changes nothing). A flusher's
    pending entries are kept fresh meanwhile, so that nobody claims them. Each consumer keeps a
    key alive with a TTL of `heartbeat` seconds (ledger_liveness); the entries a consumer left
    pending are claimed (XCLAIM) by another as soon as its key expired, and written again, which
    writes nothing twice. Entries pending for `claim_idle` seconds whoever holds them (a hung
    consumer) are claimed too (XAUTOCLAIM), as a backstop. A live consumer does not wait for
    that with its own: after Redis failed under a reader (a lost reply, a failover that lost
    acknowledgements) or a batch, that reader reads the entries pending to it first.

    `block` must stay below the client's socket timeout. The caller owns `client`."""

    def __init__(self, client: RedisCluster, pg: BatchLedger, layout: StreamLayout | None = None,
                 *, name: str | None = None, batch: int = 500, block: float = 0.5,
                 linger: float = 0.05, pause: float = 0.5, claim_idle: float = 30.0,
                 heartbeat: float = 2.0, grace: float = 5.0, backoff: float = 0.2, max_backoff: float = 5.0,
                 forget_consumers_after: float = 3600.0, on_stored: Stored | None = None) -> None:
        self.name = name or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._client = client
        self._pg = pg
        self._on_stored = on_stored
        self._layout = layout or StreamLayout()
        self._batch = batch
        self._block_ms = int(block * 1000)
        self._linger = linger
        self._pause = pause
        self._claim_idle_ms = int(claim_idle * 1000)
        self._liveness = Liveness(client, self._layout, self.name, heartbeat)
        self._grace = grace
        self._backoff = (backoff, max_backoff)
        self._forget_ms = int(forget_consumers_after * 1000)
        self._queue: asyncio.Queue[_Chunk] = asyncio.Queue()
        self._readers: list[asyncio.Task[None]] = []
        self._stopping = False
        self._flusher: asyncio.Task[None] | None = None
        self._redis_warnings = Warnings("ledger consumer: Redis unavailable")
        self._pg_warnings = Warnings("ledger consumer: PostgreSQL refused a batch; retrying")
        # For metrics.
        self.written = 0  # records new to PostgreSQL
        self.repeated = 0  # records PostgreSQL already had
        self.dead_lettered = 0
        self.rescued = 0  # entries taken over from consumers whose heartbeat expired
        self.last_flush_seconds = 0.0  # how long the last batch took, write and acknowledgement
        self.last_flush_at = 0.0  # unix time of the last batch written
        self.latency = Latency()  # of the acknowledgements (one pipeline per batch)

    @property
    def failures(self) -> int:
        return self._redis_warnings.failures + self._pg_warnings.failures

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._stopping = False
        self._flusher = loop.create_task(self._flush_loop(), name="ledger-flusher")
        self._readers = [loop.create_task(self._read_loop(shard), name=f"ledger-reader-{shard}")
                         for shard in range(self._layout.shards)]
        self._readers.append(loop.create_task(self._claim_loop(), name="ledger-claimer"))
        self._readers.append(loop.create_task(self._rescue_loop(), name="ledger-rescuer"))

    async def stop(self) -> None:
        """Stop reading; write what was taken within the grace period. Whatever is left stays
        pending, for another replica to claim."""
        # A cancellation can be lost inside redis-py (see tasks.stop): the loops check a flag too.
        self._stopping = True
        await tasks.stop(self._readers)
        self._readers = []
        if self._flusher is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), self._grace)
            await tasks.stop([self._flusher])
            self._flusher = None
        left = sum(len(chunk.entries) for chunk in self._drain_queue())
        if left:
            log.warning("ledger consumer: %d records left pending at shutdown", left)
        with contextlib.suppress(Exception):  # Redis away: the key expires by itself
            await self._liveness.forget()

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
        # After a failure, this consumer's own pending entries first: a read whose reply was
        # lost, a batch written but not acknowledged, an acknowledgement a failover lost. Without
        # this they would wait for the claimer (claim_idle).
        own = False
        while not self._stopping:
            try:
                # Before any command: redis-py's cluster client misroutes commands issued while
                # it is not initialized (MOVED, then it resets every connection).
                await self._client.initialize()
                if not grouped:
                    await self._create_group(stream)
                    grouped = True
                entries = await self._read(stream, own)
            except Exception as exc:  # noqa: BLE001 - a reader outlives any failure of Redis
                grouped = grouped and "NOGROUP" not in str(exc)
                own = True
                self._redis_warnings.failed(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._backoff[1])
                continue
            delay = self._backoff[0]
            if own and not entries:
                own = False
                continue
            if entries and not await self._submit(shard, entries):
                own = True  # written, not acknowledged: Redis is failing, give it a moment
                await asyncio.sleep(self._backoff[0])
                continue
            if len(entries) < self._batch // 4 and not self._stopping:
                # A short read: wait for more, so that under moderate load a read (and a
                # batch) carries several records rather than one round trip each.
                await asyncio.sleep(self._pause)

    async def _read(self, stream: str, own: bool) -> list[Any]:
        """New entries, or (`own`) those pending to this consumer, which come back at once.
        Entries deleted while pending (their record was written) are acknowledged here."""
        # With the node given, redis-py does not ask a node for XREADGROUP's keys (COMMAND
        # GETKEYS) on every call.
        node = self._client.get_node_from_key(stream)
        reply = await self._client.execute_command(
            "XREADGROUP", "GROUP", GROUP, self.name, "COUNT", self._batch, "BLOCK", self._block_ms,
            "STREAMS", stream, "0" if own else ">", target_nodes=node)
        entries = _read_entries(reply)
        deleted = [entry_id for entry_id, fields in entries if fields is None]
        if deleted:
            await self._client.execute_command("XACK", stream, GROUP, *deleted, target_nodes=node)
            entries = [entry for entry in entries if entry[1] is not None]
        return entries

    async def _create_group(self, stream: str) -> None:
        # From the stream's first entry: records appended before any consumer ran are read too.
        try:
            await self._client.xgroup_create(stream, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _claim_loop(self) -> None:
        """Every claim_idle / 2 seconds, take over what dead consumers left pending."""
        while not self._stopping:
            await asyncio.sleep(self._claim_idle_ms / 2000)
            for shard in range(self._layout.shards):
                try:
                    await self._client.initialize()
                    await self._claim(shard)
                except Exception as exc:  # noqa: BLE001 - the claimer outlives any failure of Redis
                    self._redis_warnings.failed(exc)

    async def _rescue_loop(self) -> None:
        """Four times per heartbeat TTL: renew this consumer's key, and take over the entries
        of consumers whose key expired."""
        every = self._liveness.ttl_ms / 4000
        shards = range(self._layout.shards)
        while not self._stopping:
            try:
                await self._client.initialize()
                await self._liveness.beat()
                for shard, name in await self._liveness.dead_with_pending(shards):
                    await self._rescue(shard, name)
            except Exception as exc:  # noqa: BLE001 - the rescuer outlives any failure of Redis
                self._redis_warnings.failed(exc)
            await asyncio.sleep(every)

    async def _rescue(self, shard: int, name: str) -> None:
        """Claims what `name` holds on the shard's stream, a batch at a time. Entries idle for
        less than `claim_min_idle_ms` are left (another rescuer took them a moment ago)."""
        stream = self._layout.stream(shard)
        while not self._stopping:
            pending = await self._client.xpending_range(stream, GROUP, min="-", max="+",
                                                        count=self._batch, consumername=name)
            if not pending:
                return
            ids: list[Any] = [p["message_id"] for p in pending]
            claimed: list[Any] = await self._client.xclaim(stream, GROUP, self.name,
                                                           self._liveness.claim_min_idle_ms, ids)
            entries = [(entry_id, fields) for entry_id, fields in claimed if fields is not None]
            if not claimed:
                return
            self.rescued += len(entries)
            log.info("ledger consumer: took over %d pending records of %s from %s",
                     len(entries), stream, name)
            if entries:
                await self._submit(shard, entries)

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

    async def _submit(self, shard: int, entries: Sequence[Any]) -> bool:
        """Hands the entries to the flusher and waits until they are done: a reader takes no
        more than one batch ahead of PostgreSQL. Whether they were acknowledged."""
        chunk = _Chunk(shard, [_entry(entry_id, fields) for entry_id, fields in entries])
        self._queue.put_nowait(chunk)
        return await asyncio.shield(chunk.done)

    def _drain_queue(self) -> list[_Chunk]:
        chunks = []
        while not self._queue.empty():
            chunks.append(self._queue.get_nowait())
            self._queue.task_done()
        for chunk in chunks:
            if not chunk.done.done():
                chunk.done.set_result(False)
        return chunks

    # -- writing -------------------------------------------------------------------------------

    async def _flush_loop(self) -> None:
        while True:
            chunks = await self._take()
            acknowledged = False
            try:
                acknowledged = await self._flush(chunks)
            except Exception:  # a bug here must not stop every later batch; the entries stay pending
                log.exception("ledger consumer: a batch of %d chunks failed", len(chunks))
            finally:
                for chunk in chunks:
                    if not chunk.done.done():
                        chunk.done.set_result(acknowledged)
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

    async def _flush(self, chunks: list[_Chunk]) -> bool:
        """Whether the entries were acknowledged (False: they stay pending)."""
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
        if self._on_stored is not None:
            try:
                await self._on_stored([entry.record for entry in entries
                                       if entry.record is not None and not entry.error])
            except Exception as exc:  # noqa: BLE001 - left pending: a claim repeats the batch
                self._redis_warnings.failed(exc)
                return False
        if not await self._acknowledge(chunks):
            return False
        dead = sum(entry.record is None or bool(entry.error) for entry in entries)
        self.written += new
        self.repeated += len(entries) - dead - new
        self.dead_lettered += dead
        self.last_flush_seconds = time.monotonic() - started
        self.last_flush_at = time.time()
        return True

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
        started = time.perf_counter()
        try:
            await pipe.execute()
        except Exception as exc:  # noqa: BLE001 - the entries stay pending, to be claimed
            self._redis_warnings.failed(exc)
            return False
        finally:
            self.latency.observe(time.perf_counter() - started)
        return True
