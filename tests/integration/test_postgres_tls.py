"""PostgreSQL with ssl=on (TCP connections must use TLS) from the Debian binaries: the router's
settings verify the server (XROUTER_DATABASE_TLS_CA: sslmode=verify-full), migrations and the
pool work through it, and a server certificate from another CA is refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.infra.certs import Authority
from tests.infra.postgres_ha import ROLE, PostgresHA
from xrouter_router.settings import RouterSettings
from xrouter_router.storage.sql.migrate import migrate
from xrouter_router.storage.sql.postgres import DatabaseUnreachable, pool


@pytest.fixture(scope="module")
def postgres_tls() -> Iterator[PostgresHA]:
    cluster = PostgresHA(tls=True).start()
    try:
        yield cluster
    finally:
        cluster.stop()


def plain_url(cluster: PostgresHA, dbname: str) -> str:
    """The operator's XROUTER_DATABASE_URL, with no TLS parameter of its own."""
    ports = ",".join(str(p) for p in cluster.ports)
    return (f"host=127.0.0.1,127.0.0.1 port={ports} dbname={dbname} user={ROLE} "
            "target_session_attrs=read-write connect_timeout=2")


def settings_url(cluster: PostgresHA, dbname: str, ca: Path) -> str:
    return RouterSettings.from_env({
        "XROUTER_MASTER_KEY": "m", "XROUTER_KEY_SECRET": "s",
        "XROUTER_DATABASE_URL": plain_url(cluster, dbname),
        "XROUTER_DATABASE_TLS_CA": str(ca)}).database_url


async def test_migrations_and_the_pool_run_over_verified_tls(postgres_tls: PostgresHA) -> None:
    postgres_tls.create_database("tls_ok")
    assert postgres_tls.ca_file is not None
    url = settings_url(postgres_tls, "tls_ok", postgres_tls.ca_file)
    assert await migrate(url, wait=10.0)
    async with pool(url, min_size=1, max_size=2) as connections, \
            connections.connection() as conn:
        row = await (await conn.execute(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")).fetchone()
    assert row == (True,)


async def test_a_server_certificate_from_another_ca_is_refused(postgres_tls: PostgresHA,
                                                              tmp_path: Path) -> None:
    stranger = tmp_path / "other-ca.crt"
    stranger.write_bytes(Authority("some-other-ca").pem)
    with pytest.raises(DatabaseUnreachable, match="certificate verify failed"):
        await migrate(settings_url(postgres_tls, "postgres", stranger), wait=0.0)


def test_a_connection_without_tls_is_refused(postgres_tls: PostgresHA) -> None:
    with pytest.raises(psycopg.OperationalError, match="no encryption"):
        psycopg.connect(plain_url(postgres_tls, "postgres") + " sslmode=disable")
