"""Models, health, readiness, metrics and the OpenAPI document."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.routing import Route

from tests.integration.conftest import Stack
from tests.support import gateway_settings


async def test_models_in_openrouter_shape_with_rub_prices(stack: Stack) -> None:
    resp = await stack.http.get(f"{stack.url}/v1/models")
    assert resp.status_code == 200
    models = {m["id"]: m for m in resp.json()["data"]}
    echo = models["test/echo"]
    assert echo["pricing"] == {"prompt": "0.0001", "completion": "0.0002", "request": "0",
                               "image": "0", "input_cache_read": "0.0001",
                               "input_cache_write": "0.0001", "internal_reasoning": "0.0002",
                               "currency": "RUB"}
    assert models["test/buckets"]["pricing"] == {
        "prompt": "0.0001", "completion": "0.0002", "request": "0", "image": "0",
        "input_cache_read": "0.00001", "input_cache_write": "0.000125",
        "internal_reasoning": "0.0003", "currency": "RUB"}
    assert echo["context_length"] == 16000
    assert echo["architecture"]["input_modalities"] == ["text"]
    assert models["xrouter/demo"]["aliases"] == ["demo"]
    assert "tools" in models["test/tools"]["supported_parameters"]
    resp = await stack.http.get(f"{stack.url}/v1/models", params={"supported_parameters": "tools"})
    assert [m["id"] for m in resp.json()["data"]] == ["xrouter/demo", "test/tools"]
    resp = await stack.http.get(f"{stack.url}/v1/models", params={"provider": "demo"})
    assert [m["id"] for m in resp.json()["data"]] == ["xrouter/demo"]


async def test_health_reflects_live_provider_outcomes(stack: Stack) -> None:
    body = (await stack.http.get(f"{stack.url}/health")).json()
    assert body == {"status": "healthy", "mode": "embedded", "components": {
        "api": "up", "router": "up", "db": "up", "cache": "up", "providers": {
            "fake": "unknown", "fake2": "unknown", "fakebad": "unknown", "demo": "unknown"}}}
    for _ in range(3):
        await stack.chat({"model": "test/all-fail", "messages": [{"role": "user", "content": "x"}]})
    body = (await stack.http.get(f"{stack.url}/health")).json()
    assert body["status"] == "degraded"
    assert body["components"]["providers"]["fake"] == "down"
    assert (await stack.http.get(f"{stack.url}/readyz")).json() == {"status": "ready"}


async def test_metrics_count_requests_by_route_and_status_class(stack: Stack) -> None:
    await stack.chat({"model": "demo", "messages": [{"role": "user", "content": "x"}]})
    await stack.chat({"model": "ghost", "messages": [{"role": "user", "content": "x"}]})
    text = (await stack.http.get(f"{stack.url}/metrics")).text
    assert ('xrouter_gateway_requests_total{method="POST",route="/v1/chat/completions",'
            'status_class="2xx"} 1.0') in text
    assert ('xrouter_gateway_requests_total{method="POST",route="/v1/chat/completions",'
            'status_class="4xx"} 1.0') in text


async def test_openapi_documents_exactly_the_routes_served(stack: Stack) -> None:
    from prometheus_client import CollectorRegistry

    from xrouter_gateway.app import build_app

    spec = (await stack.http.get(f"{stack.url}/openapi.json")).json()
    app = build_app(gateway_settings("127.0.0.1:1"), registry=CollectorRegistry())
    inner: Any = app
    while not isinstance(inner, Starlette):  # the Starlette app inside the middleware
        inner = inner._app
    starlette: Starlette = inner
    served = {(r.path.replace(":path}", "}"), m.lower()) for r in starlette.routes
              if isinstance(r, Route)
              for m in (r.methods or ()) if m != "HEAD"}
    documented = {(path, method) for path, ops in spec["paths"].items() for method in ops}
    assert served == documented
    ref = spec["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"][
        "application/json"]["schema"]["$ref"]
    request = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert "temperature" in request["properties"] and "models" in request["properties"]


async def test_stream_metrics_time_to_first_token_and_sizes(stack: Stack) -> None:
    await stack.stream({"model": "test/echo", "messages": [{"role": "user", "content": "x"}]})
    text = (await stack.http.get(f"{stack.url}/metrics")).text
    assert 'xrouter_gateway_time_to_first_token_seconds_count{route="/v1/chat/completions"} 1.0' \
        in text
    assert "xrouter_gateway_open_streams 0.0" in text
    assert 'xrouter_gateway_request_size_bytes_count{route="/v1/chat/completions"} 1.0' in text
    assert 'xrouter_gateway_response_size_bytes_count{route="/v1/chat/completions"} 1.0' in text
