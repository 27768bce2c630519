"""The gateway's read-only endpoints: models, health, liveness, readiness, metrics, OpenAPI."""

from __future__ import annotations

from typing import Any

import grpc
import orjson
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.requests import Request
from starlette.responses import Response

from xrouter.v1 import router_pb2 as pb
from xrouter_gateway.errors import APIError, from_rpc_error
from xrouter_gateway.metrics import registry_for_scrape
from xrouter_gateway.router_client import RouterClient

_PROBE_TIMEOUT = 2.0


def json_response(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def model_json(m: pb.ModelInfo) -> dict[str, Any]:
    inputs = list(m.input_modalities) or ["text"]
    return {
        "id": m.id,
        "object": "model",  # OpenAI's SDKs: models.list / models.retrieve
        "owned_by": m.providers[0] if m.providers else "xrouter",
        "name": m.name,
        "created": m.created,
        "description": m.description,
        "context_length": m.context_length,
        "architecture": {"modality": "+".join(inputs) + "->text", "input_modalities": inputs,
                         "output_modalities": ["text"], "tokenizer": "Other",
                         "instruct_type": None},
        # In RUB; null while no deployment has an exchange rate for its currency (unpriced).
        "pricing": None if m.unpriced else _pricing(m),
        "unpriced": m.unpriced,
        # The shown price's deployment's own prices, when they are not in RUB.
        "original_pricing": _original_pricing(m),
        "top_provider": {"context_length": m.context_length,
                         "max_completion_tokens": m.max_completion_tokens,
                         "is_moderated": False},
        "per_request_limits": None,
        "supported_parameters": list(m.supported_parameters),
        "providers": list(m.providers),
        "aliases": list(m.aliases),
        # Where its providers keep data (ISO 3166-1 alpha-2; null: not declared).
        "jurisdictions": [j or None for j in m.jurisdictions],
    }


def _pricing(m: pb.ModelInfo) -> dict[str, Any]:
    return {"prompt": m.price_prompt, "completion": m.price_completion,
            "request": "0", "image": "0",
            "input_cache_read": m.price_cache_read or m.price_prompt,
            "input_cache_write": m.price_cache_write or m.price_prompt,
            "internal_reasoning": m.price_reasoning or m.price_completion,
            "currency": "RUB"}


def _original_pricing(m: pb.ModelInfo) -> dict[str, Any] | None:
    """The catalog's prices in their own currency and the rate to RUB in force (null: none)."""
    if m.price_currency in ("", "RUB"):
        return None
    return {"currency": m.price_currency, "prompt": m.original_price_prompt,
            "completion": m.original_price_completion, "fx_rate": m.fx_rate or None}


class InfoEndpoints:
    def __init__(self, client: RouterClient, registry: CollectorRegistry) -> None:
        self._client = client
        self._registry = registry

    async def models(self, request: Request) -> Response:
        provider = request.query_params.get("provider", "")
        wanted = {p for p in request.query_params.get("supported_parameters", "").split(",") if p}
        where = request.query_params.get("jurisdiction", "").lower()
        if where and not (len(where) == 2 and where.isascii() and where.isalpha()):
            raise APIError(400, "jurisdiction must be an ISO 3166-1 alpha-2 country code such as "
                           "'ru'", param="jurisdiction")
        try:
            reply = await self._client.list_models(provider, _PROBE_TIMEOUT * 5)
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc) from None
        data = [model_json(m) for m in reply.models
                if wanted <= set(m.supported_parameters)
                and (not where or where in m.jurisdictions)]
        return json_response({"object": "list", "data": data})

    async def model(self, request: Request) -> Response:
        """OpenAI's models.retrieve: one model by its id or an alias (ids contain '/')."""
        wanted = request.path_params["model_id"]
        try:
            reply = await self._client.list_models("", _PROBE_TIMEOUT * 5)
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc) from None
        for m in reply.models:
            if wanted == m.id or wanted in m.aliases:
                return json_response(model_json(m))
        raise APIError(404, f"Model '{wanted}' is not in the catalog", param="model")

    async def health(self, request: Request) -> Response:
        """The origin's component health: the API, a router replica, that replica's database
        and cache, and the providers as its traffic sees them (docs/operations.md)."""
        try:
            reply = await self._client.components(_PROBE_TIMEOUT)
        except grpc.aio.AioRpcError:
            body = {"status": "unhealthy", "components": {
                "api": "up", "router": "down", "db": "unknown", "cache": "unknown",
                "providers": {}}}
            return json_response(body, 503)
        providers = {p.name: p.status for p in reply.providers}
        degraded = "down" in (reply.db, reply.cache) or "down" in providers.values()
        body = {"status": "degraded" if degraded else "healthy", "components": {
            "api": "up", "router": "up", "db": reply.db, "cache": reply.cache,
            "providers": providers}, "mode": reply.mode}
        return json_response(body, 200)

    async def livez(self, request: Request) -> Response:
        return json_response({"status": "alive"})

    async def readyz(self, request: Request) -> Response:
        if await self._client.healthy(_PROBE_TIMEOUT):
            return json_response({"status": "ready"})
        raise APIError(503, "No router replica answers its health check", retry_after=1.0)

    async def metrics(self, request: Request) -> Response:
        return Response(generate_latest(registry_for_scrape(self._registry)),
                        media_type=CONTENT_TYPE_LATEST)
