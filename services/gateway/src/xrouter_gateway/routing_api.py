"""Routing made visible: POST /v1/route/explain (a dry run), GET /v1/providers/status and
GET /health/providers (live statistics), GET /v1/parameters/{model}."""

from __future__ import annotations

from typing import Any

import grpc
from starlette.requests import Request
from starlette.responses import Response

from xrouter.v1 import router_pb2 as pb
from xrouter_gateway.convert import parse_request, to_proto
from xrouter_gateway.errors import APIError, from_rpc_error
from xrouter_gateway.inbound import api_key, call_metadata, read_body
from xrouter_gateway.info import json_response
from xrouter_gateway.router_client import RouterClient
from xrouter_gateway.settings import GatewaySettings

_TIMEOUT = 5.0
_HEALTH_WORDS = {"operational": "up", "degraded": "degraded", "down": "down", "unknown": "unknown"}


def _per_token(per_million: str) -> str:
    from decimal import Decimal

    return format((Decimal(per_million) / 1_000_000).normalize(), "f")


def candidate_json(c: pb.ExplainCandidate) -> dict[str, Any]:
    return {
        "model": c.model, "provider": c.provider, "deployment": c.deployment,
        "pricing": {"prompt": _per_token(c.price_prompt),
                    "completion": _per_token(c.price_completion), "currency": "RUB"},
        "eligible": not c.rejected_by, "rejected_by": c.rejected_by or None,
        "score": c.score, "health": c.health,
        "latency_ms": c.latency_ms if c.HasField("latency_ms") else None,
        "throughput": c.throughput if c.HasField("throughput") else None,
        "position": c.position if c.position >= 0 else None,
    }


class RoutingEndpoints:
    def __init__(self, client: RouterClient, settings: GatewaySettings) -> None:
        self._client = client
        self._settings = settings

    async def explain(self, request: Request) -> Response:
        key = api_key(request)
        req, raw = parse_request(await read_body(request, self._settings.max_body_bytes))
        proto = to_proto(req, raw, "explain")
        try:
            reply = await self._client.explain(proto, call_metadata(request, key, "explain"),
                                               _TIMEOUT)
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc) from None
        return json_response({"data": {
            "strategy": reply.strategy, "order": list(reply.order),
            "candidates": [candidate_json(c) for c in reply.candidates]}})

    async def _statuses(self) -> list[pb.ProviderStatusInfo]:
        try:
            return list((await self._client.provider_status(_TIMEOUT)).providers)
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc) from None

    async def providers_status(self, request: Request) -> Response:
        data = {p.name: {"status": p.status,
                         "latency": p.latency_ms if p.HasField("latency_ms") else None,
                         "success_rate": p.success_rate if p.HasField("success_rate") else None,
                         "last_updated": _iso(p.updated)}
                for p in await self._statuses()}
        return json_response({"data": data})

    async def health_providers(self, request: Request) -> Response:
        data = {p.name: {"status": _HEALTH_WORDS.get(p.status, p.status),
                         "latency": p.latency_ms if p.HasField("latency_ms") else None,
                         "error_rate": (1 - p.success_rate) if p.HasField("success_rate") else None,
                         "last_check": _iso(p.updated)}
                for p in await self._statuses()}
        return json_response(data)

    async def parameters(self, request: Request) -> Response:
        name = request.path_params["model"]
        try:
            reply = await self._client.list_models("", _TIMEOUT)
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc) from None
        for m in reply.models:
            if name == m.id or name in m.aliases:
                return json_response({"data": {"model": m.id,
                                               "supported_parameters": list(m.supported_parameters)}})
        raise APIError(404, f"Model {name!r} does not exist", param="model")


def _iso(unix: float) -> str | None:
    if not unix:
        return None
    from datetime import UTC, datetime

    return datetime.fromtimestamp(unix, UTC).isoformat().replace("+00:00", "Z")
