"""The embedded mode's SQLite file: its schema (the tables of the PostgreSQL one), how money and
days are stored in it, and SqliteDatabase, the worker thread that runs every call and group-commits
the writes. The stores over it are in sqlite.py."""

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

log = logging.getLogger(__name__)

T = TypeVar("T")
Work = Callable[[sqlite3.Connection], T]

# Money is stored as INTEGER units of 1e-8 RUB: the scale of PostgreSQL's numeric(20, 8), summed
# exactly by SQL (SUM over TEXT or REAL would go through doubles). Amounts finer than that are
# rounded half away from zero, as numeric(20, 8) rounds them. The range is +-9.2e10 RUB (int64).
_SCALE = 8
_MAX_UNITS = 2**63 - 1
_ONE = Decimal(1)
# PRAGMA user_version of the files this code writes; files of an older version are migrated
# by the steps of _MIGRATIONS (from version N to N + 1), each in its own transaction.
SCHEMA_VERSION = 10
# The personal-data guard's policy and scope columns of keys and plans ("": not set).
_PII_COLUMNS = ("pii_guard TEXT NOT NULL DEFAULT '' CHECK (pii_guard IN ('', 'off', 'mask', 'block'))",
                "pii_scope TEXT NOT NULL DEFAULT '' CHECK (pii_scope IN ('', 'foreign', 'always'))")
_PLANS = """
CREATE TABLE IF NOT EXISTS account_plans (
    account_id TEXT PRIMARY KEY REFERENCES accounts (id),
    tier TEXT NOT NULL CHECK (tier IN ('free', 'pro', 'max')),
    rpm INTEGER, rpd INTEGER, tpm INTEGER, concurrent INTEGER,
    updated_at REAL NOT NULL,
    residency TEXT NOT NULL DEFAULT '',
    """ + ",\n    ".join(_PII_COLUMNS) + """,
    outage_allowance TEXT
) STRICT;
"""
_USAGE_BUCKETS = ("cached_tokens", "cache_write_tokens", "reasoning_tokens")
_MIGRATIONS = {
    # 2: the cache write bucket of generations, and every bucket in the usage rollup.
    1: ["ALTER TABLE generations ADD COLUMN cache_write_tokens INTEGER NOT NULL DEFAULT 0",
        *(f"ALTER TABLE usage_daily ADD COLUMN {c} INTEGER NOT NULL DEFAULT 0"
          for c in _USAGE_BUCKETS)],
    # 3: account plans (as PostgreSQL's 0005_account_plans.sql), made by SCHEMA's CREATE TABLE IF
    # NOT EXISTS on every file, so the step has no statement of its own.
    2: [],
    # 4: the IP allow-list of keys (PostgreSQL's 0006_key_allowed_ips.sql); keys that exist get
    # an empty one (any address).
    3: ["ALTER TABLE api_keys ADD COLUMN allowed_ips TEXT NOT NULL DEFAULT '[]'"],
    # 5: residency (PostgreSQL's 0007_residency.sql): keys' and plans' policies (none) and the
    # jurisdiction of generations ("" unknown). account_plans is rebuilt, not altered: a file
    # older than version 3 got SCHEMA's table, which has the column already.
    4: ["ALTER TABLE api_keys ADD COLUMN residency TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE generations ADD COLUMN jurisdiction TEXT NOT NULL DEFAULT ''",
        _PLANS.replace("IF NOT EXISTS account_plans", "account_plans_v5"),
        "INSERT INTO account_plans_v5 (account_id, tier, rpm, rpd, tpm, concurrent, updated_at)"
        " SELECT account_id, tier, rpm, rpd, tpm, concurrent, updated_at FROM account_plans",
        "DROP TABLE account_plans",
        "ALTER TABLE account_plans_v5 RENAME TO account_plans"],
    # 6: the personal-data guard (PostgreSQL's 0008_pii_guard.sql): keys' and plans' policy and
    # scope (none). account_plans is rebuilt again, for the same reason as in step 5.
    5: [*(f"ALTER TABLE api_keys ADD COLUMN {c}" for c in _PII_COLUMNS),
        _PLANS.replace("IF NOT EXISTS account_plans", "account_plans_v6"),
        "INSERT INTO account_plans_v6 (account_id, tier, rpm, rpd, tpm, concurrent, updated_at,"
        " residency) SELECT account_id, tier, rpm, rpd, tpm, concurrent, updated_at, residency"
        " FROM account_plans",
        "DROP TABLE account_plans",
        "ALTER TABLE account_plans_v6 RENAME TO account_plans"],
    # 7: currencies (PostgreSQL's 0009_fx_rates.sql): each generation's price currency, rate, its
    # date and the cost in that currency (earlier ones were all in RUB); fx_rates comes from
    # SCHEMA.
    6: ["ALTER TABLE generations ADD COLUMN price_currency TEXT NOT NULL DEFAULT 'RUB'",
        "ALTER TABLE generations ADD COLUMN fx_rate TEXT",
        "ALTER TABLE generations ADD COLUMN cost_original INTEGER",
        "ALTER TABLE generations ADD COLUMN fx_date TEXT"],
    # 8: VAT (PostgreSQL's 0010_vat.sql). cost stays the gross debited; generations recorded
    # before had no VAT, so their net is their cost, their VAT and rate 0.
    7: ["ALTER TABLE generations ADD COLUMN cost_net INTEGER NOT NULL DEFAULT 0",
        "UPDATE generations SET cost_net = cost",
        "ALTER TABLE generations ADD COLUMN vat INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE generations ADD COLUMN vat_rate INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE usage_daily ADD COLUMN vat INTEGER NOT NULL DEFAULT 0"],
    # 9: the outage allowance per plan (PostgreSQL's 0011_outage_allowance.sql), as exact
    # decimal text (NULL: the global setting). account_plans is rebuilt, for the same reason as
    # in step 5.
    8: [_PLANS.replace("IF NOT EXISTS account_plans", "account_plans_v9"),
        "INSERT INTO account_plans_v9 (account_id, tier, rpm, rpd, tpm, concurrent, updated_at,"
        " residency, pii_guard, pii_scope) SELECT account_id, tier, rpm, rpd, tpm, concurrent,"
        " updated_at, residency, pii_guard, pii_scope FROM account_plans",
        "DROP TABLE account_plans",
        "ALTER TABLE account_plans_v9 RENAME TO account_plans"],
    # 10: console sessions and OAuth codes (PostgreSQL's 0012_sessions.sql), made by SCHEMA's
    # CREATE TABLE IF NOT EXISTS on every file, so the step has no statement of its own.
    9: [],
}

