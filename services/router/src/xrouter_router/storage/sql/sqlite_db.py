"""The embedded mode's SQLite file: how money and days are stored in it, and SqliteDatabase,
the worker thread that runs every read and the loop's connection that group-commits the writes.
Its schema and migrations are in sqlite_schema.py, the stores over it in sqlite.py."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TypeVar

from xrouter_router.domain.errors import DatabaseUnavailable, InternalError, InvalidRequest
from xrouter_router.storage.sql.sqlite_schema import SCHEMA, migrate

log = logging.getLogger(__name__)

T = TypeVar("T")
Work = Callable[[sqlite3.Connection], T]

# Money is stored as INTEGER units of 1e-8 RUB: the scale of PostgreSQL's numeric(20, 8), summed
# exactly by SQL (SUM over TEXT or REAL would go through doubles). Amounts finer than that are
# rounded half away from zero, as numeric(20, 8) rounds them. The range is +-9.2e10 RUB (int64).
_SCALE = 8
_MAX_UNITS = 2**63 - 1
_ONE = Decimal(1)
def to_units(amount: Decimal) -> int:
    """RUB as stored: an integer number of 1e-8 RUB. InvalidRequest when it cannot be stored."""
    try:
        units = int(amount.scaleb(_SCALE).quantize(_ONE, rounding=ROUND_HALF_UP))
    except (InvalidOperation, ValueError, OverflowError) as exc:
        raise InvalidRequest(f"not an amount of money: {amount}") from exc
    if abs(units) > _MAX_UNITS:
        raise InvalidRequest(f"amount out of range: {amount}")
    return units


def from_units(units: int) -> Decimal:
    return Decimal(units).scaleb(-_SCALE)


def utc_day(ts: float) -> str:
    """The UTC date of unix time `ts`, as the rollup keys it."""
    return time.strftime("%Y-%m-%d", time.gmtime(ts))


def _mapped(path: Path, exc: BaseException) -> BaseException:
    """The one place sqlite3 errors become the router's errors: the file is locked past the busy
    timeout, unreadable, full or damaged, or a bug; the client gets the generic
    DatabaseUnavailable, the log sqlite3's text. The stores' own errors pass through."""
    if isinstance(exc, sqlite3.Error):
        log.log(logging.WARNING if isinstance(exc, sqlite3.OperationalError) else logging.ERROR,
                "database %s: %s: %s", path, type(exc).__name__, exc)
        return DatabaseUnavailable()
    return exc


# Inline commits between two checkpoints, which run in the worker thread (module docstring).
CHECKPOINT_EVERY = 500
# A WAL file is written again from its start only by a write that begins when a checkpoint has
# copied all of it into the database. Under steady writes the PASSIVE checkpoint rarely ends so
# (commits keep adding frames while it copies), and the file grew without bound: 1.3 GB after
# 40 s at 16 connections, for a 44 MB database (docs/performance.md, issue 16's sixth pass).
# When a PASSIVE checkpoint leaves at least this many frames in the WAL, a RESTART checkpoint
# follows it: it waits for the commit in progress, holds new ones back while it copies the few
# frames the PASSIVE one left (the loop's writes then find the lock taken and are committed in
# the worker thread, after it), and so the next commit starts the WAL again.
RESTART_FRAMES = 8192  # 32 MiB of 4 KiB pages
# A WAL file written again from its start is cut back to this size (it stays at its largest
# otherwise).
WAL_SIZE_LIMIT = 64 * 1024 * 1024
# A batch waits for at most this many more loop iterations while each brings more writes (group
# commit under load; a lone write commits at the next iteration): a commit's cost is mostly the
# B-tree pages it dirties, about ten per generation record, and records committed together share
# most of them (docs/performance.md, issue 16's third pass).
GATHER_ITERATIONS = 4


class SqliteDatabase:
    """One SQLite file shared by the three stores (WAL, synchronous=NORMAL: a commit survives a
    process crash; the last ones may not survive a power loss). A sqlite3 connection must stay on
    one thread. Reads run in one dedicated worker thread, in arrival order. Writes are committed
    on the event loop's own thread, on a connection of its own, every write that arrived in one
    loop iteration in one transaction (group commit): in WAL mode with synchronous=NORMAL a
    commit appends to the WAL file without waiting for the disk (tens of microseconds), far less
    than the hand-off to a thread and back costs (measured in docs/performance.md, issue 16).
    What does wait for the disk stays off the loop: the checkpoints (the loop's connection never
    checkpoints; the worker thread does, every CHECKPOINT_EVERY commits), and a write that finds
    another connection holding the write lock (another process on the file), which the worker
    thread commits after waiting up to the busy timeout. The file and its schema are created on
    first use (or on open())."""

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 5.0) -> None:
        self.path = Path(path)
        self._busy_timeout = busy_timeout
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="xrouter-sqlite")
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self._pending: list[tuple[Work[Any], asyncio.Future[Any]]] = []
        self._committing = False
        self._gathered = 0  # writes pending when the batch last looked
        self._waited = 0  # loop iterations the batch has waited
        self._writer: sqlite3.Connection | None = None  # the event loop's own connection
        self._commits = 0

    async def open(self) -> None:
        """Connect and create the schema now, so that a bad path fails at start-up."""
        await self.read(lambda conn: None)

    async def read(self, work: Work[T]) -> T:
        """`work(connection)` in the worker thread."""
        if self._closed:
            raise InternalError(f"the database {self.path} is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._read, work)

    async def write(self, work: Work[T]) -> T:
        """`work(connection)` in a transaction that holds the write lock from its start (BEGIN
        IMMEDIATE): committed before this returns, rolled back (to its savepoint) when it
        raises. Writes that arrive in one loop iteration (in a few while they keep arriving:
        GATHER_ITERATIONS), or while another batch is being committed, share one transaction
        (group commit). Cancelling the caller does not stop a
        write already queued (every write here is idempotent, so the caller may simply retry)."""
        if self._closed:
            raise InternalError(f"the database {self.path} is closed")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((work, future))
        if not self._committing:
            self._start_batch()
        result: T = await future
        return result

    def _start_batch(self) -> None:
        self._committing = True
        self._gathered, self._waited = len(self._pending), 0
        asyncio.get_running_loop().call_soon(self._commit)

    def _commit(self, *, now: bool = False) -> None:
        """The writes that arrived so far, in one transaction: here on the loop's thread, or,
        before the schema is made or while another connection holds the write lock, in the
        worker thread. While the last loop iteration brought more writes, waits for the next one
        (at most GATHER_ITERATIONS)."""
        if not now and len(self._pending) > self._gathered and self._waited < GATHER_ITERATIONS:
            self._gathered, self._waited = len(self._pending), self._waited + 1
            asyncio.get_running_loop().call_soon(self._commit)
            return
        batch, self._pending = self._pending, []
        if not batch:
            self._committing = False
            return
        works = [w for w, _ in batch]
        results = self._commit_here(works) if self._conn is not None and not self._closed else None
        if results is not None:
            self._settle(batch, results)
            return
        done = asyncio.get_running_loop().run_in_executor(self._executor, self._run_batch, works)

        def finished(outcome: asyncio.Future[list[tuple[bool, Any]]]) -> None:
            try:
                results = outcome.result()
            except BaseException as exc:  # noqa: BLE001 - the whole batch failed
                results = [(False, exc)] * len(batch)
            self._settle(batch, results)

        done.add_done_callback(finished)

    def _settle(self, batch: list[tuple[Work[Any], asyncio.Future[Any]]],
                results: list[tuple[bool, Any]]) -> None:
        self._committing = False
        for (_, future), (ok, value) in zip(batch, results, strict=True):
            if future.done():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
        if self._pending and not self._closed:
            self._start_batch()

    def _commit_here(self, works: list[Work[Any]]) -> list[tuple[bool, Any]] | None:
        """The batch on the loop's connection; None, with nothing done, when another
        connection holds the write lock (this one never waits for it)."""
        try:
            conn = self._writer_connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode == sqlite3.SQLITE_BUSY:
                    return None
                raise
            results = self._transaction(conn, works)
        except sqlite3.Error as exc:
            return [(False, _mapped(self.path, exc))] * len(works)
        self._commits += 1
        if self._commits % CHECKPOINT_EVERY == 0:
            self._executor.submit(self._checkpoint)
        return results

    def _writer_connection(self) -> sqlite3.Connection:
        if self._writer is None:
            # timeout=0: BEGIN IMMEDIATE fails at once (SQLITE_BUSY) when the lock is taken.
            conn = sqlite3.connect(self.path, timeout=0, isolation_level=None)
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA wal_autocheckpoint = 0")
            conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
            self._writer = conn
        return self._writer

    def _checkpoint(self) -> None:
        """In the worker thread: a PASSIVE checkpoint, and a RESTART one when the WAL it left is
        long (RESTART_FRAMES)."""
        try:
            conn = self._connection()
            _, frames, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if frames >= RESTART_FRAMES:
                conn.execute("PRAGMA wal_checkpoint(RESTART)")
        except sqlite3.Error as exc:
            _mapped(self.path, exc)  # logged; the next one retries

    def _run_batch(self, works: list[Work[Any]]) -> list[tuple[bool, Any]]:
        """The batch in the worker thread, waiting up to the busy timeout for the lock."""
        try:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            return self._transaction(conn, works)
        except sqlite3.Error as exc:
            raise _mapped(self.path, exc) from exc

    def _transaction(self, conn: sqlite3.Connection,
                     works: list[Work[Any]]) -> list[tuple[bool, Any]]:
        """Each work in a savepoint of the transaction begun on `conn`, then COMMIT; a work's
        error rolls back that work alone, anything else the whole transaction."""
        results: list[tuple[bool, Any]] = []
        try:
            for work in works:
                conn.execute("SAVEPOINT job")
                try:
                    value = work(conn)
                except Exception as exc:  # noqa: BLE001 - this job's error, not the batch's
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    results.append((False, _mapped(self.path, exc)))
                else:
                    conn.execute("RELEASE job")
                    results.append((True, value))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return results

    async def close(self) -> None:
        """Finish the calls already submitted, then close the file. Later calls raise."""
        if self._closed:
            return
        if self._pending and self._committing:
            self._commit(now=True)  # the writes already submitted, before the connections close
        self._closed = True
        await asyncio.get_running_loop().run_in_executor(self._executor, self._disconnect)
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._executor.shutdown(wait=False)

    def _read(self, work: Work[T]) -> T:
        try:
            return work(self._connection())
        except sqlite3.Error as exc:
            raise _mapped(self.path, exc) from exc

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            # isolation_level=None: transactions are exactly the BEGIN/COMMIT written here.
            # timeout is the busy timeout: how long a write waits for another writer's lock.
            conn = sqlite3.connect(self.path, timeout=self._busy_timeout, isolation_level=None)
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.execute("PRAGMA foreign_keys = ON")
                conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
                conn.executescript(f"BEGIN IMMEDIATE; {SCHEMA} COMMIT;")
                migrate(conn)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

