"""JSON Schemas (2020-12, as OpenAPI 3.1 takes them) of the gateway's management and operational
response bodies (keys, credits, generations, usage, plans, models, routing, health), and the
small builders every schema module uses. Taken from the code that writes each body
(accounts_api, info, routing_api): properties always written are required; objects stay open
(additionalProperties unset) so that fields can be added without breaking a client."""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

STR: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
NUM: Schema = {"type": "number"}
BOOL: Schema = {"type": "boolean"}
NULL: Schema = {"type": "null"}
TIME: Schema = {"type": ["string", "null"], "format": "date-time",
                "description": "ISO 8601 UTC time, or null when not known"}
RUB: Schema = {"type": "number", "description": "RUB, an exact decimal"}
CURRENCY: Schema = {"const": "RUB"}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(props: Schema, optional: Schema | None = None, description: str = "") -> Schema:
    """An object whose `props` are always present and `optional` may be."""
    out: Schema = {"type": "object", "required": list(props),
                   "properties": {**props, **(optional or {})}}
    if description:
        out["description"] = description
    return out


def nullable(schema: Schema) -> Schema:
    kind = schema.get("type")
    if isinstance(kind, str) and set(schema) <= {"type", "description", "format"}:
        return {**schema, "type": [kind, "null"]}
    return {"anyOf": [schema, NULL]}


def array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


def mapping(values: Schema, description: str) -> Schema:
    """An object keyed by names (providers, say), every value `values`."""
    return {"type": "object", "additionalProperties": values, "description": description}


def data(schema: Schema) -> Schema:
    return obj({"data": schema})


def _rate_limit() -> Schema:
    per = nullable(INT)
    return obj({"requests": {**per, "description": "requests per minute (null: no limit)"},
                "interval": {"const": "1m"}, "requests_per_day": per,
                "tokens_per_minute": per, "concurrent": per})


def _key() -> Schema:
    strings = nullable(array(STR))
    return obj({
        "id": STR, "label": STR, "name": STR, "tier": STR, "prefix": STR, "account_id": STR,
        "disabled": BOOL, "limit": nullable(RUB), "limit_remaining": nullable(RUB),
        "usage": RUB, "usage_daily": RUB, "usage_weekly": RUB, "usage_monthly": RUB,
        "is_free_tier": BOOL, "created_at": TIME, "expires_at": TIME,
        "allowed_models": strings, "allowed_ips": strings,
        "residency": {**nullable(STR), "description": "the key's own policy (null: its "
                                                      "account's applies)"},
        "effective_residency": obj({"residency": STR, "source": STR}),
        "rate_limit": ref("RateLimit"),
    }, description="An API key (OpenRouter's key object plus XRouter's fields); never the key")


def _credits() -> Schema:
    return data(obj({"total_credits": RUB,
                     "total_usage": {**RUB, "description": "gross, as debited (net + VAT)"},
                     "total_usage_net": RUB, "total_usage_vat": RUB, "balance": RUB,
                     "currency": CURRENCY, "account_id": STR}))


def _generation() -> Schema:
    tokens = nullable(INT)
    attempt = obj({"provider_name": STR, "model": STR, "deployment": STR,
                   "outcome": {**STR, "description": "success, or why the attempt failed"},
                   "latency_ms": INT, "status": {**INT, "description": "upstream HTTP status"}})
    return obj({
        "id": STR, "model": STR, "provider_name": STR,
        "provider": {**STR, "description": "the origin's name for provider_name"},
        "streamed": BOOL, "created_at": TIME, "generation_time": INT, "latency": INT,
        "tokens_prompt": INT, "tokens_completion": INT, "native_tokens_prompt": tokens,
        "native_tokens_completion": tokens, "native_tokens_cached": INT,
        "native_tokens_reasoning": INT, "native_tokens_cache_write": INT,
        "total_cost": RUB, "currency": CURRENCY, "finish_reason": STR, "status": STR,
        "key_id": STR, "jurisdiction": nullable(STR),
        "price_currency": {**STR, "description": "ISO 4217: RUB, or the deployment's currency"},
        "fx_rate": {**nullable(STR), "description": "RUB per unit (null for RUB)"},
        "fx_date": {**nullable(STR), "description": "YYYY-MM-DD the rate was in force from "
                                                    "(null: RUB or a fixed rate)"},
        "cost_original": {**nullable(STR), "description": "the net cost in price_currency"},
        "cost_net": {**STR, "description": "total_cost = cost_net + vat; decimal strings"},
        "vat": STR, "vat_rate": {**STR, "description": "a fraction: \"0.22\""},
        "attempts": array(attempt),
    }, description="A generation's stats (OpenRouter's, XRouter's extras after them)")


def _usage_report() -> Schema:
    row = obj({"requests": INT, "prompt_tokens": INT, "completion_tokens": INT,
               "cached_tokens": INT, "cache_write_tokens": INT, "reasoning_tokens": INT,
               "cost": {**RUB, "description": "gross"}, "cost_net": RUB, "vat": RUB},
              {"day": STR, "key": STR, "model": STR, "provider": STR},
              description="One group; the grouping fields named in group_by are present")
    return obj({"data": array(row), "currency": CURRENCY})


def _plan() -> Schema:
    limit = nullable(INT)
    return obj({"account_id": STR, "tier": STR, "is_default": BOOL,
                "residency": nullable(STR), "requests_per_minute": limit,
                "outage_allowance": {**nullable(NUM), "description": (
                    "RUB each router replica may admit for the account's paid requests while "
                    "Redis cannot check credits; null: XROUTER_CREDITS_OUTAGE_ALLOWANCE")},
                "requests_per_day": limit, "tokens_per_minute": limit, "concurrent": limit})


