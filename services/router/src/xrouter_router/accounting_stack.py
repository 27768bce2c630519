"""The stores, limiter, credit guard and ledger the router runs with, chosen by its settings
(part of the composition root, kept apart from bootstrap.py for size):

- embedded (no XROUTER_DATABASE_URL): SQLite in the data directory, in-process limits;
- XROUTER_DATABASE_URL: PostgreSQL (HA multi-host conninfo) for keys, accounts and the ledger;
- plus XROUTER_REDIS_URL: Redis Cluster limits and credit reservations shared by every replica,
  key revocations broadcast to every replica, and the ledger made durable in Redis Streams
  before the answer completes, drained into PostgreSQL by a consumer group, each record with
  its charge."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from xrouter_router.domain.ports import (
    AccountStore,
    CreditGuard,
    KeyStore,
    Limiter,
    Meter,
    PlanStore,
    UsageLedger,
)
from xrouter_router.settings import RouterSettings
from xrouter_router.storage.memory import InProcessCreditGuard, InProcessLimiter, InProcessMeter


@dataclass(slots=True)
class AccountingStack:
    keys: KeyStore
    accounts: AccountStore
    plans: PlanStore
    ledger: UsageLedger
    limiter: Limiter
    guard: CreditGuard
    # The admission port's stores: limits and credits in one call at each end of a generation.
    meter: Meter
    # A top-up committed: the guard reads the account's balance again (every replica).
    balance_changed: Callable[[str], Awaitable[None]]
    # Tells the other replicas a key changed (None: this process is alone).
    announce: Callable[[str], Awaitable[Any]] | None = None
    # Wired once the authenticator exists: on_key_changed(forget).
    listen: Callable[[Callable[[str], None]], None] | None = None
    starts: list[Callable[[], Awaitable[Any]]] = field(default_factory=list)
    stops: list[Callable[[], Awaitable[Any]]] = field(default_factory=list)
    # For metrics: the ledger's backlog in Redis (None in the embedded mode).
    backlog: Callable[[], Awaitable[int]] | None = None
    # More components whose state the metrics read (ledger consumer, database).
    observed: dict[str, object] = field(default_factory=dict)


def build_accounting(settings: RouterSettings) -> AccountingStack:
    if not settings.database_url:
        return _embedded(settings)
    return _postgres(settings)


def _embedded(settings: RouterSettings) -> AccountingStack:
    from xrouter_router.storage.sql.sqlite import (
        SqliteAccountStore,
        SqliteKeyStore,
        SqliteUsageLedger,
    )
    from xrouter_router.storage.sql.sqlite_db import SqliteDatabase
    from xrouter_router.storage.sql.sqlite_plans import SqlitePlanStore

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    database = SqliteDatabase(settings.data_dir / "xrouter.sqlite3")
    accounts = SqliteAccountStore(database)
    guard, limiter = InProcessCreditGuard(accounts), InProcessLimiter()
    return AccountingStack(SqliteKeyStore(database), accounts, SqlitePlanStore(database),
                           SqliteUsageLedger(database),
                           limiter, guard, InProcessMeter(limiter, guard), guard.forget,
                           starts=[database.open], stops=[database.close])


def _postgres(settings: RouterSettings) -> AccountingStack:
    from xrouter_router.storage.sql.pg import PgAccountStore, PgDatabase, PgKeyStore, PgUsageLedger
    from xrouter_router.storage.sql.pg_plans import PgPlanStore
    from xrouter_router.storage.sql.postgres import pool

    connections = pool(settings.database_url, min_size=2, max_size=settings.database_pool_size)
    database = PgDatabase(connections)
    keys, accounts, pg_ledger = PgKeyStore(database), PgAccountStore(database), PgUsageLedger(database)
    plans = PgPlanStore(database)

    async def open_pool() -> None:
        await connections.open(wait=False)

    if not settings.redis_url:
        guard, in_process = InProcessCreditGuard(accounts), InProcessLimiter()
        return AccountingStack(keys, accounts, plans, pg_ledger, in_process, guard,
                               InProcessMeter(in_process, guard), guard.forget,
                               starts=[open_pool], stops=[database.close, connections.close],
                               observed={"database": database})
    from xrouter_router.storage.redis.credits import RedisCreditGuard
    from xrouter_router.storage.redis.lane import Lane
    from xrouter_router.storage.redis.ledger_consumer import LedgerConsumer
    from xrouter_router.storage.redis.ledger_stream import StreamLedger
    from xrouter_router.storage.redis.limits import RedisLimiter
    from xrouter_router.storage.redis.meter import RedisMeter
    from xrouter_router.storage.redis.revocations import KeyRevocations
    from xrouter_router.storage.redis.stats import cluster_client

    # One client per component: each bounds its own commands in flight, and redis-py's cluster
    # client does not queue beyond its per-node pool.
    clients = {name: cluster_client(settings.redis_url)
               for name in ("credits", "ledger", "consumer", "revocations")}
    revocations = KeyRevocations(clients["revocations"])
    # The request path's scripts and appends skip redis-py's per-command work (docs/performance.md).
    lanes = [Lane(clients[name], enabled=settings.redis_lane) for name in ("credits", "ledger")]
    shared = RedisCreditGuard(clients["credits"], accounts, fail_open=settings.credits_fail_open,
                              lane=lanes[0], timeout=settings.redis_timeout)
    # Charges travel with the records: the consumer writes both in one transaction, then tells
    # the credit guard (no database call on the request path).
    charging = PgUsageLedger(database, charge=True)
    consumer = LedgerConsumer(clients["consumer"], charging, on_stored=shared.applied)

    async def initialize_clients() -> None:
        # Slot discovery at start, not inside the first requests: lazily, under a burst it outlasts
        # the limiter's per-call timeout, and redis-py 8.1 misroutes commands sent meanwhile.
        # Redis down at start is not fatal: each component's own policy covers it.
        try:
            async with asyncio.timeout(5.0):
                await asyncio.gather(*(client.initialize() for client in clients.values()))
        except Exception as exc:  # noqa: BLE001 - any failure here only means "not yet"
            logging.getLogger(__name__).warning(
                "Redis Cluster not reachable at start (%s); its components degrade until it is",
                type(exc).__name__)

    async def close_clients() -> None:
        for lane in lanes:
            await lane.close()
        for client in clients.values():
            await client.aclose()

    ledger = StreamLedger(clients["ledger"], charging, lane=lanes[1], on_stored=shared.applied)
    # The meter runs the limits inside the credit script: the limiter (its policy, its slots)
    # shares the credit guard's client rather than holding a connection pool of its own.
    limiter = RedisLimiter(clients["credits"], fail_open=settings.limits_fail_open,
                           timeout=settings.redis_timeout)
    return AccountingStack(
        keys, accounts, plans, ledger, limiter, shared, RedisMeter(limiter, shared),
        balance_changed=shared.forget,
        announce=revocations.publish, listen=revocations.listen,
        starts=[initialize_clients, open_pool, consumer.start],
        stops=[consumer.stop, revocations.close, close_clients, database.close,
               connections.close],
        backlog=consumer.backlog, observed={"consumer": consumer, "database": database, "ledger": ledger})
