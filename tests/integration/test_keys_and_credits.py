"""Keys, prepaid credits, rate limits and the usage ledger in the embedded mode (SQLite and the
in-process limiter), through a real gateway and router."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import orjson

from tests.integration.conftest import AUTH, Stack, events
from tests.support import clear_of_minute_boundary, gross, until

HELLO = [{"role": "user", "content": "hello there"}]


async def _key(stack: Stack, **body: Any) -> tuple[str, dict[str, Any]]:
    resp = await stack.http.post(f"{stack.url}/v1/keys", headers=AUTH,
                                 json={"account_id": "acct-1", "tier": "pro", **body})
    assert resp.status_code == 201, resp.text
    data = resp.json()
    return data["key"], data["data"]


async def _top_up(stack: Stack, account: str, amount: str) -> None:
    resp = await stack.http.post(f"{stack.url}/v1/credits", headers=AUTH,
                                 json={"account_id": account, "amount": amount})
    assert resp.status_code == 200, resp.text


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_a_key_pays_exactly_and_sees_only_its_own_generations(stack: Stack) -> None:
    await _top_up(stack, "acct-1", "1.22")  # 1 RUB net and 22% VAT: credits are bought gross
    key, info = await _key(stack, name="app")
    assert key.startswith("xr-pro-") and info["prefix"] == key[:13] + "..."
    assert info["rate_limit"]["requests"] == 100 and info["rate_limit"]["concurrent"] == 20
    resp = await stack.chat({"model": "test/echo", "messages": HELLO}, headers=_bearer(key))
    assert resp.status_code == 200
    assert resp.headers["x-ratelimit-limit"] == "100"
    assert resp.headers["x-ratelimit-remaining"] == "99"
    gen = resp.json()["id"]
    # 5 + 3 tokens at 100 and 200 RUB a million is 0.0011 net; the client pays it with VAT.
    cost = Decimal(str(resp.json()["usage"]["cost"]))
    assert cost == gross("0.0011")
    credits = (await stack.http.get(f"{stack.url}/v1/credits", headers=_bearer(key))).json()
    assert Decimal(str(credits["data"]["total_usage"])) == cost
    assert Decimal(str(credits["data"]["total_usage_net"])) == Decimal("0.0011")
    assert Decimal(str(credits["data"]["total_usage_vat"])) == cost - Decimal("0.0011")
    assert Decimal(str(credits["data"]["balance"])) == Decimal("1.22") - cost
    me = (await stack.http.get(f"{stack.url}/v1/key", headers=_bearer(key))).json()["data"]
    assert Decimal(str(me["usage"])) == cost
    assert me["label"] == "app" and me["is_free_tier"] is False
    stats = await stack.http.get(f"{stack.url}/v1/generation", params={"id": gen},
                                 headers=_bearer(key))
    assert stats.status_code == 200
    data = stats.json()["data"]
    assert (data["id"], data["model"], data["provider_name"], data["tokens_prompt"],
            data["tokens_completion"], Decimal(str(data["total_cost"])), data["streamed"]) == (
        gen, "test/echo", "fake", 5, 3, cost, False)
    assert data["provider"] == data["provider_name"]  # the origin's name beside OpenRouter's
    assert data["attempts"][0]["outcome"] == "success"
    other, _ = await _key(stack, account_id="acct-2")
    hidden = await stack.http.get(f"{stack.url}/v1/generation", params={"id": gen},
                                  headers=_bearer(other))
    assert hidden.status_code == 404


async def test_mistyped_unknown_and_revoked_keys(stack: Stack) -> None:
    await _top_up(stack, "acct-1", "1.22")
    key, info = await _key(stack)
    typo = key[:-1] + ("a" if key[-1] != "a" else "b")
    resp = await stack.chat({"model": "test/echo", "messages": HELLO}, headers=_bearer(typo))
    assert resp.status_code == 401 and "checksum" in resp.json()["error"]["message"]
    assert (await stack.chat({"model": "test/echo", "messages": HELLO},
                             headers=_bearer(key))).status_code == 200
    deleted = await stack.http.delete(f"{stack.url}/v1/keys/{info['id']}", headers=AUTH)
    assert deleted.json() == {"data": {"deleted": True}}
    resp = await stack.chat({"model": "test/echo", "messages": HELLO}, headers=_bearer(key))
    assert resp.status_code == 401


async def test_requests_per_minute_is_exact_and_answered_429_with_headers(stack: Stack) -> None:
    await _top_up(stack, "acct-1", "100")
    key, _ = await _key(stack, requests_per_minute=5)
    await clear_of_minute_boundary()
    results = await asyncio.gather(*(stack.chat({"model": "test/echo", "messages": HELLO},
                                                headers=_bearer(key)) for _ in range(12)))
    codes = sorted(r.status_code for r in results)
    assert codes == [200] * 5 + [429] * 7
    limited = next(r for r in results if r.status_code == 429)
    assert limited.json()["error"]["type"] == "rate_limit_error"
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.headers["x-ratelimit-limit"] == "5"
    assert limited.headers["x-ratelimit-remaining"] == "0"


async def test_credits_402_names_the_limit_that_ran_out(stack: Stack) -> None:
    await _top_up(stack, "acct-1", "0.001")
    key, _ = await _key(stack)
    body = {"model": "test/echo", "messages": HELLO, "max_tokens": 100}
    resp = await stack.chat(body, headers=_bearer(key))
    assert resp.status_code == 402
    assert resp.json()["error"]["metadata"]["limit_source"] == "account"
    await _top_up(stack, "acct-1", "10")
    limited, _ = await _key(stack, limit="0.001")
    resp = await stack.chat(body, headers=_bearer(limited))
    assert resp.status_code == 402
    assert resp.json()["error"]["metadata"]["limit_source"] == "key"


async def test_concurrent_spending_never_exceeds_the_balance(stack: Stack) -> None:
    """30 requests at once against 0.1 RUB, each reserving its worst case: (prompt 6 x 100 +
    100 completion x 200) / 1e6 = 0.0206 RUB net, 0.025132 with VAT. The upstream holds every
    admitted request until all 30 are either held there or refused, so exactly the
    reservations that fit are admitted, however fast the machine; then each is charged its
    real (smaller) cost."""
    await _top_up(stack, "acct-1", "0.1")
    key, _ = await _key(stack, concurrent=100)
    body = {"model": "test/held", "messages": HELLO, "max_tokens": 100}
    upstream = stack.upstream
    held_before = upstream.models_called().count("fake-hold")
    upstream.holding = "first"
    try:
        tasks = [asyncio.ensure_future(stack.chat(body, headers=_bearer(key))) for _ in range(30)]

        async def settled() -> bool:
            held = upstream.models_called().count("fake-hold") - held_before
            refused = sum(1 for t in tasks if t.done() and t.result().status_code == 402)
            return held + refused == 30
        # A bound for a broken build, not a speed expectation.
        await until(settled, 60, "every request held upstream or refused")
    finally:
        upstream.holding = ""
        upstream.release()
    results = await asyncio.gather(*tasks)
    ok = [r for r in results if r.status_code == 200]
    worst = gross(Decimal("0.0206"))
    assert {r.status_code for r in results} == {200, 402}
    assert len(ok) == int(Decimal("0.1") / worst) == 3
    spent = sum(Decimal(str(r.json()["usage"]["cost"])) for r in ok)
    credits = (await stack.http.get(f"{stack.url}/v1/credits", headers=_bearer(key))).json()
    balance = Decimal(str(credits["data"]["balance"]))
    assert balance >= 0
    assert balance == Decimal("0.1") - spent


async def test_a_stream_stops_cleanly_when_the_money_runs_out(stack: Stack) -> None:
    # Enough for the prompt and a few dozen tokens of the endless test/drip stream.
    await _top_up(stack, "acct-1", "0.006")
    key, _ = await _key(stack)
    lines: list[str] = []
    async with stack.http.stream("POST", f"{stack.url}/v1/chat/completions",
                                 headers=_bearer(key),
                                 json={"model": "test/drip", "messages": HELLO,
                                       "stream": True}) as resp:
        assert resp.status_code == 200
        async for line in resp.aiter_lines():
            if line:
                lines.append(line)
    evs = events(lines)
    finishes = [c["finish_reason"] for e in evs for c in e.get("choices", []) if c["finish_reason"]]
    assert "length" in finishes
    error = next(e["error"] for e in evs if "error" in e)
    assert error["code"] == "budget_exhausted"
    usage = evs[-1]["usage"]
    assert lines[-1] == "data: [DONE]"
    credits = (await stack.http.get(f"{stack.url}/v1/credits", headers=_bearer(key))).json()
    assert Decimal(str(credits["data"]["balance"])) >= 0
    assert Decimal(str(credits["data"]["total_usage"])) == Decimal(str(usage["cost"]))
    for _ in range(1500):  # the upstream notices at its next write (30 s bound)
        if stack.upstream.disconnects:
            break
        await asyncio.sleep(0.02)
    assert stack.upstream.disconnects == ["fake-drip"]


async def test_usage_report_and_management_rights(stack: Stack) -> None:
    await _top_up(stack, "acct-1", "1.22")
    key, _ = await _key(stack)
    for model in ("test/echo", "test/echo", "test/failover"):
        assert (await stack.chat({"model": model, "messages": HELLO},
                                 headers=_bearer(key))).status_code == 200
    report = await stack.http.get(f"{stack.url}/v1/usage", headers=AUTH,
                                  params={"group_by": "model", "account_id": "acct-1"})
    rows = {r["model"]: r for r in report.json()["data"]}
    assert rows["test/echo"]["requests"] == 2 and rows["test/failover"]["requests"] == 1
    echo = rows["test/echo"]
    assert (Decimal(str(echo["cost"])), Decimal(str(echo["cost_net"])), Decimal(str(echo["vat"]))) \
        == (2 * gross("0.0011"), Decimal("0.0022"), 2 * gross("0.0011") - Decimal("0.0022"))
    forbidden = await stack.http.get(f"{stack.url}/v1/usage", headers=_bearer(key))
    assert forbidden.status_code == 403
    assert (await stack.http.post(f"{stack.url}/v1/keys", headers=_bearer(key),
                                  json={"tier": "free"})).status_code == 403
    body = orjson.loads((await stack.http.get(f"{stack.url}/v1/keys", headers=AUTH)).content)
    assert all("key" not in k and k["prefix"].endswith("...") for k in body["data"])


async def test_embeddings_are_charged_recorded_and_refused_without_credit(stack: Stack) -> None:
    await _top_up(stack, "acct-1", "0.0001")
    key, _ = await _key(stack)
    url = f"{stack.url}/v1/embeddings"
    # Reserved from the input's UTF-8 bytes (12 tokens at 10 RUB a million): more than 0.0001.
    refused = await stack.http.post(url, headers=_bearer(key),
                                    json={"model": "test/embed", "input": "hello there!"})
    assert refused.status_code == 402
    resp = await stack.http.post(url, headers=_bearer(key),
                                 json={"model": "test/embed", "input": "hello"})
    assert resp.status_code == 200
    # The fake reports 2 tokens (5 // 4 + 1) at 10 RUB a million: 0.00002 net.
    cost = gross("0.00002")
    assert Decimal(str(resp.json()["usage"]["cost"])) == cost
    credits = (await stack.http.get(f"{stack.url}/v1/credits", headers=_bearer(key))).json()
    assert Decimal(str(credits["data"]["balance"])) == Decimal("0.0001") - cost
    stats = await stack.http.get(f"{stack.url}/v1/generation",
                                 params={"id": resp.headers["x-generation-id"]},
                                 headers=_bearer(key))
    assert stats.status_code == 200
    data = stats.json()["data"]
    assert (data["model"], data["provider_name"], data["tokens_prompt"],
            Decimal(str(data["total_cost"])), data["streamed"]) == ("test/embed", "fake2", 2, cost,
                                                                   False)
