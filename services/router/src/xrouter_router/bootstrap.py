"""The router's one composition root: settings in, a ready-to-start application out.

The accounting stores are chosen by the settings:

- embedded (no XROUTER_DATABASE_URL): SQLite in the data directory, in-process limits;
- XROUTER_DATABASE_URL: PostgreSQL (HA multi-host conninfo) for keys, accounts and the ledger;
- plus XROUTER_REDIS_URL: Redis Cluster limits and credit reservations shared by every replica,
  key revocations broadcast to every replica, and the ledger made durable in Redis Streams
  before the answer completes, drained into PostgreSQL by a consumer group, each record with
  its charge."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry
from prometheus_client.registry import REGISTRY

from xrouter_common.loop_lag import watch_loop_lag
from xrouter_router import accounting_metrics, catalog_file, pii_ner, provider_keys
from xrouter_router.accounting_metrics import AccountingCollector, sample_backlog
from xrouter_router.cbr import CbrFeed, FxCollector, http_fetch
from xrouter_router.domain import fx
from xrouter_router.domain.accounts_service import AccountsService
from xrouter_router.domain.auth import KeyAuthenticator
from xrouter_router.domain.billing import Billing
from xrouter_router.domain.catalog import Catalog
from xrouter_router.domain.failover import Failover, FailoverPolicy
from xrouter_router.domain.oauth import AuthCodes
from xrouter_router.domain.plans import Plan
from xrouter_router.domain.ports import (
    AccountStore,
    AuthCodeStore,
    ChatProvider,
    CreditGuard,
    KeyStore,
    Limiter,
    Listings,
    Meter,
    PlanStore,
    RateStore,
    SessionStore,
    UsageLedger,
)
from xrouter_router.domain.service import ChatService
from xrouter_router.domain.sessions import SessionService
from xrouter_router.domain.stats import InMemoryStats
from xrouter_router.domain.sticky import StickyRoutes
from xrouter_router.providers.http import new_session
from xrouter_router.providers.http1 import HttpClient
from xrouter_router.providers.registry import build_provider
from xrouter_router.providers.tokenizer import Cl100kCounter
from xrouter_router.settings import RouterSettings
from xrouter_router.storage import tasks
from xrouter_router.storage.health import StorageHealth, always_up
from xrouter_router.storage.memory import InProcessCreditGuard, InProcessLimiter, InProcessMeter
from xrouter_router.telemetry import RouterMetrics
from xrouter_router.tracing import OtelSpans
from xrouter_router.transport.accounts_servicer import AccountsServicer
from xrouter_router.transport.redact import Redactor
from xrouter_router.transport.server import GrpcServer
from xrouter_router.transport.servicer import RouterServicer
from xrouter_router.transport.sessions_servicer import SessionsServicer
from xrouter_router.transport.tls import server_credentials

if TYPE_CHECKING:
    from xrouter_router.storage.redis.clients import ClusterClients
    from xrouter_router.storage.redis.stats import RedisStats


@dataclass(slots=True)
class RouterApp:
    server: GrpcServer
    providers: Mapping[str, ChatProvider]
    session: HttpClient
    metrics: RouterMetrics
    accounting: AccountingStack
    shared_stats: RedisStats | None = None
    # The Redis Cluster clients (None without Redis): started first, closed last.
    redis: ClusterClients | None = None
    accounting_metrics: AccountingCollector | None = None
    billing: Billing | None = None
    # The personal-data guard's NER thread (None: no NER detector).
    ner_thread: Executor | None = None
    # The Central Bank's rates feed (None: no currency needs it).
    fx: CbrFeed | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self) -> None:
        if self.redis is not None:
            await self.redis.initialize()
        for start in self.accounting.starts:
            await start()
        if self.fx is not None:
            await self.fx.restore()  # the last known rates price the first requests
        await self.server.start()
        if self.fx is not None:
            self._tasks.append(asyncio.ensure_future(self.fx.run()))
        self._tasks.append(asyncio.ensure_future(watch_loop_lag(self.metrics.loop_lag)))
        if self.accounting.backlog is not None and self.accounting_metrics is not None:
            self._tasks.append(asyncio.ensure_future(
                sample_backlog(self.accounting_metrics, self.accounting.backlog)))

    async def stop(self, grace: float) -> None:
        await tasks.stop(self._tasks)
        await self.server.stop(grace)
        if self.shared_stats is not None:
            await self.shared_stats.close()
        for provider in self.providers.values():
            await provider.close()
        await self.session.close()
        if self.billing is not None:
            await self.billing.drain()  # settlements still running, then the stores
        for stop in self.accounting.stops:
            await stop()
        if self.redis is not None:
            await self.redis.aclose()
        if self.ner_thread is not None:
            self.ner_thread.shutdown(wait=False, cancel_futures=True)


@dataclass(slots=True)
class AccountingStack:
    keys: KeyStore
    accounts: AccountStore
    plans: PlanStore
    ledger: UsageLedger
    rates: RateStore
    listings: Listings
    sessions: SessionStore
    codes: AuthCodeStore
    limiter: Limiter
    guard: CreditGuard
    # The admission port's stores: limits and credits in one call at each end of a generation.
    meter: Meter
    # A top-up committed: the guard reads the account's balance again (every replica).
    balance_changed: Callable[[str], Awaitable[None]]
    # Tells the other replicas a key changed (None: this process is alone).
    announce: Callable[[str], Awaitable[Any]] | None = None
    # Wired once the authenticator exists: on_key_changed(forget).
    # listen(on_revoked, on_subscribed): KeyRevocations.listen
    listen: Callable[[Callable[[str], None], Callable[[], None]], None] | None = None
    starts: list[Callable[[], Awaitable[Any]]] = field(default_factory=list)
    stops: list[Callable[[], Awaitable[Any]]] = field(default_factory=list)
    # For metrics: the ledger's backlog in Redis (None in the embedded mode).
    backlog: Callable[[], Awaitable[int]] | None = None
    # The database and cache states the gateway's /health reports.
    health: StorageHealth = field(default_factory=always_up)
    # Billing's settle_behind: the settlement is a round trip away, on the lane's one connection
    # per node (whose order puts it ahead of the account's later admissions from this process).
    settle_behind: bool = False
    # More components whose state the metrics read (None where the mode has none).
    database: object | None = None
    consumer: object | None = None
    stream: object | None = None

    def observed(self) -> dict[str, object]:
        """The components the accounting metrics read, by the name they are reported under."""
        parts = {"limits": self.limiter, "credits": self.guard, "database": self.database,
                 "consumer": self.consumer, "ledger": self.stream}
        return {name: part for name, part in parts.items() if part is not None}


def build_accounting(settings: RouterSettings,
                     redis: ClusterClients | None = None) -> AccountingStack:
    """`redis`: the process's Redis Cluster clients (redis_clients()), which their owner starts
    and closes; None makes a stack's own, started and closed with it."""
    if not settings.database_url:
        return _embedded(settings)
    return _postgres(settings, redis)


