"""The embedded mode's AuthCodeStore: OAuth codes in the SQLite file (auth_codes); a take is one
DELETE ... RETURNING in the single writer thread, so one exchange of a code wins."""

from __future__ import annotations

import sqlite3

from xrouter_router.domain.pkce import AuthGrant
from xrouter_router.storage.sql.sqlite_db import SqliteDatabase

_COLUMNS = "key_id, account_id, app_host, challenge, method, created_at, expires_at"


class SqliteAuthCodeStore:
    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def create(self, hashed: str, grant: AuthGrant) -> None:
        row = (hashed, grant.key_id, grant.account_id, grant.app_host, grant.challenge,
               grant.method, grant.created_at, grant.expires_at)
        await self._db.write(lambda conn: conn.execute(
            f"INSERT INTO auth_codes (code_hash, {_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            row))

    async def take(self, hashed: str) -> AuthGrant | None:
        def delete(conn: sqlite3.Connection) -> AuthGrant | None:
            row = conn.execute(f"DELETE FROM auth_codes WHERE code_hash = ? RETURNING {_COLUMNS}",
                               (hashed,)).fetchone()
            return None if row is None else AuthGrant(*row)
        return await self._db.write(delete)

    async def prune(self, now: float) -> int:
        def remove(conn: sqlite3.Connection) -> int:
            return conn.execute("DELETE FROM auth_codes WHERE expires_at <= ?", (now,)).rowcount
        return await self._db.write(remove)
