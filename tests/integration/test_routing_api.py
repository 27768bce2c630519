"""Routing made visible and live: the route header, /v1/route/explain, provider status from
real traffic, breakers, parameters and embeddings, through a real gateway and router."""

from __future__ import annotations

import base64
import struct
from decimal import Decimal

from tests.integration.conftest import AUTH, Stack
from tests.support import gross

HELLO = [{"role": "user", "content": "hello there"}]


async def _explain(stack: Stack, body: dict[str, object]) -> dict[str, object]:
    resp = await stack.http.post(f"{stack.url}/v1/route/explain", json=body, headers=AUTH)
    assert resp.status_code == 200, resp.text
    data: dict[str, object] = resp.json()["data"]
    return data


async def test_route_header_names_the_deployment_and_every_attempt(stack: Stack) -> None:
    resp = await stack.chat({"model": "test/failover", "messages": HELLO})
    assert resp.headers["x-xrouter-route"] == (
        "test/failover@fake2; attempts=test/failover@fake:server_error,test/failover@fake2:success")
    resp, _ = await stack.stream({"model": "test/failover", "messages": HELLO})
    assert resp.headers["x-xrouter-route"].startswith("test/failover@fake2; attempts=")


async def test_explain_matches_what_the_next_requests_do(stack: Stack) -> None:
    served = []
    for _ in range(5):
        plan = await _explain(stack, {"model": "test/cheap-and-dear", "messages": HELLO})
        resp = await stack.chat({"model": "test/cheap-and-dear", "messages": HELLO})
        assert resp.headers["x-xrouter-route"].split(";")[0] == plan["order"][0]  # type: ignore[index]
        served.append(resp.json()["provider"])
    # Inverse square of the price: the cheap deployment (half the price) gets 4 of 5 requests.
    assert served.count("fake") == 4 and served.count("fake2") == 1


async def test_explain_lists_every_candidate_with_its_fate(stack: Stack) -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    plan = await _explain(stack, {"model": "test/echo", "models": ["test/tools"],
                                  "messages": HELLO, "tools": tools})
    assert plan["strategy"] == "balanced"
    assert plan["order"] == ["test/tools@fake"]
    candidates = {c["deployment"]: c for c in plan["candidates"]}  # type: ignore[attr-defined]
    assert candidates["test/echo@fake"]["rejected_by"] == "does not support tools"
    assert candidates["test/echo@fake"]["position"] is None
    assert candidates["test/tools@fake"]["position"] == 0
    assert candidates["test/tools@fake"]["pricing"] == {"prompt": "0.0001", "completion": "0.0002",
                                                       "currency": "RUB"}
    nothing = await _explain(stack, {"model": "test/echo", "messages": HELLO, "tools": tools})
    assert nothing["order"] == []


async def test_a_recent_failure_moves_a_deployment_behind_the_others(stack: Stack) -> None:
    await stack.chat({"model": "test/failover", "messages": HELLO})
    resp = await stack.chat({"model": "test/failover", "messages": HELLO})
    assert resp.headers["x-xrouter-route"] == (
        "test/failover@fake2; attempts=test/failover@fake2:success")
    assert stack.upstream.models_called() == ["fake-500", "fake-echo", "fake-echo"]
    plan = await _explain(stack, {"model": "test/failover", "messages": HELLO})
    assert plan["order"] == ["test/failover@fake2", "test/failover@fake"]
    health = {c["deployment"]: c["health"] for c in plan["candidates"]}  # type: ignore[attr-defined]
    assert health == {"test/failover@fake": "recently_failed", "test/failover@fake2": "healthy"}
    status = (await stack.http.get(f"{stack.url}/v1/providers/status")).json()["data"]
    assert status["fake"]["status"] == "degraded"
    assert status["fake2"]["status"] == "operational"


async def test_breaker_opens_after_three_failures_and_status_shows_it(stack: Stack) -> None:
    for _ in range(3):
        assert (await stack.chat({"model": "test/all-fail", "messages": HELLO})).status_code == 502
    plan = await _explain(stack, {"model": "test/all-fail", "messages": HELLO})
    health = {c["deployment"]: c["health"] for c in plan["candidates"]}  # type: ignore[attr-defined]
    assert health == {"test/all-fail@fake": "open", "test/all-fail@fake2": "open"}
    status = (await stack.http.get(f"{stack.url}/v1/providers/status")).json()["data"]
    assert status["fake"]["status"] == "down" and status["fake2"]["status"] == "down"
    assert status["demo"] == {"status": "unknown", "latency": None, "success_rate": None,
                              "last_updated": None}
    health_doc = (await stack.http.get(f"{stack.url}/health/providers")).json()
    assert health_doc["fake"]["status"] == "down" and health_doc["fake"]["error_rate"] == 1.0
    # Open breakers are still tried (last) when nothing else can serve: real traffic probes.
    assert (await stack.chat({"model": "test/all-fail", "messages": HELLO})).status_code == 502
    assert stack.upstream.models_called()[-2:] == ["fake-500", "fake-429"]


async def test_parameters_endpoint(stack: Stack) -> None:
    resp = await stack.http.get(f"{stack.url}/v1/parameters/test/tools")
    assert resp.status_code == 200
    data = resp.json()["data"]
    assert data["model"] == "test/tools" and {"tools", "tool_choice"} <= set(data["supported_parameters"])
    assert (await stack.http.get(f"{stack.url}/v1/parameters/demo")).json()["data"]["model"] \
        == "xrouter/demo"
    assert (await stack.http.get(f"{stack.url}/v1/parameters/nope/none")).status_code == 404


async def test_embeddings_fail_over_and_keep_input_order(stack: Stack) -> None:
    url = f"{stack.url}/v1/embeddings"
    resp = await stack.http.post(url, headers=AUTH, json={"model": "test/embed",
                                                           "input": ["hi", "there"]})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["object"] == "list" and body["provider"] == "fake2"
    assert [d["index"] for d in body["data"]] == [0, 1]
    assert body["data"][0]["embedding"] == [2.0, 104.0, 105.0, 0.0]
    assert body["data"][1]["embedding"] == [5.0, 116.0, 104.0, 101.0]
    assert body["usage"]["prompt_tokens"] == 3
    assert Decimal(str(body["usage"]["cost"])) == gross("0.00003")  # net 0.00003, with VAT
    resp = await stack.http.post(url, headers=AUTH, json={"model": "test/embed", "input": "hi",
                                                           "encoding_format": "base64"})
    packed = base64.b64decode(resp.json()["data"][0]["embedding"])
    assert list(struct.unpack("<4f", packed)) == [2.0, 104.0, 105.0, 0.0]
    resp = await stack.http.post(url, headers=AUTH, json={"model": "test/echo", "input": "hi"})
    assert resp.status_code == 503
    resp = await stack.http.post(url, headers=AUTH, json={"model": "test/embed", "input": []})
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "input"
