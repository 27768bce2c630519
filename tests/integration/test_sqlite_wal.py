"""The embedded SQLite file's write-ahead log stays bounded: a PASSIVE checkpoint that could not
copy the whole WAL is followed by a RESTART one, so the next commit writes the WAL from its start
and cuts the file back (storage/sql/sqlite_db.py, RESTART_FRAMES). Under steady commits a
PASSIVE checkpoint never copies it all (commits add frames while it copies), and the file grew
past a gigabyte; here a reader on an older snapshot holds the PASSIVE checkpoint back the same
way, so the order of events is the test's, not the machine's."""

from __future__ import annotations

import asyncio
import sqlite3
import struct
import threading
from pathlib import Path

import pytest

from xrouter_router.storage.sql import sqlite_db as sqlite_db_module
from xrouter_router.storage.sql.sqlite_db import SqliteDatabase

pytestmark = pytest.mark.asyncio

ROW = "x" * 8192  # two pages and more of WAL per commit


def wal_generation(path: Path) -> int:
    """The WAL header's checkpoint sequence number: it grows by one each time the WAL is
    written again from its start."""
    return int(struct.unpack(">I", Path(f"{path}-wal").read_bytes()[12:16])[0])


def wal_size(path: Path) -> int:
    return Path(f"{path}-wal").stat().st_size


async def insert(db: SqliteDatabase, commits: int) -> None:
    for _ in range(commits):  # one commit each: every write waits for the one before
        await db.write(lambda conn: conn.execute("INSERT INTO t VALUES (?)", (ROW,)))


async def worker_statements(db: SqliteDatabase,
                            restarting: threading.Event | None = None) -> list[str]:
    """The statements the worker thread's connection runs from now on; `restarting` is set
    when a RESTART checkpoint begins."""
    seen: list[str] = []

    def trace(sql: str) -> None:
        seen.append(sql)
        if restarting is not None and "RESTART" in sql:
            restarting.set()
    await db.read(lambda conn: conn.set_trace_callback(trace))
    return seen


async def test_a_wal_the_passive_checkpoint_could_not_copy_is_restarted_and_cut(
        sqlite_db: SqliteDatabase, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_db_module, "CHECKPOINT_EVERY", 20)
    monkeypatch.setattr(sqlite_db_module, "RESTART_FRAMES", 16)
    monkeypatch.setattr(sqlite_db_module, "WAL_SIZE_LIMIT", 32 * 1024)
    await sqlite_db.open()  # so that every write here commits on the loop's connection
    await sqlite_db.write(lambda conn: conn.execute("CREATE TABLE t (v TEXT)"))  # commit 1
    restarting = threading.Event()
    seen = await worker_statements(sqlite_db, restarting)
    await insert(sqlite_db, 8)
    generation = wal_generation(sqlite_db.path)
    # A reader on this snapshot: the checkpoint may copy no frame written after it.
    reader = sqlite3.connect(sqlite_db.path, isolation_level=None)
    reader.execute("BEGIN")
    assert reader.execute("SELECT count(*) FROM t").fetchone()[0] == 8
    await insert(sqlite_db, 11)  # the 20th commit queues the checkpoint
    # The PASSIVE checkpoint stopped at the reader's snapshot and left more than RESTART_FRAMES
    # frames: the RESTART one begins, and waits (busy timeout) for the reader to leave.
    assert await asyncio.to_thread(restarting.wait, 10.0)
    reader.execute("COMMIT")
    reader.close()
    await sqlite_db.read(lambda conn: conn.set_trace_callback(None))  # after the checkpoint
    assert [s for s in seen if "wal_checkpoint" in s] == [
        "PRAGMA wal_checkpoint(PASSIVE)", "PRAGMA wal_checkpoint(RESTART)"]
    assert wal_size(sqlite_db.path) > 32 * 1024  # 19 commits of 8 KB rows
    await insert(sqlite_db, 1)  # written from the WAL's start, and the file cut back
    assert wal_generation(sqlite_db.path) == generation + 1
    assert wal_size(sqlite_db.path) <= 32 * 1024
    assert await sqlite_db.read(
        lambda conn: conn.execute("SELECT count(*) FROM t").fetchone()[0]) == 20


async def test_a_short_wal_gets_no_restart_checkpoint(
        sqlite_db: SqliteDatabase, monkeypatch: pytest.MonkeyPatch) -> None:
    # A RESTART checkpoint holds the writes back while it runs: only a long WAL is worth it.
    monkeypatch.setattr(sqlite_db_module, "CHECKPOINT_EVERY", 5)
    monkeypatch.setattr(sqlite_db_module, "RESTART_FRAMES", 10_000)
    await sqlite_db.open()  # so that every write here commits on the loop's connection
    await sqlite_db.write(lambda conn: conn.execute("CREATE TABLE t (v TEXT)"))  # commit 1
    seen = await worker_statements(sqlite_db)
    await insert(sqlite_db, 20)
    await sqlite_db.read(lambda conn: conn.set_trace_callback(None))
    assert [s for s in seen if "wal_checkpoint" in s] == ["PRAGMA wal_checkpoint(PASSIVE)"] * 4


async def test_both_connections_cut_a_restarted_wal_back(sqlite_db: SqliteDatabase) -> None:
    def limit(conn: sqlite3.Connection) -> int:
        return int(conn.execute("PRAGMA journal_size_limit").fetchone()[0])
    assert await sqlite_db.read(limit) == sqlite_db_module.WAL_SIZE_LIMIT
    assert await sqlite_db.write(limit) == sqlite_db_module.WAL_SIZE_LIMIT
