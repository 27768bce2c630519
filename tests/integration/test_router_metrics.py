"""The router's metrics after real traffic: generations, attempts, failovers, tokens, cost,
deployment health, all with bounded labels."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.fakes.openai_upstream import FakeOpenAI
from tests.integration.conftest import AUTH
from tests.support import (
    gateway_settings,
    gross,
    router_settings,
    running_gateway,
    running_router,
)

HELLO = [{"role": "user", "content": "hello there"}]


async def test_router_metrics_after_traffic(catalog: Path, upstream: FakeOpenAI) -> None:
    async with running_router(router_settings(catalog)) as router:
        target = f"127.0.0.1:{router.server.port}"
        async with running_gateway(gateway_settings(target)) as url, \
                httpx.AsyncClient(timeout=10) as http:
            chat = f"{url}/v1/chat/completions"
            assert (await http.post(chat, headers=AUTH, json={
                "model": "test/failover", "messages": HELLO})).status_code == 200
            async with http.stream("POST", chat, headers=AUTH, json={
                    "model": "test/echo", "messages": HELLO, "stream": True}) as resp:
                await resp.aread()
            assert (await http.post(chat, headers=AUTH, json={
                "model": "test/all-fail", "messages": HELLO})).status_code == 502
            assert (await http.post(chat, headers=AUTH, json={
                "model": "ghost", "messages": HELLO})).status_code == 404
    value = router.metrics.registry.get_sample_value
    assert value("xrouter_router_generations_total", {
        "model": "test/failover", "provider": "fake2", "outcome": "success",
        "streamed": "false"}) == 1.0
    assert value("xrouter_router_generations_total", {
        "model": "test/echo", "provider": "fake", "outcome": "success", "streamed": "true"}) == 1.0
    assert value("xrouter_router_generations_total", {
        "model": "test/all-fail", "provider": "none", "outcome": "upstream",
        "streamed": "false"}) == 1.0
    assert value("xrouter_router_generations_total", {
        "model": "unknown", "provider": "none", "outcome": "model_not_found",
        "streamed": "false"}) == 1.0
    assert value("xrouter_router_failovers_total", {"model": "test/failover"}) == 1.0
    assert value("xrouter_router_failovers_total", {"model": "test/all-fail"}) == 1.0
    assert value("xrouter_router_provider_attempts_total",
                 {"provider": "fake", "outcome": "server_error"}) == 2.0
    assert value("xrouter_router_provider_attempts_total",
                 {"provider": "fake2", "outcome": "rate_limited"}) == 1.0
    assert value("xrouter_router_provider_attempts_total",
                 {"provider": "fake", "outcome": "success"}) == 1.0
    assert value("xrouter_router_tokens_total", {"model": "test/echo", "provider": "fake",
                                                 "kind": "completion", "source": "native"}) == 3.0
    assert value("xrouter_router_cost_rub_total",  # 0.0011 net, counted gross
                 {"model": "test/echo", "provider": "fake"}) == float(gross("0.0011"))
    assert value("xrouter_router_deployment_health",
                 {"deployment": "test/failover@fake", "provider": "fake"}) == 1.0
    assert value("xrouter_router_provider_attempt_duration_seconds_count",
                 {"provider": "fake"}) == 3.0
