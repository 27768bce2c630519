"""The key and credit use cases: who may see and change which keys, credits and generations.

Any key may read itself, its account's credits and its own generations; management (the
master key, or a key of tier "mgmt", within its own account) may create, list, change and
revoke keys, top up accounts and read usage reports. A management key's keys stay within its
account's plan (domain/plans.py), which only the master key sets."""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import astuple, dataclass, replace
from datetime import tzinfo
from decimal import Decimal

from xrouter_common.apikeys import display_prefix, generate
from xrouter_router.domain import statement, vat
from xrouter_router.domain.addresses import EVERYWHERE, AllowList
from xrouter_router.domain.auth import ACCOUNT_PREFIX, KeyAuthenticator
from xrouter_router.domain.errors import Forbidden, InvalidRequest, NotFound
from xrouter_router.domain.keys import (
    MANAGEMENT_TIER,
    TIERS,
    ApiKey,
    Limits,
    key_hash,
    with_tier,
)
from xrouter_router.domain.ledger import (
    REPORT_GROUPS,
    Account,
    GenerationRecord,
    UsageRow,
    UsageTotals,
)
from xrouter_router.domain.listings import (
    AccountSummary,
    GenerationPage,
    GenerationQuery,
    TopUp,
    checked_limit,
    checked_time,
    page_of,
)
from xrouter_router.domain.plans import Plan
from xrouter_router.domain.ports import AccountStore, KeyStore, Listings, PlanStore, UsageLedger
from xrouter_router.domain.read_cache import Answer, ReadCache
from xrouter_router.domain.statement import Statement, month_period

DAY = 86400.0


@dataclass(frozen=True, slots=True)
class KeyUsage:
    key: ApiKey
    total: Decimal
    daily: Decimal
    weekly: Decimal
    monthly: Decimal
    limit_remaining: Decimal | None


@dataclass(frozen=True, slots=True)
class NewKey:
    """A key as created: `plain` is shown once and never stored."""

    info: KeyUsage
    plain: str


@dataclass(frozen=True, slots=True)
class KeyChanges:
    label: str | None = None
    disabled: bool | None = None
    credit_limit: Decimal | None = None
    clear_credit_limit: bool = False
    expires_at: float | None = None
    limits: Limits | None = None
    allowed_models: tuple[str, ...] | None = None
    allowed_ips: AllowList | None = None
    residency: str | None = None
    pii_guard: str | None = None
    pii_scope: str | None = None


@dataclass(frozen=True, slots=True)
class CreditsView:
    account_id: str
    total_credits: Decimal
    total_usage: Decimal  # gross, as debited: total_usage_net + total_usage_vat
    balance: Decimal
    total_usage_vat: Decimal = Decimal(0)

    @property
    def total_usage_net(self) -> Decimal:
        return self.total_usage - self.total_usage_vat


def is_manager(key: ApiKey) -> bool:
    return key.master or key.tier == MANAGEMENT_TIER


@dataclass(frozen=True, slots=True)
class PlanView:
    account_id: str
    plan: Plan
    is_default: bool  # the operator never set this account's plan


