"""The Accounts gRPC servicer: keys, credits, generations and usage; translation only."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal, InvalidOperation
from typing import TypeVar

import grpc

from xrouter.v1 import router_pb2 as pb
from xrouter.v1 import router_pb2_grpc as pb_grpc
from xrouter_router.domain import residency
from xrouter_router.domain.accounts_service import (
    AccountsService,
    CreditsView,
    KeyChanges,
    KeyUsage,
    PlanView,
)
from xrouter_router.domain.addresses import AllowList
from xrouter_router.domain.errors import InvalidRequest
from xrouter_router.domain.keys import ApiKey, Limits
from xrouter_router.domain.ledger import GenerationRecord
from xrouter_router.domain.listings import Cursor, GenerationQuery
from xrouter_router.domain.pii import policy as pii
from xrouter_router.domain.plans import Plan
from xrouter_router.domain.ports import Authenticator
from xrouter_router.domain.vat import rate_text
from xrouter_router.transport.convert import attempts_to_proto, decimal_text
from xrouter_router.transport.errors import answering
from xrouter_router.transport.servicer import credentials
from xrouter_router.transport.statement_proto import statement_to_proto

T = TypeVar("T")
Context = grpc.aio.ServicerContext[object, object]


def _money(value: Decimal | None) -> str:
    return "" if value is None else format(value.normalize(), "f")


def _credits(view: CreditsView) -> pb.Credits:
    return pb.Credits(account_id=view.account_id, total_credits=_money(view.total_credits),
                      total_usage=_money(view.total_usage), balance=_money(view.balance),
                      total_usage_net=_money(view.total_usage_net),
                      total_usage_vat=_money(view.total_usage_vat))


def _decimal(text: str, param: str) -> Decimal | None:
    if not text:
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise InvalidRequest(f"{param} must be a decimal number", param=param) from None
    if not value.is_finite() or value < 0:
        raise InvalidRequest(f"{param} must be a non-negative decimal", param=param)
    return value


def key_info(u: KeyUsage) -> pb.KeyInfo:
    k = u.key
    out = pb.KeyInfo(id=k.id, account_id=k.account_id, label=k.label, tier=k.tier, prefix=k.prefix,
                     created_at=k.created_at, disabled=k.disabled,
                     allowed_models=list(k.allowed_models), credit_limit=_money(k.credit_limit),
                     usage=_money(u.total), usage_daily=_money(u.daily),
                     usage_weekly=_money(u.weekly), usage_monthly=_money(u.monthly),
                     limit_remaining=_money(u.limit_remaining),
                     allowed_ips=list(k.allowed_ips.entries), residency=k.residency,
                     pii_guard=k.pii_guard, pii_scope=k.pii_scope)
    out.effective_residency, out.residency_source = k.residency_policy
    guard = k.pii_policy
    out.effective_pii_guard, out.effective_pii_scope = guard.guard, guard.scope
    out.pii_guard_source = guard.source
    if k.expires_at is not None:
        out.expires_at = k.expires_at
    _set_limits(out, k.limits)
    return out


def generation_info(r: GenerationRecord, *, attempts: bool = True) -> pb.GenerationInfo:
    return pb.GenerationInfo(
        id=r.id, created_at=r.created_at, key_id=r.key_id, model=r.model,
        provider=r.provider, streamed=r.streamed, prompt_tokens=r.prompt_tokens,
        completion_tokens=r.completion_tokens, cached_tokens=r.cached_tokens,
        reasoning_tokens=r.reasoning_tokens, counts_native=r.counts_native,
        cache_write_tokens=r.cache_write_tokens,
        cost=_money(r.cost), latency_ms=r.latency_ms, generation_ms=r.generation_ms,
        finish_reason=r.finish_reason, status=r.status,
        attempts=attempts_to_proto(r.attempts) if attempts else [], jurisdiction=r.jurisdiction,
        price_currency=r.price_currency,
        fx_rate="" if r.fx_rate is None else decimal_text(r.fx_rate),
        cost_original="" if r.cost_original is None else _money(r.cost_original),
        fx_date="" if r.fx_date is None else r.fx_date.isoformat(),
        cost_net=_money(r.cost_net), vat=_money(r.vat), vat_rate=rate_text(r.vat_rate))


def generation_query(r: pb.ListGenerationsRequest) -> GenerationQuery:
    return GenerationQuery(
        account_id=r.account_id or None, key_id=r.key_id or None, model=r.model or None,
        provider=r.provider or None, since=r.since if r.HasField("since") else None,
        until=r.until if r.HasField("until") else None,
        before=Cursor.decode(r.before) if r.before else None, limit=r.limit)


def plan_info(view: PlanView) -> pb.Plan:
    out = pb.Plan(account_id=view.account_id, tier=view.plan.tier, is_default=view.is_default,
                  residency=view.plan.residency, pii_guard=view.plan.pii_guard,
                  pii_scope=view.plan.pii_scope,
                  outage_allowance=_money(view.plan.outage_allowance))
    _set_limits(out, view.plan.ceilings)
    return out


def _set_limits(out: pb.KeyInfo | pb.Plan, limits: Limits) -> None:
    for field, value in (("requests_per_minute", limits.requests_per_minute),
                         ("requests_per_day", limits.requests_per_day),
                         ("tokens_per_minute", limits.tokens_per_minute),
                         ("concurrent", limits.concurrent)):
        if value is not None:
            setattr(out, field, value)


def _limits(r: pb.CreateKeyRequest | pb.UpdateKeyRequest | pb.Plan) -> Limits | None:
    values = [getattr(r, f) if r.HasField(f) else None
              for f in ("requests_per_minute", "requests_per_day", "tokens_per_minute",
                        "concurrent")]
    return Limits(*values) if any(v is not None for v in values) else None


class AccountsServicer(pb_grpc.AccountsServicer):
    def __init__(self, service: AccountsService, auth: Authenticator) -> None:
        self._service = service
        self._auth = auth

    async def _run(self, context: Context, work: Callable[[ApiKey], Awaitable[T]]) -> T:
        async with answering(context):
            api_key, address = credentials(context)
            return await work(await self._auth.authenticate(api_key, address))
        raise AssertionError("unreachable: abort raises")

    async def GetKey(self, request: pb.KeyRef, context: Context) -> pb.KeyInfo:  # noqa: N802
        return await self._run(context, lambda c: self._key_info(c, request.id))

    async def _key_info(self, caller: ApiKey, key_id: str) -> pb.KeyInfo:
        answer = await self._service.key_info(caller, key_id)
        out = key_info(answer.value)
        if answer.age is not None:
            out.stale_seconds = answer.age
        return out

    async def ListKeys(self, request: pb.ListKeysRequest,  # noqa: N802
                       context: Context) -> pb.ListKeysResponse:
        async def work(caller: ApiKey) -> pb.ListKeysResponse:
            keys = await self._service.list_keys(caller, request.account_id)
            return pb.ListKeysResponse(keys=[key_info(k) for k in keys])
        return await self._run(context, work)

    async def CreateKey(self, request: pb.CreateKeyRequest,  # noqa: N802
                        context: Context) -> pb.CreatedKey:
        async def work(caller: ApiKey) -> pb.CreatedKey:
            new = await self._service.create_key(
                caller, tier=request.tier or "free", label=request.label,
                account_id=request.account_id, limits=_limits(request),
                credit_limit=_decimal(request.credit_limit, "limit"),
                expires_at=request.expires_at if request.HasField("expires_at") else None,
                allowed_models=tuple(request.allowed_models),
                allowed_ips=AllowList.parse(request.allowed_ips),
                residency=residency.policy(request.residency),
                pii_guard=pii.guard(request.pii_guard), pii_scope=pii.scope(request.pii_scope))
            return pb.CreatedKey(info=key_info(new.info), key=new.plain)
        return await self._run(context, work)

    async def UpdateKey(self, request: pb.UpdateKeyRequest,  # noqa: N802
                        context: Context) -> pb.KeyInfo:
        async def work(caller: ApiKey) -> pb.KeyInfo:
            limit_text = request.credit_limit if request.HasField("credit_limit") else None
            changes = KeyChanges(
                label=request.label if request.HasField("label") else None,
                disabled=request.disabled if request.HasField("disabled") else None,
                credit_limit=_decimal(limit_text, "limit") if limit_text else None,
                clear_credit_limit=limit_text == "",
                expires_at=request.expires_at if request.HasField("expires_at") else None,
                limits=_limits(request),
                allowed_models=tuple(request.allowed_models)
                if request.replace_allowed_models else None,
                allowed_ips=AllowList.parse(request.allowed_ips)
                if request.replace_allowed_ips else None,
                residency=residency.policy(request.residency)
                if request.HasField("residency") else None,
                pii_guard=pii.guard(request.pii_guard) if request.HasField("pii_guard") else None,
                pii_scope=pii.scope(request.pii_scope) if request.HasField("pii_scope") else None)
            return key_info(await self._service.update_key(caller, request.id, changes))
        return await self._run(context, work)

    async def DeleteKey(self, request: pb.KeyRef,  # noqa: N802
                        context: Context) -> pb.DeleteKeyResponse:
        async def work(caller: ApiKey) -> pb.DeleteKeyResponse:
            return pb.DeleteKeyResponse(deleted=await self._service.delete_key(caller, request.id))
        return await self._run(context, work)

    async def GetCredits(self, request: pb.AccountRef,  # noqa: N802
                         context: Context) -> pb.Credits:
        async def work(caller: ApiKey) -> pb.Credits:
            answer = await self._service.credits(caller, request.account_id)
            out = _credits(answer.value)
            if answer.age is not None:
                out.stale_seconds = answer.age
            return out
        return await self._run(context, work)

    async def TopUp(self, request: pb.TopUpRequest, context: Context) -> pb.Credits:  # noqa: N802
        async def work(caller: ApiKey) -> pb.Credits:
            amount = _decimal(request.amount, "amount")
            if amount is None:
                raise InvalidRequest("amount is required", param="amount")
            view = await self._service.top_up(caller, request.account_id, amount,
                                              request.reference)
            return _credits(view)
        return await self._run(context, work)

    async def GetGeneration(self, request: pb.GenerationRef,  # noqa: N802
                            context: Context) -> pb.GenerationInfo:
        async def work(caller: ApiKey) -> pb.GenerationInfo:
            return generation_info(await self._service.generation(caller, request.id))
        return await self._run(context, work)

    async def Usage(self, request: pb.UsageRequest,  # noqa: N802
                    context: Context) -> pb.UsageReport:
        async def work(caller: ApiKey) -> pb.UsageReport:
            rows = await self._service.usage(caller, account_id=request.account_id,
                                             group_by=tuple(request.group_by),
                                             since=request.since, until=request.until or 4e9)
            return pb.UsageReport(rows=[pb.UsageRow(
                day=r.day, key_id=r.key_id, model=r.model, provider=r.provider,
                requests=r.totals.requests, prompt_tokens=r.totals.prompt_tokens,
                completion_tokens=r.totals.completion_tokens, cost=_money(r.totals.cost),
                cached_tokens=r.totals.cached_tokens,
                cache_write_tokens=r.totals.cache_write_tokens,
                reasoning_tokens=r.totals.reasoning_tokens, cost_net=_money(r.totals.cost_net),
                vat=_money(r.totals.vat))
                for r in rows])
        return await self._run(context, work)

    async def ListGenerations(self, request: pb.ListGenerationsRequest,  # noqa: N802
                              context: Context) -> pb.GenerationPage:
        async def work(caller: ApiKey) -> pb.GenerationPage:
            page = await self._service.generations(caller, generation_query(request))
            out = pb.GenerationPage(next_before=page.next_before.encode()
                                    if page.next_before else "")
            for listed in page.generations:
                info = generation_info(listed.record, attempts=False)
                info.key_label = listed.key_label
                out.generations.append(info)
            return out
        return await self._run(context, work)

    async def ListTopUps(self, request: pb.TopUpsRequest,  # noqa: N802
                         context: Context) -> pb.TopUpList:
        async def work(caller: ApiKey) -> pb.TopUpList:
            entries = await self._service.top_ups(caller, request.account_id, request.limit)
            return pb.TopUpList(top_ups=[
                pb.TopUpEntry(amount=_money(t.amount), reference=t.reference,
                              created_at=t.created_at) for t in entries])
        return await self._run(context, work)

    async def ListAccounts(self, request: pb.ListAccountsRequest,  # noqa: N802
                           context: Context) -> pb.AccountList:
        async def work(caller: ApiKey) -> pb.AccountList:
            return pb.AccountList(accounts=[
                pb.AccountSummary(account_id=a.id, name=a.name, balance=_money(a.balance),
                                  plan=a.plan, created_at=a.created_at)
                for a in await self._service.accounts(caller)])
        return await self._run(context, work)

    async def GetPlan(self, request: pb.AccountRef, context: Context) -> pb.Plan:  # noqa: N802
        async def work(caller: ApiKey) -> pb.Plan:
            return plan_info(await self._service.plan(caller, request.account_id))
        return await self._run(context, work)

    async def SetPlan(self, request: pb.Plan, context: Context) -> pb.Plan:  # noqa: N802
        async def work(caller: ApiKey) -> pb.Plan:
            plan = Plan(request.tier or "free", _limits(request) or Limits(),
                        residency.policy(request.residency), pii.guard(request.pii_guard),
                        pii.scope(request.pii_scope),
                        _decimal(request.outage_allowance, "outage_allowance"))
            return plan_info(await self._service.set_plan(caller, request.account_id, plan))
        return await self._run(context, work)

    async def GetStatement(self, request: pb.StatementRequest,  # noqa: N802
                           context: Context) -> pb.Statement:
        async def work(caller: ApiKey) -> pb.Statement:
            return statement_to_proto(
                await self._service.statement(caller, request.account_id, request.month))
        return await self._run(context, work)
