"""The PostgreSQL SessionStore: console sessions in sessions (migration 0012), each read with its
key in one statement."""

from __future__ import annotations

from datetime import datetime

from xrouter_router.domain.sessions import Session
from xrouter_router.storage.sql.pg import KEY_COLUMNS, PgDatabase, as_time, key_from_row
from xrouter_router.storage.sql.sessions_sql import (
    insert_session,
    session_of,
    session_query,
    session_row,
)

_SELECT = session_query(KEY_COLUMNS, "%s")
_INSERT = insert_session("%s")


def _unix(value: datetime) -> float:
    return value.timestamp()


class PgSessionStore:
    def __init__(self, db: PgDatabase) -> None:
        self._db = db

    async def create(self, hashed: str, session: Session) -> None:
        *head, created, expires = session_row(hashed, session)
        await self._db.execute(_INSERT, (*head, as_time(created), as_time(expires)))

    async def by_hash(self, hashed: str) -> Session | None:
        row = await self._db.fetchone(_SELECT, (hashed,))
        return None if row is None else session_of(row, key_from_row, _unix)

    async def delete(self, hashed: str) -> bool:
        return await self._db.execute("DELETE FROM sessions WHERE token_hash = %s", (hashed,)) > 0

    async def prune(self, now: float) -> int:
        return await self._db.execute("DELETE FROM sessions WHERE expires_at <= %s",
                                      (as_time(now),))
