"""One trace across both tiers (gateway span -> router span -> each provider attempt), and
one JSON log line per request in each tier, with ids and never content or keys."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.fakes.openai_upstream import FakeOpenAI
from tests.integration.conftest import AUTH
from tests.support import (
    MASTER_KEY,
    gateway_settings,
    router_settings,
    running_gateway,
    running_router,
)
from xrouter_common.logs import JsonFormatter

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
SECRET_PROMPT = "my secret prompt 12345"


async def test_one_trace_spans_gateway_router_and_each_attempt(catalog: Path,
                                                               upstream: FakeOpenAI) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    async with running_router(router_settings(catalog), tracer=tracer) as router:
        settings = gateway_settings(f"127.0.0.1:{router.server.port}")
        async with running_gateway(settings, tracer=tracer) as url, \
                httpx.AsyncClient(timeout=10) as http:
            resp = await http.post(f"{url}/v1/chat/completions", json={
                "model": "test/failover", "messages": [{"role": "user", "content": "hi"}]},
                headers={**AUTH, "traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"})
            assert resp.status_code == 200
    spans = {s.name: s for s in exporter.get_finished_spans()}
    gateway = spans["POST /v1/chat/completions"]
    rpc = spans["xrouter.v1.Router/Chat"]
    attempts = [s for s in exporter.get_finished_spans() if s.name == "provider.attempt"]
    assert {s.context.trace_id for s in (gateway, rpc, *attempts)} == {int(CLIENT_TRACE, 16)}
    assert gateway.parent is not None and gateway.parent.span_id == int(CLIENT_SPAN, 16)
    assert rpc.parent is not None and rpc.parent.span_id == gateway.context.span_id
    assert [a.parent.span_id for a in attempts if a.parent] == [rpc.context.span_id] * 2
    attrs = [dict(a.attributes or {}) for a in attempts]
    assert [(a["xrouter.provider"], a["xrouter.outcome"]) for a in attrs] == [
        ("fake", "server_error"), ("fake2", "success")]
    assert attrs[1]["xrouter.tokens.completion"] == 2
    assert dict(gateway.attributes or {})["http.status_code"] == 200
    assert dict(rpc.attributes or {})["xrouter.generation_id"] == resp.headers["x-generation-id"]


async def test_one_json_line_per_request_in_each_tier(catalog: Path, upstream: FakeOpenAI,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with running_router(router_settings(catalog)) as router:
        settings = gateway_settings(f"127.0.0.1:{router.server.port}")
        async with running_gateway(settings) as url, httpx.AsyncClient(timeout=10) as http:
            resp = await http.post(f"{url}/v1/chat/completions", json={
                "model": "test/echo", "messages": [{"role": "user", "content": SECRET_PROMPT}]},
                headers={**AUTH, "x-request-id": "req-42",
                         "traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"})
            assert resp.status_code == 200
    formatter = JsonFormatter()
    lines = [json.loads(formatter.format(r)) for r in caplog.records
             if r.name in ("xrouter.access", "xrouter.router")]
    gen = resp.headers["x-generation-id"]
    access = [line for line in lines if line["logger"] == "xrouter.access"]
    rpc = [line for line in lines if line["logger"] == "xrouter.router" and line["msg"] == "rpc"]
    assert len(access) == 1 and len(rpc) == 1
    assert {k: access[0][k] for k in ("method", "path", "status", "request_id", "generation_id",
                                      "trace_id")} == {
        "method": "POST", "path": "/v1/chat/completions", "status": 200,
        "request_id": "req-42", "generation_id": gen, "trace_id": CLIENT_TRACE}
    assert {k: rpc[0][k] for k in ("rpc", "generation_id", "request_id", "trace_id", "model",
                                   "provider", "attempts", "outcome")} == {
        "rpc": "Chat", "generation_id": gen, "request_id": "req-42", "trace_id": CLIENT_TRACE,
        "model": "test/echo", "provider": "fake", "attempts": 1, "outcome": "success"}
    everything = " ".join(json.dumps(line) for line in lines)
    assert SECRET_PROMPT not in everything and MASTER_KEY not in everything
