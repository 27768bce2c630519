"""Keys, credits, generations and usage over HTTP, in OpenRouter's shapes (and the origin's
/v1/auth/key). The router decides who may see and change what; this module only translates."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import grpc
import msgspec
import orjson
from msgspec import Meta, Struct
from starlette.requests import Request
from starlette.responses import Response

from xrouter.v1 import router_pb2 as pb
from xrouter_gateway.csv_format import csv_download, requested_format
from xrouter_gateway.errors import APIError, from_rpc_error
from xrouter_gateway.guards import decimal_text, validation_error
from xrouter_gateway.inbound import api_key, call_metadata, read_body
from xrouter_gateway.router_client import RouterClient
from xrouter_gateway.settings import GatewaySettings
from xrouter_gateway.statement_format import statement_csv, statement_json
from xrouter_gateway.usage_format import usage_csv, usage_json

T = TypeVar("T")
_TIMEOUT = 10.0
_MAX_BODY = 64 * 1024


def num(text: str) -> Any:
    """An exact decimal string as a JSON number, or null."""
    return orjson.Fragment(text.encode()) if text else None


def iso(unix: float | None) -> str | None:
    if not unix:
        return None
    return datetime.fromtimestamp(unix, UTC).isoformat().replace("+00:00", "Z")


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json",
                    headers=headers)


def stale_headers(reply: pb.KeyInfo | pb.Credits) -> dict[str, str] | None:
    """For an answer the router served from its last good read while the database is away:
    X-XRouter-Stale (its age in seconds, to a tenth) and the standard Age (whole seconds)."""
    if not reply.HasField("stale_seconds"):
        return None
    age = round(max(0.0, reply.stale_seconds), 1)  # both headers from the same rounded age
    return {"X-XRouter-Stale": f"{age:.1f}", "Age": str(int(age))}


def key_json(k: pb.KeyInfo) -> dict[str, Any]:
    """OpenRouter's key object, plus XRouter's fields."""
    return {
        "id": k.id, "label": k.label, "name": k.label, "tier": k.tier, "prefix": k.prefix,
        "account_id": k.account_id, "disabled": k.disabled,
        "limit": num(k.credit_limit), "limit_remaining": num(k.limit_remaining),
        "usage": num(k.usage) or 0, "usage_daily": num(k.usage_daily) or 0,
        "usage_weekly": num(k.usage_weekly) or 0, "usage_monthly": num(k.usage_monthly) or 0,
        "is_free_tier": k.tier == "free",
        "created_at": iso(k.created_at),
        "expires_at": iso(k.expires_at) if k.HasField("expires_at") else None,
        "allowed_models": list(k.allowed_models) or None,
        "allowed_ips": list(k.allowed_ips) or None,
        # The key's own residency policy (null: its account's applies), and the one in force.
        "residency": k.residency or None,
        "effective_residency": {"residency": k.effective_residency, "source": k.residency_source},
        # Its own personal-data guard and scope (null: its account's apply), and those in force.
        "pii_guard": k.pii_guard or None, "pii_scope": k.pii_scope or None,
        "effective_pii_guard": {"pii_guard": k.effective_pii_guard,
                                "pii_scope": k.effective_pii_scope, "source": k.pii_guard_source},
        "rate_limit": {
            "requests": k.requests_per_minute if k.HasField("requests_per_minute") else None,
            "interval": "1m",
            "requests_per_day": k.requests_per_day if k.HasField("requests_per_day") else None,
            "tokens_per_minute": k.tokens_per_minute if k.HasField("tokens_per_minute") else None,
            "concurrent": k.concurrent if k.HasField("concurrent") else None,
        },
    }


class CreateKey(Struct, forbid_unknown_fields=True):
    """POST /v1/keys and the origin's POST /v1/auth/key; an unknown field is a 400 naming it."""

    name: str | None = None
    label: str | None = None
    tier: Annotated[str, Meta(pattern=r"^[a-z]{2,16}$")] = "free"
    account_id: str = ""
    limit: Annotated[float | str, Meta(description="credit limit, RUB")] | None = None
    expires_at: str | float | None = None
    allowed_models: list[str] | None = None
    allowed_ips: list[str] | None = None
    residency: Annotated[str, Meta(max_length=64)] = ""
    pii_guard: Annotated[str, Meta(max_length=64)] = ""
    pii_scope: Annotated[str, Meta(max_length=64)] = ""
    requests_per_minute: Annotated[int, Meta(ge=0)] | None = None
    requests_per_day: Annotated[int, Meta(ge=0)] | None = None
    tokens_per_minute: Annotated[int, Meta(ge=0)] | None = None
    concurrent: Annotated[int, Meta(ge=0)] | None = None


