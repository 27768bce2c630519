"""The embedded mode's SessionStore: console sessions in the SQLite file (sessions), each read
with its key in one statement."""

from __future__ import annotations

import sqlite3

from xrouter_router.domain.sessions import Session
from xrouter_router.storage.sql.sessions_sql import (
    insert_session,
    session_of,
    session_query,
    session_row,
)
from xrouter_router.storage.sql.sqlite import KEY_COLUMNS, key_from_row
from xrouter_router.storage.sql.sqlite_db import SqliteDatabase

_SELECT = session_query(KEY_COLUMNS, "?")
_INSERT = insert_session("?")


class SqliteSessionStore:
    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def create(self, hashed: str, session: Session) -> None:
        row = session_row(hashed, session)
        await self._db.write(lambda conn: conn.execute(_INSERT, row))

    async def by_hash(self, hashed: str) -> Session | None:
        row = await self._db.read(lambda conn: conn.execute(_SELECT, (hashed,)).fetchone())
        return None if row is None else session_of(row, key_from_row, float)

    async def delete(self, hashed: str) -> bool:
        def remove(conn: sqlite3.Connection) -> bool:
            return conn.execute("DELETE FROM sessions WHERE token_hash = ?",
                                (hashed,)).rowcount > 0
        return await self._db.write(remove)

    async def prune(self, now: float) -> int:
        def remove(conn: sqlite3.Connection) -> int:
            return conn.execute("DELETE FROM sessions WHERE expires_at <= ?", (now,)).rowcount
        return await self._db.write(remove)