def _embedded(settings: RouterSettings) -> AccountingStack:
    from xrouter_router.storage.sql.sqlite import (
        SqliteAccountStore,
        SqliteKeyStore,
        SqliteUsageLedger,
    )
    from xrouter_router.storage.sql.sqlite_db import SqliteDatabase
    from xrouter_router.storage.sql.sqlite_fx import SqliteRateStore
    from xrouter_router.storage.sql.sqlite_listings import SqliteListings
    from xrouter_router.storage.sql.sqlite_oauth import SqliteAuthCodeStore
    from xrouter_router.storage.sql.sqlite_plans import SqlitePlanStore
    from xrouter_router.storage.sql.sqlite_sessions import SqliteSessionStore

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    database = SqliteDatabase(settings.data_dir / "xrouter.sqlite3")
    accounts = SqliteAccountStore(database)
    # Each record carries its charge: a request's conclusion is one database write.
    guard = InProcessCreditGuard(accounts, ledger_charges=True)
    limiter = InProcessLimiter()
    return AccountingStack(SqliteKeyStore(database), accounts, SqlitePlanStore(database),
                           SqliteUsageLedger(database, charge=True), SqliteRateStore(database),
                           SqliteListings(database), SqliteSessionStore(database),
                           SqliteAuthCodeStore(database), limiter, guard,
                           InProcessMeter(limiter, guard), guard.forget,
                           starts=[database.open], stops=[database.close])