class UpdateKey(Struct, forbid_unknown_fields=True):
    name: str | None = None
    label: str | None = None
    disabled: bool | None = None
    limit: float | str | None = None
    expires_at: str | float | None = None
    allowed_models: list[str] | None = None
    allowed_ips: list[str] | None = None  # [] clears the list; absent or null: unchanged
    residency: Annotated[str, Meta(max_length=64)] | None = None  # "": the account's policy
    pii_guard: Annotated[str, Meta(max_length=64)] | None = None  # likewise
    pii_scope: Annotated[str, Meta(max_length=64)] | None = None
    requests_per_minute: Annotated[int, Meta(ge=0)] | None = None
    requests_per_day: Annotated[int, Meta(ge=0)] | None = None
    tokens_per_minute: Annotated[int, Meta(ge=0)] | None = None
    concurrent: Annotated[int, Meta(ge=0)] | None = None


class SetPlan(Struct, forbid_unknown_fields=True):
    tier: Annotated[str, Meta(pattern=r"^[a-z]{2,16}$")]
    requests_per_minute: Annotated[int, Meta(ge=0, le=2**31 - 1)] | None = None
    requests_per_day: Annotated[int, Meta(ge=0, le=2**31 - 1)] | None = None
    tokens_per_minute: Annotated[int, Meta(ge=0, le=2**31 - 1)] | None = None
    concurrent: Annotated[int, Meta(ge=0, le=2**31 - 1)] | None = None
    residency: Annotated[str, Meta(max_length=64)] = ""
    pii_guard: Annotated[str, Meta(max_length=64)] = ""
    pii_scope: Annotated[str, Meta(max_length=64)] = ""
    # RUB per router replica while Redis cannot check credits; null: the global setting.
    outage_allowance: float | str | None = None


def plan_json(p: pb.Plan) -> dict[str, Any]:
    return {"account_id": p.account_id, "tier": p.tier, "is_default": p.is_default,
            "residency": p.residency or None, "pii_guard": p.pii_guard or None,
            "pii_scope": p.pii_scope or None, "outage_allowance": num(p.outage_allowance),
            **{name: getattr(p, name) if p.HasField(name) else None
               for name in ("requests_per_minute", "requests_per_day", "tokens_per_minute",
                            "concurrent")}}


class TopUp(Struct, forbid_unknown_fields=True):
    account_id: Annotated[str, Meta(min_length=1)]
    amount: float | str
    reference: str = ""


def _decode(body: bytes, kind: type[T]) -> T:
    try:
        return msgspec.json.decode(body or b"{}", type=kind)
    except msgspec.ValidationError as exc:
        raise validation_error(exc) from None
    except msgspec.DecodeError as exc:
        raise APIError(400, f"Invalid JSON in request body: {exc}") from None


def _limit(value: float | str | None) -> str:
    return "" if value is None else decimal_text(value, "limit")


