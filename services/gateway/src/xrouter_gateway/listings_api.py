"""The lists people's pages show, over HTTP: generations a page at a time (/v1/generations), an
account's top-ups (/v1/credits/topups) and every account (/v1/accounts). The router decides who
may see what; this module checks the query's form and translates."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response

from xrouter.v1 import router_pb2 as pb
from xrouter_gateway.accounts_api import call_accounts, iso, num
from xrouter_gateway.errors import APIError
from xrouter_gateway.info import json_response
from xrouter_gateway.router_client import RouterClient

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
# 9999-12-31T23:59:59Z: the latest time the stores hold.
_LATEST = 253402300799.0


def query_limit(params: QueryParams) -> int:
    """`limit`: absent means DEFAULT_LIMIT; else an integer from 1 to MAX_LIMIT (400 otherwise)."""
    text = params.get("limit")
    if text is None:
        return DEFAULT_LIMIT
    value = int(text) if text.isascii() and text.isdigit() and len(text) < 10 else 0
    if not 1 <= value <= MAX_LIMIT:
        raise APIError(400, f"limit must be an integer from 1 to {MAX_LIMIT}", param="limit")
    return value


def query_time(params: QueryParams, name: str) -> float | None:
    """A time filter: unix seconds or ISO 8601 (UTC when it names no offset); absent or empty:
    none. 400 for anything else, or a time before 1970 or after 9999."""
    text = params.get(name, "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            value = math.nan
        else:
            value = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    if not (math.isfinite(value) and 0 <= value <= _LATEST):
        raise APIError(400, f"{name} must be unix seconds or an ISO 8601 time between 1970 and "
                            "9999", param=name)
    return value


def listed_generation_json(g: pb.GenerationInfo) -> dict[str, Any]:
    """One row of /v1/generations: what the generation used and cost, never what it said."""
    return {"id": g.id, "created_at": iso(g.created_at), "model": g.model,
            "provider": g.provider, "key_id": g.key_id, "key_label": g.key_label or None,
            "prompt_tokens": g.prompt_tokens, "completion_tokens": g.completion_tokens,
            "cached_tokens": g.cached_tokens, "cache_write_tokens": g.cache_write_tokens,
            "reasoning_tokens": g.reasoning_tokens, "cost": num(g.cost) or 0,
            "latency_ms": g.latency_ms, "streamed": g.streamed,
            "finish_reason": g.finish_reason or None}


class ListingsEndpoints:
    def __init__(self, client: RouterClient) -> None:
        self._client = client

    async def generations(self, request: Request) -> Response:
        params = request.query_params
        out = pb.ListGenerationsRequest(
            account_id=params.get("account_id", ""), key_id=params.get("key_id", ""),
            model=params.get("model", ""), provider=params.get("provider", ""),
            before=params.get("before", ""), limit=query_limit(params))
        for name in ("since", "until"):
            value = query_time(params, name)
            if value is not None:
                setattr(out, name, value)
        page = await call_accounts(request, self._client.accounts.ListGenerations, out)
        return json_response({"data": [listed_generation_json(g) for g in page.generations],
                              "next_before": page.next_before or None})

    async def top_ups(self, request: Request) -> Response:
        params = request.query_params
        reply = await call_accounts(request, self._client.accounts.ListTopUps, pb.TopUpsRequest(
            account_id=params.get("account_id", ""), limit=query_limit(params)))
        return json_response({"data": [
            {"amount": num(t.amount) or 0, "reference": t.reference or None,
             "created_at": iso(t.created_at)} for t in reply.top_ups], "currency": "RUB"})

    async def accounts(self, request: Request) -> Response:
        reply = await call_accounts(request, self._client.accounts.ListAccounts,
                                    pb.ListAccountsRequest())
        return json_response({"data": [
            {"account_id": a.account_id, "name": a.name or None, "balance": num(a.balance) or 0,
             "plan": a.plan or None, "created_at": iso(a.created_at)} for a in reply.accounts],
            "currency": "RUB"})
