"""The OpenAPI paths and response schemas of listings_api.py: /v1/generations (a page of
generations), /v1/credits/topups and /v1/accounts."""

from __future__ import annotations

from typing import Any

from xrouter_gateway.openapi_schemas import (
    BOOL,
    CURRENCY,
    INT,
    RUB,
    STR,
    TIME,
    Schema,
    array,
    nullable,
    obj,
)

_QUERY_DOC = {
    "limit": "1 to 200 (default 50)",
    "before": "the next_before of the previous page",
    "since": "created at or after: unix seconds or ISO 8601 (UTC unless it names an offset)",
    "until": "created before: as since",
    "account_id": "the master key: that account's (default: every account's); others: their own",
    "key_id": "a management key: one of its account's keys; a plain key: only itself",
    "model": "exact model id", "provider": "exact provider name",
}


def listings_components() -> dict[str, Schema]:
    row = obj({
        "id": STR, "created_at": TIME, "model": STR, "provider": STR, "key_id": STR,
        "key_label": nullable(STR), "prompt_tokens": INT, "completion_tokens": INT,
        "cached_tokens": INT, "cache_write_tokens": INT, "reasoning_tokens": INT,
        "cost": {**RUB, "description": "gross RUB, as debited (as /v1/generation's total_cost)"},
        "latency_ms": INT, "streamed": BOOL, "finish_reason": nullable(STR)},
        description="A generation's figures; never its prompt or completion")
    top_up = obj({"amount": RUB, "reference": nullable(STR), "created_at": TIME})
    account = obj({"account_id": STR, "name": nullable(STR), "balance": RUB,
                   "plan": {**nullable(STR), "description": "the tier of the plan set (null: "
                                                            "the default plan)"},
                   "created_at": TIME})
    return {
        "GenerationPage": obj({"data": array(row), "next_before": {
            **nullable(STR), "description": "pass as `before` for the next (older) page; "
                                            "null on the last page"}},
            description="Generations, newest first"),
        "TopUpList": obj({"data": array(top_up), "currency": CURRENCY},
                         description="Top-ups, newest first"),
        "AccountList": obj({"data": array(account), "currency": CURRENCY}),
    }


def _query(*names: str) -> list[dict[str, Any]]:
    return [{"name": n, "in": "query", "description": _QUERY_DOC[n], "schema": STR}
            for n in names]


def listings_paths(op: Any) -> dict[str, Any]:
    """`op` is openapi.py's builder of one operation (summary, schema, error statuses...)."""
    return {
        "/v1/generations": {"get": {
            **op("Generations, newest first, a page at a time (a key: its own; a management "
                 "key: its account's; the master key: any account's)", "GenerationPage",
                 400, 403),
            "parameters": _query("limit", "before", "since", "until", "model", "provider",
                                 "key_id", "account_id")}},
        "/v1/credits/topups": {"get": {
            **op("An account's top-ups, newest first (the master key names the account)",
                 "TopUpList", 400, 403, management=True),
            "parameters": _query("account_id", "limit")}},
        "/v1/accounts": {"get": op("Every account with its balance and plan (master key)",
                                   "AccountList", 403)},
    }
