"""PostgreSQL connections for an HA pair: the pool the router's stores share, and a single connection
that waits for the database to come up (for `xrouter` commands run next to a starting cluster).

Failover works through libpq rather than a proxy: the conninfo names every node
("host=a,b port=5432,5432 ... target_session_attrs=read-write"), so each new connection lands on
whichever node accepts writes now. Connections to a primary that went away are broken; the pool
checks each one before handing it out and replaces the broken ones (psycopg_pool backs off 1 s, 2 s,
... between failed checks, so the first writes after a promotion wait 1-3 s). A statement in
flight during the failover still fails (psycopg.OperationalError, or psycopg_pool.PoolTimeout while
no node accepts writes): writes are idempotent (keyed by generation id) so the caller can retry."""

from __future__ import annotations

import asyncio
import time

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import AsyncConnectionPool

# Applied unless the conninfo says otherwise. Without them a primary that vanished from the network
# (rather than refusing connections) would hold a connection attempt or a query for minutes.
CONNECTION_DEFAULTS = {
    "connect_timeout": "5",       # per host: a silent node does not stall the next one
    "keepalives": "1",
    "keepalives_idle": "10",
    "keepalives_interval": "5",
    "keepalives_count": "3",
    "tcp_user_timeout": "15000",  # ms: unacknowledged writes to a dead peer
    "application_name": "xrouter",
}


class DatabaseUnreachable(Exception):
    """No node accepted a (read-write) connection before the wait ran out, or the conninfo is invalid."""


def with_defaults(conninfo: str) -> str:
    """The conninfo with CONNECTION_DEFAULTS filled in where it sets nothing."""
    given = conninfo_to_dict(conninfo)
    return make_conninfo(conninfo, **{
        key: value for key, value in CONNECTION_DEFAULTS.items() if key not in given})


def with_tls(conninfo: str, *, ca: str, cert: str = "", key: str = "") -> str:
    """The conninfo verifying the server against `ca` (sslmode=verify-full: the certificate and
    the host name), with a client certificate if given. Parameters the conninfo sets win."""
    given = conninfo_to_dict(conninfo)
    tls = {"sslmode": "verify-full", "sslrootcert": ca, "sslcert": cert, "sslkey": key}
    return make_conninfo(conninfo, **{k: v for k, v in tls.items() if v and k not in given})


def pool(conninfo: str, *, min_size: int, max_size: int, timeout: float = 5.0,
         reconnect_timeout: float = 300.0) -> AsyncConnectionPool:
    """An unopened pool: `async with pool(...) as p` (or `await p.open(wait=True)`) opens it.

    `timeout` bounds how long a caller waits for a connection; `reconnect_timeout` how long the pool
    keeps retrying a connection it failed to create before reporting it and trying afresh later. For
    an HA pair pass a multi-host conninfo with target_session_attrs=read-write (see the module doc).
    """
    return AsyncConnectionPool(
        with_defaults(conninfo), min_size=min_size, max_size=max_size, open=False, name="xrouter",
        timeout=timeout, reconnect_timeout=reconnect_timeout,
        check=AsyncConnectionPool.check_connection)


async def connect(conninfo: str, *, wait: float) -> psycopg.AsyncConnection[tuple[object, ...]]:
    """One autocommit connection, retried until a node accepts it or `wait` seconds have passed."""
    deadline = time.monotonic() + wait
    try:
        conninfo = with_defaults(conninfo)
    except psycopg.ProgrammingError as exc:
        raise DatabaseUnreachable(f"invalid database URL: {exc}") from exc
    while True:
        try:
            async with asyncio.timeout(max(1.0, deadline - time.monotonic())):
                return await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
        except (psycopg.OperationalError, TimeoutError) as exc:
            if time.monotonic() >= deadline:
                reason = " ".join(line.strip() for line in str(exc).splitlines()) or "connection timed out"
                raise DatabaseUnreachable(f"no database after {wait:g}s: {reason}") from exc
        await asyncio.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