# Mirrors 0001_initial.sql (timestamps as unix seconds, booleans as 0/1, text[] and jsonb as JSON
# text). generations.id is a plain primary key: unpartitioned, it needs no generation_ids table.
# Usage entries carry the key they were charged through; key_spent caches each key's sum of them
# (as accounts.balance caches the account's), so spent() reads one row.
SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL DEFAULT '',
    balance INTEGER NOT NULL DEFAULT 0,  -- the sum of the account's credit_entries.amount
    created_at REAL NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    key_hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    label TEXT NOT NULL DEFAULT '',
    tier TEXT NOT NULL,
    expires_at REAL,
    disabled INTEGER NOT NULL DEFAULT 0,
    allowed_models TEXT NOT NULL DEFAULT '[]',
    credit_limit INTEGER,
    rpm INTEGER, rpd INTEGER, tpm INTEGER, concurrent INTEGER,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    allowed_ips TEXT NOT NULL DEFAULT '[]',
    residency TEXT NOT NULL DEFAULT '',
    """ + ",\n    ".join(_PII_COLUMNS) + """
) STRICT;
CREATE INDEX IF NOT EXISTS api_keys_account_id_idx ON api_keys (account_id);
CREATE TABLE IF NOT EXISTS credit_entries (
    id INTEGER PRIMARY KEY,
    created_at REAL NOT NULL,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    amount INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('top_up', 'usage', 'adjustment')),
    generation_id TEXT UNIQUE,
    key_id TEXT,
    reference TEXT,
    CHECK (kind <> 'usage' OR generation_id IS NOT NULL)
) STRICT;
CREATE INDEX IF NOT EXISTS credit_entries_account_idx ON credit_entries (account_id, created_at);
CREATE TABLE IF NOT EXISTS key_spent (
    key_id TEXT PRIMARY KEY,
    spent INTEGER NOT NULL  -- minus the sum of credit_entries.amount of the key's usage entries
) STRICT;
-- generations: fx_rate is RUB per unit of price_currency (a decimal string), NULL for RUB;
-- cost_original the cost in price_currency (units of 1e-8), NULL for RUB; fx_date the Moscow date
-- from which fx_rate was in force (YYYY-MM-DD), NULL for a fixed rate; cost (gross) = cost_net +
-- vat; vat_rate the fraction (0.22) in units of 1e-8, as money. No comments inside the table:
-- SQLite's DROP COLUMN (the upgrade tests use it) rewrites its text and a comment can swallow
-- the comma or parenthesis that follows.
CREATE TABLE IF NOT EXISTS generations (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    key_id TEXT NOT NULL, account_id TEXT NOT NULL, model TEXT NOT NULL, provider TEXT NOT NULL,
    streamed INTEGER NOT NULL,
    prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
    cached_tokens INTEGER NOT NULL, reasoning_tokens INTEGER NOT NULL,
    counts_native INTEGER NOT NULL,
    cost INTEGER NOT NULL,
    latency_ms INTEGER NOT NULL, generation_ms INTEGER NOT NULL,
    finish_reason TEXT NOT NULL, status TEXT NOT NULL,
    attempts TEXT NOT NULL,
    cache_write_tokens INTEGER NOT NULL DEFAULT 0,
    jurisdiction TEXT NOT NULL DEFAULT '',
    price_currency TEXT NOT NULL DEFAULT 'RUB',
    fx_rate TEXT,
    cost_original INTEGER,
    fx_date TEXT,
    cost_net INTEGER NOT NULL DEFAULT 0,
    vat INTEGER NOT NULL DEFAULT 0,
    vat_rate INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX IF NOT EXISTS generations_key_idx ON generations (key_id, created_at);
CREATE INDEX IF NOT EXISTS generations_account_idx ON generations (account_id, created_at);
-- Every account's latest generations (PostgreSQL's 0013); made on every open, so files of any
-- version get it without a step of their own.
CREATE INDEX IF NOT EXISTS generations_created_idx ON generations (created_at);
CREATE TABLE IF NOT EXISTS fx_rates (  -- the Central Bank's rates fetched (domain/fx.py)
    currency TEXT NOT NULL,
    effective TEXT NOT NULL,  -- the Moscow date from which it is in force, YYYY-MM-DD
    rate TEXT NOT NULL,  -- RUB per one unit, a decimal string
    source TEXT NOT NULL,
    fetched_at REAL NOT NULL,
    PRIMARY KEY (currency, effective)
) STRICT;
CREATE TABLE IF NOT EXISTS usage_daily (
    day TEXT NOT NULL,  -- the UTC date, YYYY-MM-DD
    account_id TEXT NOT NULL, key_id TEXT NOT NULL, model TEXT NOT NULL, provider TEXT NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    cost INTEGER NOT NULL DEFAULT 0,
    cached_tokens INTEGER NOT NULL DEFAULT 0,
    cache_write_tokens INTEGER NOT NULL DEFAULT 0,
    reasoning_tokens INTEGER NOT NULL DEFAULT 0,
    vat INTEGER NOT NULL DEFAULT 0,  -- the part of cost that is VAT
    PRIMARY KEY (day, account_id, key_id, model, provider)
) STRICT;
CREATE INDEX IF NOT EXISTS usage_daily_account_idx ON usage_daily (account_id, day);
CREATE INDEX IF NOT EXISTS usage_daily_key_idx ON usage_daily (key_id, day);
-- Console sessions (domain/sessions.py; key_id NULL: the master key) and OAuth PKCE codes
-- (domain/oauth.py; challenge '' when the app sent none), by the keyed hash of the token or code.
-- Both end with their key: deleted (the foreign keys) or disabled (the trigger; enabling the key
-- again revives none of them).
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY,
    key_id TEXT REFERENCES api_keys (id) ON DELETE CASCADE,
    account_id TEXT NOT NULL DEFAULT '',
    role TEXT NOT NULL CHECK (role IN ('master', 'management', 'key')),
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    CHECK ((role = 'master') = (key_id IS NULL))
) STRICT;
CREATE INDEX IF NOT EXISTS sessions_expires_at_idx ON sessions (expires_at);
CREATE INDEX IF NOT EXISTS sessions_key_id_idx ON sessions (key_id);
CREATE TABLE IF NOT EXISTS auth_codes (
    code_hash TEXT PRIMARY KEY,
    key_id TEXT NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    account_id TEXT NOT NULL,
    app_host TEXT NOT NULL,
    challenge TEXT NOT NULL,
    method TEXT NOT NULL CHECK (method IN ('', 'S256', 'plain')),
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS auth_codes_expires_at_idx ON auth_codes (expires_at);
CREATE INDEX IF NOT EXISTS auth_codes_key_id_idx ON auth_codes (key_id);
CREATE TRIGGER IF NOT EXISTS api_keys_disabled_ends_sessions AFTER UPDATE OF disabled ON api_keys
WHEN NEW.disabled BEGIN
    DELETE FROM sessions WHERE key_id = NEW.id;
    DELETE FROM auth_codes WHERE key_id = NEW.id;
END;
""" + _PLANS
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
            self._writer = conn
        return self._writer

    def _checkpoint(self) -> None:
        try:
            self._connection().execute("PRAGMA wal_checkpoint(PASSIVE)")
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
                conn.executescript(f"BEGIN IMMEDIATE; {SCHEMA} COMMIT;")
                _migrate(conn)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _migrate(conn: sqlite3.Connection) -> None:
    """Stamp a new file with SCHEMA_VERSION; migrate an older one up to it."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version == 0:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        return
    if version > SCHEMA_VERSION:
        raise InternalError(f"the database has schema version {version}; this XRouter knows "
                            f"{SCHEMA_VERSION}")
    for step in range(version, SCHEMA_VERSION):
        statements = "".join(f"{statement}; " for statement in _MIGRATIONS[step])
        conn.executescript(f"BEGIN IMMEDIATE; {statements}PRAGMA user_version = {step + 1}; COMMIT;")
