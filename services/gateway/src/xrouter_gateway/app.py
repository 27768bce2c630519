"""The gateway's one composition root: settings in, the ASGI application out."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from prometheus_client import CollectorRegistry
from prometheus_client.registry import REGISTRY
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from xrouter_common.logs import setup_logging
from xrouter_common.loop_lag import watch_loop_lag
from xrouter_common.otel import configure_tracing
from xrouter_gateway.accounts_api import AccountsEndpoints
from xrouter_gateway.anthropic_api import MessagesFormat
from xrouter_gateway.chat import ChatFormat
from xrouter_gateway.completions_api import CompletionsFormat
from xrouter_gateway.console import ConsoleAssets
from xrouter_gateway.console_session import ConsoleSessionEndpoints
from xrouter_gateway.embeddings import EmbeddingsEndpoint
from xrouter_gateway.errors import APIError
from xrouter_gateway.fast_routes import FastRoutes
from xrouter_gateway.inbound import InboundEndpoint
from xrouter_gateway.info import InfoEndpoints
from xrouter_gateway.listings_api import ListingsEndpoints
from xrouter_gateway.metrics import ASGIApp, GatewayMetrics, MetricsMiddleware
from xrouter_gateway.oauth_api import OAuthKeys
from xrouter_gateway.oauth_page import OAuthPages
from xrouter_gateway.observability import AccessLogMiddleware, TracingMiddleware
from xrouter_gateway.openapi import build_openapi
from xrouter_gateway.responses_api import ResponsesFormat
from xrouter_gateway.router_client import RouterClient
from xrouter_gateway.routing_api import RoutingEndpoints
from xrouter_gateway.settings import GatewaySettings
from xrouter_gateway.throttle import AuthThrottle, FailureTable

log = logging.getLogger("xrouter.gateway")


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, APIError)
    return exc.response()


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = "Not found" if exc.status_code == 404 else str(exc.detail)
    return APIError(exc.status_code, message).response(exc.headers)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s", request.url.path, exc_info=exc)
    return APIError(500, "Internal error in the gateway").response()


def build_app(settings: GatewaySettings, registry: CollectorRegistry = REGISTRY,
              tracer: Any | None = None) -> MetricsMiddleware:
    """Call inside the event loop that will serve: grpc.aio binds its channel to that loop.
    `tracer` is an OpenTelemetry tracer, or None when tracing is off (then no span code runs)."""
    client = RouterClient(settings.router_target, retries=settings.router_retries,
                          tls=settings.router_tls, drain=settings.request_timeout,
                          lanes=settings.router_lanes)
    metrics = GatewayMetrics(registry)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        lag = asyncio.ensure_future(watch_loop_lag(metrics.loop_lag))
        certificates = asyncio.ensure_future(client.watch_certificates())
        yield
        lag.cancel()
        certificates.cancel()
        await client.close()

    chat = InboundEndpoint(ChatFormat(), client, settings)
    messages = InboundEndpoint(MessagesFormat(), client, settings)
    responses = InboundEndpoint(ResponsesFormat(), client, settings)
    completions = InboundEndpoint(CompletionsFormat(), client, settings)
    embeddings = EmbeddingsEndpoint(client, settings)
    routing = RoutingEndpoints(client, settings)
    accounts = AccountsEndpoints(client, settings)
    listings = ListingsEndpoints(client)
    info = InfoEndpoints(client, registry)
    sessions = ConsoleSessionEndpoints(client)
    oauth, oauth_keys = OAuthPages(client, settings), OAuthKeys(client, settings)
    assets = ConsoleAssets()
    openapi = orjson.dumps(build_openapi())

    async def openapi_json(request: Request) -> Response:
        return Response(openapi, media_type="application/json")

    # The inference endpoints, which FastRoutes also takes straight to their handlers.
    inference = [
        Route("/v1/chat/completions", chat.handle, methods=["POST"]),
        Route("/v1/messages", messages.handle, methods=["POST"]),
        Route("/v1/responses", responses.handle, methods=["POST"]),
        Route("/v1/completions", completions.handle, methods=["POST"]),
    ]
    routes = [
        *inference,
        Route("/v1/embeddings", embeddings.handle, methods=["POST"]),
        Route("/v1/route/explain", routing.explain, methods=["POST"]),
        Route("/v1/models", info.models, methods=["GET"]),
        Route("/v1/models/{model_id:path}", info.model, methods=["GET"]),
        Route("/v1/key", accounts.key, methods=["GET"]),
        Route("/v1/auth/key", accounts.auth_key, methods=["GET"]),
        Route("/v1/auth/key", accounts.create_auth_key, methods=["POST"]),
        Route("/v1/auth/key/{key_id}", accounts.delete_key, methods=["DELETE"]),
        Route("/v1/keys", accounts.list_keys, methods=["GET"]),
        Route("/v1/keys", accounts.create_key, methods=["POST"]),
        Route("/v1/keys/{key_id}", accounts.get_key, methods=["GET"]),
        Route("/v1/keys/{key_id}", accounts.update_key, methods=["PATCH"]),
        Route("/v1/keys/{key_id}", accounts.delete_key, methods=["DELETE"]),
        Route("/v1/credits", accounts.credits, methods=["GET"]),
        Route("/v1/credits", accounts.top_up, methods=["POST"]),
        Route("/v1/credits/topups", listings.top_ups, methods=["GET"]),
        Route("/v1/generation", accounts.generation, methods=["GET"]),
        Route("/v1/generations", listings.generations, methods=["GET"]),
        Route("/v1/accounts", listings.accounts, methods=["GET"]),
        Route("/v1/usage", accounts.usage, methods=["GET"]),
        Route("/v1/statement", accounts.statement, methods=["GET"]),
        Route("/v1/accounts/{account_id}/plan", accounts.plan, methods=["GET"]),
        Route("/v1/accounts/{account_id}/plan", accounts.set_plan, methods=["PUT"]),
        Route("/v1/parameters/{model:path}", routing.parameters, methods=["GET"]),
        Route("/v1/providers/status", routing.providers_status, methods=["GET"]),
        Route("/health/providers", routing.health_providers, methods=["GET"]),
        Route("/health", info.health, methods=["GET"]),
        Route("/livez", info.livez, methods=["GET"]),
        Route("/readyz", info.readyz, methods=["GET"]),
        Route("/metrics", info.metrics, methods=["GET"]),
        Route("/openapi.json", openapi_json, methods=["GET"]),
        Route("/console/session", sessions.sign_in, methods=["POST"]),
        Route("/console/session", sessions.current, methods=["GET"]),
        Route("/console/session", sessions.sign_out, methods=["DELETE"]),
        Route("/auth", oauth.consent, methods=["GET"]),
        Route("/auth", oauth.approve, methods=["POST"]),
        Route("/auth/{name}", oauth.asset, methods=["GET"]),
        Route("/v1/auth/keys", oauth_keys.exchange, methods=["POST"]),
        Route("/v1/auth/keys", oauth_keys.preflight, methods=["OPTIONS"]),
        # The web console's assets; last, so that /console/session matches first.
        Route("/console", assets.index, methods=["GET"]),
        Route("/console/", assets.index, methods=["GET"]),
        Route("/console/{name:path}", assets.asset, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={APIError: _api_error, HTTPException: _http_error,
                            Exception: _unexpected},
    )
    inner: ASGIApp = FastRoutes(app, {(method, route.path): route.endpoint
                                       for route in inference for method in route.methods or ()})
    if settings.auth_failures_per_minute > 0:
        inner = AuthThrottle(inner, FailureTable(settings.auth_failures_per_minute,
                                                 settings.auth_throttle_addresses))
    if tracer is not None:
        inner = TracingMiddleware(inner, tracer)
    if settings.access_log:
        inner = AccessLogMiddleware(inner)
    return MetricsMiddleware(inner, metrics, frozenset(r.path for r in routes))


def create_app() -> MetricsMiddleware:
    """Factory for uvicorn (`xrouter_gateway.app:create_app`, factory=True) with several
    workers: each worker builds its app inside its own event loop."""
    setup_logging()
    return build_app(GatewaySettings.from_env(), tracer=configure_tracing("xrouter-gateway"))