def _postgres(settings: RouterSettings, redis: ClusterClients | None) -> AccountingStack:
    from xrouter_router.storage.sql.pg import PgAccountStore, PgDatabase, PgKeyStore, PgUsageLedger
    from xrouter_router.storage.sql.pg_fx import PgRateStore
    from xrouter_router.storage.sql.pg_listings import PgListings
    from xrouter_router.storage.sql.pg_oauth import PgAuthCodeStore
    from xrouter_router.storage.sql.pg_plans import PgPlanStore
    from xrouter_router.storage.sql.pg_sessions import PgSessionStore
    from xrouter_router.storage.sql.postgres import pool

    connections = pool(settings.database_url, min_size=2, max_size=settings.database_pool_size)
    database = PgDatabase(connections)
    keys, accounts = PgKeyStore(database), PgAccountStore(database)
    plans, rates, listings = PgPlanStore(database), PgRateStore(database), PgListings(database)
    sessions = PgSessionStore(database)
    codes = PgAuthCodeStore(database)

    async def open_pool() -> None:
        await connections.open(wait=False)
        database.watch(settings.database_url)

    if not settings.redis_url:
        # Each record carries its charge, as with Redis: one round trip per conclusion.
        guard = InProcessCreditGuard(accounts, ledger_charges=True)
        in_process = InProcessLimiter()
        return AccountingStack(keys, accounts, plans, PgUsageLedger(database, charge=True),
                               rates, listings, sessions, codes, in_process, guard,
                               InProcessMeter(in_process, guard), guard.forget,
                               starts=[open_pool], stops=[database.close, connections.close],
                               database=database)
    from xrouter_router.storage.redis.clients import ClusterClients
    from xrouter_router.storage.redis.credits import RedisCreditGuard
    from xrouter_router.storage.redis.lane import Lane
    from xrouter_router.storage.redis.ledger_consumer import LedgerConsumer
    from xrouter_router.storage.redis.ledger_stream import StreamLedger
    from xrouter_router.storage.redis.limits import RedisLimiter
    from xrouter_router.storage.redis.meter import RedisMeter
    from xrouter_router.storage.redis.ping import masters_answer
    from xrouter_router.storage.redis.revocations import KeyRevocations

    # The process's two clients (storage/redis/clients.py); a stack built without them (tests)
    # makes its own and starts and closes them itself.
    own = redis is None
    clients = redis or ClusterClients.connect(settings.redis_url, settings.redis_tls)
    revocations = KeyRevocations(clients.background)
    # The request path's scripts and appends skip redis-py's per-command work (docs/performance.md);
    # two lanes, as an append's WAIT holds its connection until a replica acknowledges.
    credits_lane, ledger_lane = (Lane(clients.requests, enabled=settings.redis_lane),
                                 Lane(clients.requests, enabled=settings.redis_lane))
    shared = RedisCreditGuard(clients.requests, accounts, fail_open=settings.credits_fail_open,
                              outage_allowance=settings.credits_outage_allowance,
                              lane=credits_lane, timeout=settings.redis_timeout)
    # Charges travel with the records: the consumer writes both in one transaction, then tells
    # the credit guard (no database call on the request path).
    charging = PgUsageLedger(database, charge=True)
    consumer = LedgerConsumer(clients.background, charging, on_stored=shared.applied)

    async def close_redis() -> None:
        await credits_lane.close()
        await ledger_lane.close()
        if own:
            await clients.aclose()

    ledger = StreamLedger(clients.requests, charging, lane=ledger_lane, on_stored=shared.applied)
    # The meter runs the limits inside the credit script: the limiter (its policy, its slots)
    # shares the credit guard's client rather than holding a connection pool of its own.
    limiter = RedisLimiter(clients.requests, fail_open=settings.limits_fail_open,
                           timeout=settings.redis_timeout)
    return AccountingStack(
        keys, accounts, plans, ledger, rates, listings, sessions, codes, limiter, shared,
        RedisMeter(limiter, shared),
        balance_changed=shared.forget,
        announce=revocations.publish, listen=revocations.listen,
        starts=[*([clients.initialize] if own else []), open_pool, consumer.start],
        stops=[consumer.stop, ledger.close, revocations.close, close_redis, database.close,
               connections.close],
        backlog=consumer.backlog, settle_behind=credits_lane.enabled, database=database,
        consumer=consumer, stream=ledger,
        health=StorageHealth("cluster", lambda: not database.down,
                             lambda: masters_answer(clients.background)))


def build_providers(config: catalog_file.CatalogConfig,
                    session: HttpClient) -> dict[str, ChatProvider]:
    return {p.name: build_provider(p, session) for p in config.providers}


def build_stats(catalog: Catalog, redis: ClusterClients | None) -> InMemoryStats | RedisStats:
    """Shared through Redis Cluster when it is configured (on the background client), in-process
    otherwise."""
    if redis is None:
        return InMemoryStats()
    from xrouter_router.storage.redis.stats import RedisStats

    deployments = {d.id: d.provider for m in catalog.models for d in m.deployments}
    return RedisStats(redis.background, deployments, shared=True)


def redis_clients(settings: RouterSettings) -> ClusterClients | None:
    """The process's Redis Cluster clients; None without Redis (then redis-py is not even
    imported)."""
    if not settings.redis_url:
        return None
    from xrouter_router.storage.redis.clients import ClusterClients
    return ClusterClients.connect(settings.redis_url, settings.redis_tls)


