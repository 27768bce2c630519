"""Schema migrations: the numbered SQL files in storage/sql/migrations (NNNN_name.sql), applied in order,
each in its own transaction together with its row in schema_migrations. A session advisory lock
serializes concurrent runners (every replica may run them at start-up); applied versions are skipped.
Being transactional, a file cannot use statements such as CREATE INDEX CONCURRENTLY."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

import psycopg

from xrouter_router.storage.sql.postgres import connect

# pg_advisory_lock key shared by every runner of every release: "xrouter" in ASCII.
LOCK_KEY = 0x78726F75746572
_FILE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_CREATE_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY,
    applied_at  timestamptz NOT NULL DEFAULT now()
)"""


class MigrationError(Exception):
    """A migration file is malformed, or applying one failed (its transaction was rolled back)."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def bundled() -> list[Migration]:
    """The migrations shipped in this package, by version."""
    found: dict[int, Migration] = {}
    for entry in resources.files("xrouter_router.storage.sql").joinpath("migrations").iterdir():
        match = _FILE.match(entry.name)
        if match is None:
            continue
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"two migrations numbered {version}: {found[version].name}, {entry.name}")
        found[version] = Migration(version, entry.name, entry.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


async def migrate(conninfo: str, *, wait: float = 0.0,
                  migrations: Sequence[Migration] | None = None) -> list[int]:
    """Apply the migrations not applied yet; returns their versions (empty when up to date).

    Waits up to `wait` seconds for the database to accept a connection (DatabaseUnreachable after).
    """
    todo = bundled() if migrations is None else sorted(migrations, key=lambda m: m.version)
    conn = await connect(conninfo, wait=wait)
    # Closing the connection releases the session lock, whatever happened.
    async with conn:
        try:
            await conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
            await conn.execute(_CREATE_LEDGER)
            cursor = await conn.execute("SELECT version FROM schema_migrations")
            done = {row[0] for row in await cursor.fetchall()}
        except psycopg.Error as exc:
            raise MigrationError(f"cannot read schema_migrations: {exc}") from exc
        applied = []
        for migration in todo:
            if migration.version not in done:
                await _apply(conn, migration)
                applied.append(migration.version)
        return applied


async def _apply(conn: psycopg.AsyncConnection[tuple[object, ...]], migration: Migration) -> None:
    try:
        async with conn.transaction():
            # No parameters: psycopg sends the file as one simple query, several statements allowed.
            await conn.execute(migration.sql.encode())
            await conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (migration.version,))
    except psycopg.Error as exc:
        raise MigrationError(f"migration {migration.name} failed: {exc}") from exc