def _timestamp(value: str | float | None, param: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise APIError(400, f"{param} must be an ISO 8601 time or unix seconds",
                       param=param) from None


def _limits(req: CreateKey | UpdateKey | SetPlan,
            out: pb.CreateKeyRequest | pb.UpdateKeyRequest | pb.Plan) -> None:
    for name in ("requests_per_minute", "requests_per_day", "tokens_per_minute", "concurrent"):
        value = getattr(req, name)
        if value is not None:
            setattr(out, name, value)


def generation_json(g: pb.GenerationInfo) -> dict[str, Any]:
    """OpenRouter's generation stats, XRouter's extras after them."""
    return {
        "id": g.id, "model": g.model, "provider_name": g.provider,
        "provider": g.provider,  # the origin's name for provider_name
        "streamed": g.streamed,
        "created_at": iso(g.created_at), "generation_time": g.generation_ms,
        "latency": g.latency_ms, "tokens_prompt": g.prompt_tokens,
        "tokens_completion": g.completion_tokens,
        "native_tokens_prompt": g.prompt_tokens if g.counts_native else None,
        "native_tokens_completion": g.completion_tokens if g.counts_native else None,
        "native_tokens_cached": g.cached_tokens, "native_tokens_reasoning": g.reasoning_tokens,
        "native_tokens_cache_write": g.cache_write_tokens,
        "total_cost": num(g.cost) or 0, "currency": "RUB", "finish_reason": g.finish_reason,
        "status": g.status, "key_id": g.key_id, "jurisdiction": g.jurisdiction or None,
        # The deployment's own currency; for one not RUB, the rate that converted total_cost,
        # the date from which it was in force (null: a fixed rate) and the cost in that
        # currency (decimal strings).
        "price_currency": g.price_currency or "RUB", "fx_rate": g.fx_rate or None,
        "fx_date": g.fx_date or None, "cost_original": g.cost_original or None,
        "cost_net": g.cost_net or "0", "vat": g.vat or "0", "vat_rate": g.vat_rate or "0",
        "attempts": [{"provider_name": a.provider, "model": a.model, "deployment": a.deployment,
                      "outcome": a.outcome, "latency_ms": a.latency_ms, "status": a.status}
                     for a in g.attempts],
    }



def credits_json(c: pb.Credits) -> dict[str, Any]:
    """An account's credits, as /v1/credits shows them and a top-up answers (usage gross, and
    its net and VAT apart)."""
    return {"total_credits": num(c.total_credits) or 0, "total_usage": num(c.total_usage) or 0,
            "total_usage_net": num(c.total_usage_net) or 0,
            "total_usage_vat": num(c.total_usage_vat) or 0,
            "balance": num(c.balance) or 0, "currency": "RUB", "account_id": c.account_id}

async def call_accounts(request: Request, method: Callable[..., Awaitable[T]],
                        message: Any) -> T:
    """One Accounts RPC with the request's key; the router's refusal as the APIError to send."""
    key = api_key(request)
    try:
        return await method(message, metadata=call_metadata(request, key, ""), timeout=_TIMEOUT)
    except grpc.aio.AioRpcError as exc:
        raise from_rpc_error(exc) from None


class AccountsEndpoints:
    def __init__(self, client: RouterClient, settings: GatewaySettings) -> None:
        self._client = client
        self._settings = settings

    async def _call(self, request: Request, method: Callable[..., Awaitable[T]],
                    message: Any) -> T:
        return await call_accounts(request, method, message)

    async def key(self, request: Request) -> Response:
        info = await self._call(request, self._client.accounts.GetKey, pb.KeyRef())
        return _json({"data": key_json(info)}, headers=stale_headers(info))

    async def auth_key(self, request: Request) -> Response:
        info = await self._call(request, self._client.accounts.GetKey, pb.KeyRef())
        full = key_json(info)
        return _json({"data": {k: full[k] for k in ("label", "usage", "limit", "is_free_tier",
                                                     "rate_limit")}}, headers=stale_headers(info))

    async def credits(self, request: Request) -> Response:
        ref = pb.AccountRef(account_id=request.query_params.get("account_id", ""))
        c = await self._call(request, self._client.accounts.GetCredits, ref)
        return _json({"data": credits_json(c)}, headers=stale_headers(c))

    async def top_up(self, request: Request) -> Response:
        req = _decode(await read_body(request, _MAX_BODY), TopUp)
        c = await self._call(request, self._client.accounts.TopUp, pb.TopUpRequest(
            account_id=req.account_id, amount=decimal_text(req.amount, "amount", positive=True),
            reference=req.reference))
        return _json({"data": credits_json(c)})

    async def generation(self, request: Request) -> Response:
        generation_id = request.query_params.get("id", "")
        if not generation_id:
            raise APIError(400, "The query parameter 'id' is required", param="id")
        g = await self._call(request, self._client.accounts.GetGeneration,
                             pb.GenerationRef(id=generation_id))
        return _json({"data": generation_json(g)})

    async def list_keys(self, request: Request) -> Response:
        reply = await self._call(request, self._client.accounts.ListKeys, pb.ListKeysRequest(
            account_id=request.query_params.get("account_id", "")))
        return _json({"data": [key_json(k) for k in reply.keys]})

    async def create_key(self, request: Request) -> Response:
        req = _decode(await read_body(request, _MAX_BODY), CreateKey)
        out = pb.CreateKeyRequest(label=req.label or req.name or "", tier=req.tier,
                                  account_id=req.account_id,
                                  allowed_models=req.allowed_models or [],
                                  allowed_ips=req.allowed_ips or [],
                                  credit_limit=_limit(req.limit), residency=req.residency,
                                  pii_guard=req.pii_guard, pii_scope=req.pii_scope)
        expires = _timestamp(req.expires_at, "expires_at")
        if expires is not None:
            out.expires_at = expires
        _limits(req, out)
        created = await self._call(request, self._client.accounts.CreateKey, out)
        return _json({"data": key_json(created.info), "key": created.key}, status=201)

    async def create_auth_key(self, request: Request) -> Response:
        """The origin's POST /v1/auth/key: {label, expires_at} -> {data: {key, label, ...}}."""
        req = _decode(await read_body(request, _MAX_BODY), CreateKey)
        out = pb.CreateKeyRequest(label=req.label or req.name or "", tier=req.tier,
                                  account_id=req.account_id, allowed_ips=req.allowed_ips or [],
                                  residency=req.residency, pii_guard=req.pii_guard,
                                  pii_scope=req.pii_scope)
        expires = _timestamp(req.expires_at, "expires_at")
        if expires is not None:
            out.expires_at = expires
        created = await self._call(request, self._client.accounts.CreateKey, out)
        info = key_json(created.info)
        return _json({"data": {"key": created.key, "id": info["id"], "label": info["label"],
                               "created_at": info["created_at"],
                               "expires_at": info["expires_at"]}}, status=201)

    async def get_key(self, request: Request) -> Response:
        info = await self._call(request, self._client.accounts.GetKey,
                                pb.KeyRef(id=request.path_params["key_id"]))
        return _json({"data": key_json(info)}, headers=stale_headers(info))

    async def update_key(self, request: Request) -> Response:
        body = await read_body(request, _MAX_BODY)
        req = _decode(body, UpdateKey)
        out = pb.UpdateKeyRequest(id=request.path_params["key_id"])
        if req.name is not None or req.label is not None:
            out.label = req.label if req.label is not None else (req.name or "")
        if req.disabled is not None:
            out.disabled = req.disabled
        if "limit" in orjson.loads(body or b"{}"):
            out.credit_limit = _limit(req.limit)
        expires = _timestamp(req.expires_at, "expires_at")
        if expires is not None:
            out.expires_at = expires
        if req.allowed_models is not None:
            out.allowed_models.extend(req.allowed_models)
            out.replace_allowed_models = True
        if req.allowed_ips is not None:
            out.allowed_ips.extend(req.allowed_ips)
            out.replace_allowed_ips = True
        for name in ("residency", "pii_guard", "pii_scope"):
            value = getattr(req, name)
            if value is not None:
                setattr(out, name, value)
        _limits(req, out)
        info = await self._call(request, self._client.accounts.UpdateKey, out)
        return _json({"data": key_json(info)})

    async def delete_key(self, request: Request) -> Response:
        reply = await self._call(request, self._client.accounts.DeleteKey,
                                 pb.KeyRef(id=request.path_params["key_id"]))
        return _json({"data": {"deleted": reply.deleted}})

    async def usage(self, request: Request) -> Response:
        params = request.query_params
        fmt = requested_format(request)
        groups = [g for g in params.get("group_by", "").split(",") if g]
        out = pb.UsageRequest(account_id=params.get("account_id", ""), group_by=groups,
                              since=_timestamp(params.get("since"), "since") or 0.0,
                              until=_timestamp(params.get("until"), "until") or 0.0)
        reply = await self._call(request, self._client.accounts.Usage, out)
        if fmt == "csv":
            return csv_download(usage_csv(reply, groups), "usage.csv")
        return _json({"data": usage_json(reply, groups), "currency": "RUB"})

    async def statement(self, request: Request) -> Response:
        params = request.query_params
        fmt = requested_format(request)
        reply = await self._call(request, self._client.accounts.GetStatement, pb.StatementRequest(
            account_id=params.get("account_id", ""), month=params.get("month", "")))
        if fmt == "json":
            return _json({"data": statement_json(reply)})
        return csv_download(statement_csv(reply), f"statement-{reply.account_id}-{reply.month}.csv")

    async def plan(self, request: Request) -> Response:
        reply = await self._call(request, self._client.accounts.GetPlan,
                                 pb.AccountRef(account_id=request.path_params["account_id"]))
        return _json({"data": plan_json(reply)})

    async def set_plan(self, request: Request) -> Response:
        req = _decode(await read_body(request, _MAX_BODY), SetPlan)
        out = pb.Plan(account_id=request.path_params["account_id"], tier=req.tier,
                      residency=req.residency, pii_guard=req.pii_guard, pii_scope=req.pii_scope)
        if req.outage_allowance is not None:
            out.outage_allowance = decimal_text(req.outage_allowance, "outage_allowance")
        _limits(req, out)
        reply = await self._call(request, self._client.accounts.SetPlan, out)
        return _json({"data": plan_json(reply)})