def build_fx(settings: RouterSettings, catalog: Catalog, session: HttpClient,
             store: RateStore, registry: CollectorRegistry) -> tuple[fx.FxPrices, CbrFeed | None]:
    """The catalog priced in RUB at the configured rates, and the Central Bank's feed when it is
    on and the catalog has a currency they do not cover (with the metrics of both)."""
    prices = fx.FxPrices(catalog, fx.RateBook.of(settings.fx_rates))
    foreign = {d.currency for m in catalog.models for d in m.deployments} - {fx.RUB}
    wanted = foreign - {r.currency for r in settings.fx_rates}
    feed = None
    if settings.fx_cbr_url and wanted:
        feed = CbrFeed(prices, http_fetch(session, settings.fx_cbr_url), wanted=wanted,
                       store=store, interval=settings.fx_cbr_interval)
    if foreign:
        registry.register(FxCollector(prices, foreign, feed))
    return prices, feed


def key_secret(settings: RouterSettings) -> bytes:
    """The HMAC secret for key hashes: XROUTER_KEY_SECRET, or (embedded mode) one created once
    in the data directory, readable by the owner only."""
    if settings.key_secret:
        return settings.key_secret.encode()
    path = settings.data_dir / "key.secret"
    if not path.exists():
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_hex(32), encoding="ascii")
    return path.read_text(encoding="ascii").strip().encode()


def build(settings: RouterSettings, registry: CollectorRegistry = REGISTRY,
          tracer: Any | None = None, wall: Callable[[], float] = time.time) -> RouterApp:
    """Must run inside the event loop that will serve (the HTTP client and grpc.aio bind to it).
    `tracer` is an OpenTelemetry tracer, or None when tracing is off. `wall`: the clock that
    dates generations (and so their VAT rate) and key usage; tests inject one."""
    metrics = RouterMetrics(registry)
    counter = Cl100kCounter()
    config = catalog_file.load(settings.catalog_path,
                               provider_keys.environment(settings.provider_keys_file))
    session = new_session(connect_timeout=settings.connect_timeout, pool_size=settings.pool_size)
    providers = build_providers(config, session)
    redis = redis_clients(settings)
    stats = build_stats(config.catalog, redis)
    failover = Failover(providers, FailoverPolicy(settings.attempt_timeout, settings.max_attempts),
                        stats, observer=metrics,
                        tracer=OtelSpans(tracer) if tracer is not None else None)
    stack = build_accounting(settings, redis)
    secret = key_secret(settings)
    auth = KeyAuthenticator(stack.keys, secret=secret, master_key=settings.master_key,
                            sessions=stack.sessions, ttl=settings.key_cache_ttl,
                            size=settings.key_cache_size,
                            negative_size=settings.key_cache_negative_size, wall=wall)
    if stack.listen is not None:
        stack.listen(auth.forget, auth.expire_all)
    billing = Billing(stack.meter, stack.ledger, wall=wall, vat=settings.vat,
                      on_window=metrics.rate_window, settle_behind=stack.settle_behind)
    sticky = StickyRoutes(ttl=settings.prompt_affinity,
                          size=10_000 if settings.prompt_affinity > 0 else 0)
    guard, ner_thread = pii_ner.build_guard(settings.pii_ner)
    prices, feed = build_fx(settings, config.catalog, session, stack.rates, registry)
    service = ChatService(config.catalog, failover, auth,
                          idle_timeout=settings.stream_idle_timeout, stats=stats,
                          counter=counter, observer=metrics, billing=billing, sticky=sticky,
                          guard=guard, prices=prices)
    servicer = RouterServicer(service, [p.name for p in config.providers], tracer=tracer,
                              request_log=settings.request_log,
                              redactor=Redactor(p.api_key for p in config.providers),
                              storage=stack.health)
    accounts = AccountsService(stack.keys, stack.accounts, stack.ledger, auth, secret=secret,
                               plans=stack.plans, listings=stack.listings,
                               default_plan=Plan(settings.default_plan_tier),
                               balance_changed=stack.balance_changed, announce=stack.announce,
                               wall=wall, vat_zone=settings.vat.zone)
    accounts_servicer = AccountsServicer(accounts, auth)
    sessions = SessionService(stack.sessions, secret=secret, forget=auth.forget,
                              announce=stack.announce, wall=wall)
    credentials = None if settings.grpc_tls is None else server_credentials(settings.grpc_tls)
    server = GrpcServer(servicer, settings.listen, accounts_servicer, credentials,
                        health_listen=settings.health_listen, multiplexer=servicer.multiplexer,
                        sessions=SessionsServicer(sessions, auth, AuthCodes(
                            stack.codes, stack.keys, accounts, secret=secret, wall=wall)))
    collector = accounting_metrics.register(registry, {"keys": auth, "reads": accounts.reads,
                                                       **stack.observed()})
    return RouterApp(server, providers, session, metrics, stack,
                     shared_stats=None if isinstance(stats, InMemoryStats) else stats, redis=redis,
                     accounting_metrics=collector, billing=billing, ner_thread=ner_thread,
                     fx=feed)