def _model() -> Schema:
    prices = {name: {**STR, "description": "RUB per token, a decimal string"}
              for name in ("prompt", "completion", "request", "image", "input_cache_read",
                           "input_cache_write", "internal_reasoning")}
    return obj({
        "id": STR, "object": {"const": "model"}, "owned_by": STR, "name": STR,
        "created": INT, "description": STR, "context_length": INT,
        "architecture": obj({"modality": STR, "input_modalities": array(STR),
                             "output_modalities": array(STR), "tokenizer": STR,
                             "instruct_type": nullable(STR)}),
        "pricing": {**nullable(obj({**prices, "currency": CURRENCY})),
                    "description": "in RUB; null while the model is unpriced (no exchange rate)"},
        "unpriced": BOOL,
        "original_pricing": nullable(obj({"currency": STR, "prompt": STR, "completion": STR,
                                          "fx_rate": nullable(STR)})),
        "top_provider": obj({"context_length": INT, "max_completion_tokens": INT,
                             "is_moderated": BOOL}),
        "per_request_limits": NULL, "supported_parameters": array(STR),
        "providers": array(STR), "aliases": array(STR),
        "jurisdictions": {**array(nullable(STR)),
                          "description": "ISO 3166-1 alpha-2 (null: not declared)"},
    }, description="A model (OpenRouter's shape; prices in RUB)")


def _statement() -> Schema:
    money = {**STR, "description": "RUB to 1e-8, a decimal string"}
    line = obj({"date": STR, "generation_id": STR, "model": STR, "provider": STR,
                "prompt_tokens": INT, "completion_tokens": INT, "vat_rate": STR,
                "net": money, "vat": money, "gross": money})
    total = obj({"vat_rate": nullable(STR), "requests": INT, "prompt_tokens": INT,
                 "completion_tokens": INT, "net": money, "vat": money, "gross": money,
                 "net_rub": STR, "vat_rub": STR, "gross_rub": STR},
                description="Exact sums, and the kopeck figures (_rub)")
    return data(obj({"account_id": STR, "month": STR, "timezone": STR, "currency": CURRENCY,
                     "lines": array(line), "totals_by_rate": array(total), "totals": total},
                    description="An account's monthly statement: net + VAT = gross"))


def _explanation() -> Schema:
    number = nullable(NUM)
    candidate = obj({
        "model": STR, "provider": STR, "deployment": STR,
        "pricing": obj({"prompt": STR, "completion": STR, "currency": CURRENCY}),
        "eligible": BOOL, "rejected_by": nullable(STR), "score": NUM, "health": STR,
        "latency_ms": number, "throughput": number,
        "position": {**nullable(INT), "description": "place in the try order; null: not tried"},
    })
    return data(obj({"strategy": STR, "order": array(STR), "candidates": array(candidate)}))


def _health() -> Schema:
    state = {"enum": ["up", "down", "unknown"]}
    return obj({"status": {"enum": ["healthy", "degraded", "unhealthy"]},
                "components": obj({"api": state, "router": state, "db": state, "cache": state,
                                   "providers": mapping(STR, "provider name -> up, down or "
                                                             "unknown")})},
               {"mode": {"enum": ["embedded", "cluster"]}},
               description="Component health; mode is absent when no router answers")


def _provider_statuses() -> Schema:
    number = nullable(NUM)
    status = obj({"status": {"enum": ["operational", "degraded", "down", "unknown"]},
                  "latency": number, "success_rate": number, "last_updated": TIME})
    return data(mapping(status, "provider name -> its live status"))


def _provider_health() -> Schema:
    number = nullable(NUM)
    return mapping(obj({"status": {"enum": ["up", "degraded", "down", "unknown"]},
                        "latency": number, "error_rate": number, "last_check": TIME}),
                   "provider name -> its health")


def management_components() -> dict[str, Schema]:
    auth_key = data(obj({"label": STR, "usage": RUB, "limit": nullable(RUB),
                         "is_free_tier": BOOL, "rate_limit": ref("RateLimit")}))
    created_auth_key = data(obj({"key": {**STR, "description": "the key, shown only once"},
                                 "id": STR, "label": STR, "created_at": TIME,
                                 "expires_at": TIME}))
    return {
        "RateLimit": _rate_limit(),
        "Key": _key(),
        "KeyResponse": data(ref("Key")),
        "KeyList": data(array(ref("Key"))),
        "CreatedKey": obj({"data": ref("Key"),
                           "key": {**STR, "description": "the key, shown only once"}}),
        "AuthKey": auth_key,
        "CreatedAuthKey": created_auth_key,
        "Deleted": data(obj({"deleted": BOOL})),
        "Credits": _credits(),
        "Generation": _generation(),
        "Statement": _statement(),
        "GenerationResponse": data(ref("Generation")),
        "UsageReport": _usage_report(),
        "Plan": _plan(),
        "PlanResponse": data(ref("Plan")),
        "Model": _model(),
        "ModelList": obj({"object": {"const": "list"}, "data": array(ref("Model"))}),
        "RouteExplanation": _explanation(),
        "ModelParameters": data(obj({"model": STR, "supported_parameters": array(STR)})),
        "ProviderStatuses": _provider_statuses(),
        "ProviderHealth": _provider_health(),
        "Health": _health(),
        "Liveness": obj({"status": {"const": "alive"}}),
        "Readiness": obj({"status": {"const": "ready"}}),
        "OpenAPIDocument": obj({"openapi": STR, "info": {"type": "object"},
                                "paths": {"type": "object"}, "components": {"type": "object"}},
                               description="This document (OpenAPI 3.1)"),
    }
