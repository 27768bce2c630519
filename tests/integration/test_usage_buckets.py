"""Usage that cannot be gamed, through a real gateway and router in the embedded mode: every
usage bucket from the provider to the response, /v1/generation and /v1/usage; streamed
reasoning billed and budgeted like content; counts that cannot be true charged at the estimate."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.openai_upstream import FakeOpenAI
from tests.integration.conftest import AUTH, events
from tests.support import (
    gateway_settings,
    gross,
    router_settings,
    running_gateway,
    running_router,
)
from xrouter_router.bootstrap import RouterApp
from xrouter_router.providers.tokenizer import Cl100kCounter

HELLO = [{"role": "user", "content": "hello there"}]
TOKENIZER = Cl100kCounter()


@dataclass
class Rig:
    url: str
    http: httpx.AsyncClient
    router: RouterApp

    async def key(self, balance: str) -> dict[str, str]:
        top_up = await self.http.post(f"{self.url}/v1/credits", headers=AUTH,
                                      json={"account_id": "acct-1", "amount": balance})
        assert top_up.status_code == 200, top_up.text
        created = await self.http.post(f"{self.url}/v1/keys", headers=AUTH,
                                       json={"account_id": "acct-1", "tier": "pro"})
        assert created.status_code == 201, created.text
        return {"Authorization": f"Bearer {created.json()['key']}"}

    async def stream(self, body: dict[str, Any], headers: dict[str, str]) -> list[dict[str, Any]]:
        lines: list[str] = []
        async with self.http.stream("POST", f"{self.url}/v1/chat/completions", headers=headers,
                                    json={**body, "stream": True}) as resp:
            assert resp.status_code == 200
            lines = [line async for line in resp.aiter_lines() if line]
        assert lines[-1] == "data: [DONE]"
        return events(lines)

    async def balance(self, headers: dict[str, str]) -> Decimal:
        credits = await self.http.get(f"{self.url}/v1/credits", headers=headers)
        return Decimal(str(credits.json()["data"]["balance"]))


@pytest.fixture
async def rig(catalog: Path, upstream: FakeOpenAI) -> AsyncIterator[Rig]:
    async with running_router(router_settings(catalog)) as router:
        target = f"127.0.0.1:{router.server.port}"
        async with running_gateway(gateway_settings(target)) as url, \
                httpx.AsyncClient(timeout=15.0) as http:
            yield Rig(url, http, router)


# test/buckets: prices 100 prompt, 10 cache read, 125 cache write, 200 completion, 300
# reasoning; the upstream reports 5 prompt tokens (2 read, 1 written) and 3 completion (2 of
# reasoning): (2*100 + 2*10 + 1*125) + (1*200 + 2*300) = 345 + 800 per million, net; the
# response shows (and the account pays) them with VAT.
def buckets_usage() -> dict[str, object]:
    return {
        "prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8,
        "cost": float(gross("0.001145")), "is_estimated": False,
        "prompt_tokens_details": {"cached_tokens": 2, "cache_write_tokens": 1},
        "completion_tokens_details": {"reasoning_tokens": 2},
        "cost_details": {"upstream_inference_cost": None,
                         "upstream_inference_prompt_cost": float(gross("0.000345")),
                         "upstream_inference_completions_cost": float(
                             gross("0.001145") - gross("0.000345"))},
    }


async def test_every_bucket_reaches_the_response_the_generation_and_the_report(rig: Rig) -> None:
    # The reservation prices 4096 completion tokens at the dearest bucket (reasoning, 300).
    headers = await rig.key("10")
    resp = await rig.http.post(f"{rig.url}/v1/chat/completions", headers=headers,
                               json={"model": "test/buckets", "messages": HELLO})
    assert resp.status_code == 200
    assert resp.json()["usage"] == buckets_usage()
    assert await rig.balance(headers) == Decimal(10) - gross("0.001145")

    found = await rig.http.get(f"{rig.url}/v1/generation", headers=headers,
                               params={"id": resp.json()["id"]})
    data = found.json()["data"]
    assert (data["tokens_prompt"], data["tokens_completion"], data["native_tokens_cached"],
            data["native_tokens_cache_write"], data["native_tokens_reasoning"],
            Decimal(str(data["total_cost"])), data["cost_net"]) == (
        5, 3, 2, 1, 2, gross("0.001145"), "0.001145")

    streamed = await rig.stream({"model": "test/buckets", "messages": HELLO}, headers)
    assert streamed[-1]["usage"] == buckets_usage()

    report = await rig.http.get(f"{rig.url}/v1/usage", headers=AUTH,
                                params={"group_by": "model", "account_id": "acct-1"})
    assert report.json()["data"] == [{
        "model": "test/buckets", "requests": 2, "prompt_tokens": 10, "completion_tokens": 6,
        "cached_tokens": 4, "cache_write_tokens": 2, "reasoning_tokens": 4,
        "cost": float(2 * gross("0.001145")), "cost_net": 0.00229,
        "vat": float(2 * gross("0.001145") - Decimal("0.00229"))}]


async def test_streamed_reasoning_is_billed_when_no_usage_arrives(rig: Rig) -> None:
    headers = await rig.key("1")
    evs = await rig.stream({"model": "test/reasoning", "messages": HELLO}, headers)
    reasoning = "".join(c["delta"].get("reasoning") or "" for e in evs for c in e["choices"])
    content = "".join(c["delta"].get("content") or "" for e in evs for c in e["choices"])
    assert reasoning == "".join(f" r{i}" for i in range(20)) and content == "echo: hello there"
    usage = evs[-1]["usage"]
    completion = await TOKENIZER.count([reasoning + content])
    assert (usage["completion_tokens"], usage["is_estimated"]) == (completion, True)
    assert completion > 20  # the reasoning's tokens, not only the echo's
    assert await rig.balance(headers) == Decimal(1) - Decimal(str(usage["cost"]))


async def test_reasoning_counts_toward_the_stream_budget(rig: Rig) -> None:
    # Enough for the prompt and a few dozen tokens of the endless reasoning stream.
    headers = await rig.key("0.006")
    evs = await rig.stream({"model": "test/drip-reasoning", "messages": HELLO}, headers)
    error = next(e["error"] for e in evs if "error" in e)
    assert error["code"] == "budget_exhausted"
    assert await rig.balance(headers) >= 0


async def test_negative_counts_are_charged_at_the_estimate_counted_and_logged(
        rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    headers = await rig.key("1.22")  # 1 RUB net, with 22% VAT
    with caplog.at_level(logging.WARNING, logger="xrouter.router.usage"):
        resp = await rig.http.post(f"{rig.url}/v1/chat/completions", headers=headers,
                                   json={"model": "test/negative", "messages": HELLO})
    assert resp.status_code == 200
    usage = resp.json()["usage"]
    prompt = await TOKENIZER.count(["hello there"]) + 4
    completion = await TOKENIZER.count(["echo: hello there"])
    assert (usage["prompt_tokens"], usage["completion_tokens"], usage["is_estimated"]) == (
        prompt, completion, True)
    assert Decimal(str(usage["cost"])) == gross(
        (prompt * 100 + completion * 200) / Decimal(1_000_000))
    assert await rig.balance(headers) == Decimal("1.22") - Decimal(str(usage["cost"]))
    value = rig.router.metrics.registry.get_sample_value
    assert value("xrouter_router_implausible_usage_total", {"provider": "fake"}) == 1.0
    assert [r.getMessage().split(":")[0] for r in caplog.records
            if r.name == "xrouter.router.usage"] == [
        "provider fake reported implausible usage (negative count)"]