class AccountsService:
    def __init__(self, keys: KeyStore, accounts: AccountStore, ledger: UsageLedger,
                 auth: KeyAuthenticator, *, secret: bytes, plans: PlanStore, listings: Listings,
                 default_plan: Plan | None = None,
                 balance_changed: Callable[[str], Awaitable[None]] | None = None,
                 announce: Callable[[str], Awaitable[object]] | None = None,
                 wall: Callable[[], float] = time.time,
                 vat_zone: tzinfo = vat.MOSCOW, reads: ReadCache | None = None) -> None:
        self._keys = keys
        # The last good answer of each caller's credits and key reads, for while the database
        # is away (domain/read_cache.py).
        self.reads = reads or ReadCache()
        self._vat_zone = vat_zone
        self._plans = plans
        self._default_plan = default_plan or Plan()
        self._accounts = accounts
        self._ledger = ledger
        self._listings = listings
        self._auth = auth
        self._secret = secret
        self._balance_changed = balance_changed
        self._announce = announce
        self._wall = wall

    # ---- helpers -----------------------------------------------------------------------------
    async def _ensure_account(self, account_id: str) -> None:
        if await self._accounts.get(account_id) is None:
            try:
                await self._accounts.create(Account(id=account_id, name=account_id))
            except InvalidRequest:
                if await self._accounts.get(account_id) is None:  # not a lost race: a real error
                    raise

    def _manage(self, caller: ApiKey, account_id: str | None) -> None:
        if not is_manager(caller):
            raise Forbidden("This needs a management key")
        if not caller.master and account_id not in (None, "", caller.account_id):
            raise Forbidden("A management key may only manage its own account")

    async def _key(self, caller: ApiKey, key_id: str) -> ApiKey:
        key = await self._keys.get(key_id)
        if key is None or (not caller.master and key.account_id != caller.account_id):
            raise NotFound(f"Key {key_id!r} does not exist", param="id")
        return key

    async def usage_of(self, key: ApiKey) -> KeyUsage:
        now = self._wall()
        total = (await self._ledger.totals(key_id=key.id)).cost
        daily = (await self._ledger.totals(key_id=key.id, since=now - DAY)).cost
        weekly = (await self._ledger.totals(key_id=key.id, since=now - 7 * DAY)).cost
        monthly = (await self._ledger.totals(key_id=key.id, since=now - 30 * DAY)).cost
        remaining = None
        if key.credit_limit is not None:
            remaining = max(Decimal(0), key.credit_limit - await self._accounts.spent(key.id))
        return KeyUsage(key, total, daily, weekly, monthly, remaining)

    # ---- keys --------------------------------------------------------------------------------
    async def key_info(self, caller: ApiKey, key_id: str = "") -> Answer[KeyUsage]:
        """The key's usage; while the database is away, the caller's last read of it."""
        if not key_id or key_id == caller.id:
            if caller.master:
                return Answer(KeyUsage(caller, Decimal(0), Decimal(0), Decimal(0), Decimal(0),
                                       None))
            return await self.reads.read(caller.id, ("key", caller.id),
                                         lambda: self.usage_of(caller))
        self._manage(caller, None)

        async def fetch() -> KeyUsage:
            return await self.usage_of(await self._key(caller, key_id))
        return await self.reads.read(caller.id, ("key", key_id), fetch)

    async def list_keys(self, caller: ApiKey, account_id: str = "") -> list[KeyUsage]:
        self._manage(caller, account_id)
        scope = account_id or (None if caller.master else caller.account_id)
        return [await self.usage_of(k) for k in await self._keys.list(scope)]

    async def create_key(self, caller: ApiKey, *, tier: str, label: str = "",
                         account_id: str = "", limits: Limits | None = None,
                         credit_limit: Decimal | None = None, expires_at: float | None = None,
                         allowed_models: Sequence[str] = (),
                         allowed_ips: AllowList = EVERYWHERE, residency: str = "",
                         pii_guard: str = "", pii_scope: str = "") -> NewKey:
        self._manage(caller, account_id)
        if tier not in TIERS and tier != MANAGEMENT_TIER:
            raise InvalidRequest(f"tier must be one of {sorted([*TIERS, MANAGEMENT_TIER])}",
                                 param="tier")
        account = account_id or (caller.account_id if not caller.master else "")
        if not account:
            raise InvalidRequest("account_id is required with the master key", param="account_id")
        await self._ensure_account(account)
        plain = generate(tier)
        key = with_tier(ApiKey(id="key-" + secrets.token_hex(8), account_id=account, tier=tier,
                               prefix=display_prefix(plain), label=label,
                               credit_limit=credit_limit, allowed_models=tuple(allowed_models),
                               allowed_ips=allowed_ips, expires_at=expires_at, created_at=self._wall(),
                               residency=residency, pii_guard=pii_guard, pii_scope=pii_scope),
                        tier, limits)
        plan = await self._plans.get(account)
        if plan is not None:
            key = replace(key, account_residency=plan.residency, account_pii_guard=plan.pii_guard,
                          account_pii_scope=plan.pii_scope,
                          account_outage_allowance=plan.outage_allowance)
        if not caller.master:
            (plan or self._default_plan).admit(key)
        await self._keys.create(key, key_hash(self._secret, plain))
        return NewKey(KeyUsage(key, Decimal(0), Decimal(0), Decimal(0), Decimal(0), credit_limit),
                      plain)

    async def update_key(self, caller: ApiKey, key_id: str, changes: KeyChanges) -> KeyUsage:
        self._manage(caller, None)
        key = await self._key(caller, key_id)
        updated = replace(
            key,
            label=key.label if changes.label is None else changes.label,
            disabled=key.disabled if changes.disabled is None else changes.disabled,
            credit_limit=None if changes.clear_credit_limit else (
                key.credit_limit if changes.credit_limit is None else changes.credit_limit),
            expires_at=key.expires_at if changes.expires_at is None else changes.expires_at,
            allowed_models=key.allowed_models if changes.allowed_models is None
            else changes.allowed_models,
            allowed_ips=key.allowed_ips if changes.allowed_ips is None else changes.allowed_ips,
            residency=key.residency if changes.residency is None else changes.residency,
            pii_guard=key.pii_guard if changes.pii_guard is None else changes.pii_guard,
            pii_scope=key.pii_scope if changes.pii_scope is None else changes.pii_scope)
        if changes.limits is not None:
            # The limits not named keep their values.
            updated = replace(updated, limits=Limits(*(new if new is not None else old for new, old
                                                       in zip(astuple(changes.limits),
                                                              astuple(key.limits), strict=True))))
        policies = (changes.limits, changes.residency, changes.pii_guard, changes.pii_scope)
        if not caller.master and any(p is not None for p in policies):
            (await self.plan(caller, key.account_id)).plan.admit(updated)
        await self._keys.update(updated)
        await self._key_changed(key_id)
        return await self.usage_of(updated)

    async def delete_key(self, caller: ApiKey, key_id: str) -> bool:
        self._manage(caller, None)
        await self._key(caller, key_id)
        deleted = await self._keys.delete(key_id)
        await self._key_changed(key_id)
        return deleted

    async def _key_changed(self, key_id: str) -> None:
        """This replica forgets the key at once; the others when the announcement reaches them
        (or, if it cannot be sent, when their cache entry expires)."""
        self._auth.forget(key_id)
        if self._announce is not None:
            await self._announce(key_id)

    # ---- plans -------------------------------------------------------------------------------
    async def plan(self, caller: ApiKey, account_id: str) -> PlanView:
        """The account's plan (the default one when the operator never set it); management."""
        self._manage(caller, account_id)
        target = account_id or caller.account_id
        if caller.master and not account_id:
            raise InvalidRequest("account_id is required with the master key", param="account_id")
        plan = await self._plans.get(target)
        return PlanView(target, plan or self._default_plan, plan is None)

    async def set_plan(self, caller: ApiKey, account_id: str, plan: Plan) -> PlanView:
        """Only the operator sets plans; the account is created when it does not exist. Keys
        made before keep their limits (the plan binds what management keys create next)."""
        if not caller.master:
            raise Forbidden("Plans are set with the master key")
        if not account_id:
            raise InvalidRequest("account_id is required", param="account_id")
        await self._ensure_account(account_id)
        await self._plans.set(account_id, plan)
        # Cached keys carry their account's residency, personal-data guard policy and outage
        # allowance: every replica drops the account's keys.
        await self._key_changed(ACCOUNT_PREFIX + account_id)
        return PlanView(account_id, plan, False)

    # ---- credits -----------------------------------------------------------------------------
    async def credits(self, caller: ApiKey, account_id: str = "") -> Answer[CreditsView]:
        """The account's credits; while the database is away, the caller's last read of them."""
        if account_id and account_id != caller.account_id:
            self._manage(caller, account_id)
        target = account_id or caller.account_id
        return await self.reads.read(caller.id, ("credits", target),
                                     lambda: self._credits(target))

    async def _credits(self, target: str) -> CreditsView:
        account = await self._accounts.get(target)
        if account is None:
            raise NotFound(f"Account {target!r} does not exist", param="account_id")
        usage = await self._ledger.totals(account_id=target)
        return CreditsView(target, account.balance + usage.cost, usage.cost, account.balance,
                           usage.vat)

    async def top_up(self, caller: ApiKey, account_id: str, amount: Decimal,
                     reference: str) -> CreditsView:
        if not caller.master:
            raise Forbidden("Top-ups need the master key")
        if amount <= 0:
            raise InvalidRequest("amount must be positive", param="amount")
        await self._ensure_account(account_id)
        await self._accounts.top_up(account_id, amount, reference)
        if self._balance_changed is not None:
            await self._balance_changed(account_id)
        return await self._credits(account_id)  # fresh: never an answer from before the top-up

    # ---- generations and usage ---------------------------------------------------------------
    async def generation(self, caller: ApiKey, generation_id: str) -> GenerationRecord:
        record = await self._ledger.get(generation_id)
        visible = record is not None and (
            caller.master or record.key_id == caller.id
            or (is_manager(caller) and record.account_id == caller.account_id))
        if record is None or not visible:
            raise NotFound(f"Generation {generation_id!r} does not exist", param="id")
        return record

    async def usage(self, caller: ApiKey, *, account_id: str, group_by: Sequence[str],
                    since: float, until: float) -> list[UsageRow]:
        self._manage(caller, account_id)
        unknown = set(group_by) - REPORT_GROUPS
        if unknown:
            raise InvalidRequest(f"group_by accepts {sorted(REPORT_GROUPS)}", param="group_by")
        scope = account_id or (None if caller.master else caller.account_id)
        return await self._ledger.report(account_id=scope, group_by=group_by, since=since,
                                         until=until)

    async def generations(self, caller: ApiKey, query: GenerationQuery) -> GenerationPage:
        """A page of the generations the caller may see: a key its own, a management key its
        account's, the master key any account's (every account's when it names none)."""
        if not caller.master and query.account_id not in (None, caller.account_id):
            raise Forbidden("A key may only list its own account's generations",
                            param="account_id")
        if not caller.master:
            query = replace(query, account_id=caller.account_id)
        if not is_manager(caller):
            if query.key_id not in (None, caller.id):
                raise Forbidden("This key may only list its own generations", param="key_id")
            query = replace(query, key_id=caller.id)
        query = replace(query, limit=checked_limit(query.limit),
                        since=checked_time(query.since, "since"),
                        until=checked_time(query.until, "until"))
        return page_of(await self._listings.generations(query), query.limit)

    async def top_ups(self, caller: ApiKey, account_id: str, limit: int) -> list[TopUp]:
        """The account's latest top-ups, newest first: management of the account."""
        self._manage(caller, account_id)
        if caller.master and not account_id:
            raise InvalidRequest("account_id is required with the master key", param="account_id")
        return await self._listings.top_ups(account_id or caller.account_id, checked_limit(limit))

    async def accounts(self, caller: ApiKey) -> list[AccountSummary]:
        """Every account with its balance and plan: the operator's view."""
        if not caller.master:
            raise Forbidden("Listing accounts needs the master key")
        return await self._listings.accounts()

    async def statement(self, caller: ApiKey, account_id: str, month: str) -> Statement:
        """The account's statement for the month (YYYY-MM, in the VAT time zone): any key, of
        its own account; the master key names the account."""
        if caller.master and not account_id:
            raise InvalidRequest("account_id is required with the master key", param="account_id")
        if account_id and account_id != caller.account_id:
            self._manage(caller, account_id)
        target = account_id or caller.account_id
        since, until = month_period(month, self._vat_zone)
        records = await self._ledger.charged(account_id=target, since=since, until=until)
        return statement.build(target, month, self._vat_zone, records)


__all__ = ["MANAGEMENT_TIER", "AccountsService", "CreditsView", "KeyChanges", "KeyUsage", "NewKey",
           "PlanView", "UsageTotals"]
