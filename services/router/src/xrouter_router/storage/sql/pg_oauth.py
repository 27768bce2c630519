"""The PostgreSQL AuthCodeStore: OAuth codes in auth_codes (migration 0012); a take is one
DELETE ... RETURNING, so of concurrent exchanges of a code exactly one gets its row."""

from __future__ import annotations

from xrouter_router.domain.pkce import AuthGrant
from xrouter_router.storage.sql.pg import PgDatabase, as_time

_COLUMNS = "key_id, account_id, app_host, challenge, method, created_at, expires_at"


class PgAuthCodeStore:
    def __init__(self, db: PgDatabase) -> None:
        self._db = db

    async def create(self, hashed: str, grant: AuthGrant) -> None:
        await self._db.execute(
            f"INSERT INTO auth_codes (code_hash, {_COLUMNS})"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (hashed, grant.key_id, grant.account_id, grant.app_host, grant.challenge,
             grant.method, as_time(grant.created_at), as_time(grant.expires_at)))

    async def take(self, hashed: str) -> AuthGrant | None:
        row = await self._db.fetchone(
            f"DELETE FROM auth_codes WHERE code_hash = %s RETURNING {_COLUMNS}", (hashed,))
        if row is None:
            return None
        key_id, account_id, app_host, challenge, method, created, expires = row
        return AuthGrant(key_id, account_id, app_host, challenge, method, created.timestamp(),
                         expires.timestamp())

    async def prune(self, now: float) -> int:
        return await self._db.execute("DELETE FROM auth_codes WHERE expires_at <= %s",
                                      (as_time(now),))
