"""/v1/generations, /v1/credits/topups and /v1/accounts through a real gateway and router, in the
embedded mode and in the cluster mode (two replicas, PostgreSQL HA, Redis Cluster): what each
kind of key may list (never another account's rows), the exact rows, paging to the end, and
malformed queries answered 400 with the JSON error, never 500."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.openai_upstream import FakeOpenAI
from tests.infra.fixtures import redis_cluster  # noqa: F401 - the session fixture
from tests.infra.pg_fixtures import postgres_ha  # noqa: F401 - the session fixture
from tests.integration.cluster_support import running_mode
from tests.integration.conftest import AUTH

HELLO = [{"role": "user", "content": "hello there"}]
Headers = dict[str, str]


@dataclass
class Served:
    url: str
    http: httpx.AsyncClient
    prefix: str  # accounts are named after it: the Redis Cluster outlives a test

    async def get(self, path: str, headers: Headers, **params: str) -> httpx.Response:
        return await self.http.get(f"{self.url}{path}", headers=headers, params=params)

    async def key(self, account: str, tier: str = "pro", name: str = "") -> tuple[Headers, str]:
        resp = await self.http.post(f"{self.url}/v1/keys", headers=AUTH,
                                    json={"account_id": account, "tier": tier, "name": name})
        assert resp.status_code == 201, resp.text
        return {"Authorization": f"Bearer {resp.json()['key']}"}, resp.json()["data"]["id"]

    async def top_up(self, account: str, amount: str, reference: str) -> None:
        resp = await self.http.post(f"{self.url}/v1/credits", headers=AUTH, json={
            "account_id": account, "amount": amount, "reference": reference})
        assert resp.status_code == 200, resp.text

    async def chat(self, headers: Headers, stream: bool = False) -> str:
        resp = await self.http.post(f"{self.url}/v1/chat/completions", headers=headers,
                                    json={"model": "test/echo", "messages": HELLO,
                                          "stream": stream})
        assert resp.status_code == 200, resp.text
        return resp.headers["x-generation-id"]

    async def generations(self, headers: Headers, **params: str) -> dict[str, Any]:
        resp = await self.get("/v1/generations", headers, **params)
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body


@pytest.fixture(params=["embedded", "cluster"])
async def served(request: pytest.FixtureRequest, tmp_path: Path, catalog: Path,
                 upstream: FakeOpenAI) -> AsyncIterator[Served]:
    async with running_mode(request.param, request, tmp_path, catalog) as (url, http, account):
        yield Served(url, http, account)


async def _recorded(s: Served, account: str, count: int) -> None:
    """In the cluster mode records reach PostgreSQL through the ledger stream a moment after
    the answers: wait (30 s at most, a bound for a loaded machine) until the account has
    `count`."""
    deadline = time.monotonic() + 30
    while len((await s.generations(AUTH, account_id=account, limit="200"))["data"]) < count:
        assert time.monotonic() < deadline, "the generations were not recorded"
        await asyncio.sleep(0.05)


def _ids(body: dict[str, Any]) -> list[str]:
    return [row["id"] for row in body["data"]]


async def test_each_key_lists_what_it_may_and_pages_to_the_end(served: Served) -> None:
    s = served
    a, b = f"{s.prefix}-a", f"{s.prefix}-b"
    for account in (a, b):
        await s.top_up(account, "100", "")
    manager, _ = await s.key(a, tier="mgmt")
    one, one_id = await s.key(a, name="one")
    two, two_id = await s.key(a)
    other, other_id = await s.key(b)
    mine = [await s.chat(one), await s.chat(one, stream=True), await s.chat(one)]
    theirs, elsewhere = await s.chat(two), await s.chat(other)
    await _recorded(s, a, 4)
    await _recorded(s, b, 1)
    newest = mine[::-1]
    first = await s.generations(one, limit="2")
    assert _ids(first) == newest[:2]
    rest = await s.generations(one, limit="2", before=first["next_before"])
    assert (_ids(rest), rest["next_before"]) == (newest[2:], None)
    assert _ids(await s.generations(one, key_id=one_id)) == newest
    assert _ids(await s.generations(manager)) == [theirs, *newest]
    assert _ids(await s.generations(manager, key_id=two_id)) == [theirs]
    assert _ids(await s.generations(manager, key_id=other_id)) == []  # another account's key
    assert _ids(await s.generations(AUTH, account_id=b)) == [elsewhere]
    assert set(_ids(await s.generations(AUTH))) == {*mine, theirs, elsewhere}
    for headers, params in ((one, {"key_id": two_id}), (one, {"account_id": b}),
                            (manager, {"account_id": b}), (other, {"account_id": a})):
        refused = await s.get("/v1/generations", headers, **params)
        assert refused.status_code == 403, (params, refused.text)
        assert refused.json()["error"]["type"] == "permission_error"
    # Each row is the generation's figures, as /v1/generation gives them, and nothing more.
    row = (await s.generations(one, limit="1", since="1970-01-01T00:00:00Z"))["data"][0]
    stats = (await s.get("/v1/generation", one, id=mine[2])).json()["data"]
    assert row == {
        "id": mine[2], "created_at": stats["created_at"], "model": "test/echo",
        "provider": stats["provider"], "key_id": one_id, "key_label": "one",
        "prompt_tokens": stats["tokens_prompt"], "completion_tokens": stats["tokens_completion"],
        "cached_tokens": stats["native_tokens_cached"],
        "cache_write_tokens": stats["native_tokens_cache_write"],
        "reasoning_tokens": stats["native_tokens_reasoning"], "cost": stats["total_cost"],
        "latency_ms": stats["latency"], "streamed": False,
        "finish_reason": stats["finish_reason"]}
    assert row["cost"] > 0
    assert [r["streamed"] for r in (await s.generations(one))["data"]] == [False, True, False]


async def test_malformed_queries_are_400_never_500(served: Served) -> None:
    s = served
    await s.top_up(f"{s.prefix}-a", "1", "")
    one, _ = await s.key(f"{s.prefix}-a")
    forged = base64.urlsafe_b64encode(b'["x","y"]').decode().rstrip("=")
    cases = [("limit", v) for v in ("0", "201", "100000", "-1", "abc", "1.5", "\u00b2", "")]
    cases += [("before", v) for v in ("garbage", forged, "W251bGwsIngiXQ", "%%%")]
    cases += [(name, v) for name in ("since", "until")
              for v in ("yesterday", "1e400", "-5", "nan", "inf", "10000-01-01")]
    for name, value in cases:
        resp = await s.get("/v1/generations", one, **{name: value})
        assert resp.status_code == 400, (name, value, resp.text)
        error = resp.json()["error"]
        assert (error["code"], error["param"], error["type"]) == (
            400, name, "invalid_request_error"), (name, value)
    for name, value in (("limit", "0"), ("limit", "x")):
        resp = await s.get("/v1/credits/topups", AUTH, account_id=f"{s.prefix}-a",
                           **{name: value})
        assert (resp.status_code, resp.json()["error"]["param"]) == (400, name)


async def test_top_ups_and_accounts(served: Served) -> None:
    s = served
    a, b = f"{s.prefix}-a", f"{s.prefix}-b"
    await s.top_up(a, "10", "invoice 1")
    await s.top_up(a, "0.01", "")
    await s.top_up(a, "2.5", "invoice 3")
    await s.top_up(b, "7", "theirs")
    plan = await s.http.put(f"{s.url}/v1/accounts/{b}/plan", headers=AUTH, json={"tier": "pro"})
    assert plan.status_code == 200, plan.text
    manager, _ = await s.key(a, tier="mgmt")
    plain, _ = await s.key(a)
    expected = [(2.5, "invoice 3"), (0.01, None), (10, "invoice 1")]
    for headers, params in ((manager, {}), (manager, {"account_id": a}),
                            (AUTH, {"account_id": a})):
        body = (await s.get("/v1/credits/topups", headers, **params)).json()
        assert [(t["amount"], t["reference"]) for t in body["data"]] == expected
        assert body["currency"] == "RUB"
    limited = (await s.get("/v1/credits/topups", AUTH, account_id=a, limit="1")).json()
    assert [t["reference"] for t in limited["data"]] == ["invoice 3"]
    for headers, params, status in ((plain, {}, 403), (manager, {"account_id": b}, 403),
                                    (AUTH, {}, 400)):
        resp = await s.get("/v1/credits/topups", headers, **params)
        assert resp.status_code == status, resp.text
    listed = (await s.get("/v1/accounts", AUTH)).json()["data"]
    assert [{k: v for k, v in acct.items() if k != "created_at"} for acct in listed
            if acct["account_id"] in (a, b)] == [
        {"account_id": a, "name": a, "balance": 12.51, "plan": None},
        {"account_id": b, "name": b, "balance": 7, "plan": "pro"}]
    assert all(acct["created_at"].endswith("Z") for acct in listed)
    for headers in (manager, plain):
        resp = await s.get("/v1/accounts", headers)
        assert resp.status_code == 403, resp.text


async def test_usage_as_csv_is_the_json_report_to_the_kopeck(served: Served) -> None:
    s = served
    account = f"{s.prefix}-a"
    await s.top_up(account, "100", "")
    one, one_id = await s.key(account)
    for _ in range(3):
        await s.chat(one)
    await _recorded(s, account, 3)
    query = {"account_id": account, "group_by": "model,key,day"}
    as_json = await s.get("/v1/usage", AUTH, **query)
    assert as_json.status_code == 200, as_json.text
    [row] = json.loads(as_json.text, parse_float=Decimal)["data"]
    as_csv = await s.get("/v1/usage", AUTH, **query, format="csv")
    assert as_csv.status_code == 200, as_csv.text
    assert as_csv.headers["content-type"] == "text/csv; charset=utf-8"
    assert as_csv.headers["content-disposition"] == 'attachment; filename="usage.csv"'
    header, line, end = as_csv.text.split("\r\n")
    assert (header, end) == ("day,key,model,requests,prompt_tokens,completion_tokens,"
                             "cached_tokens,cache_write_tokens,reasoning_tokens,cost,cost_net,vat",
                             "")
    cells = line.split(",")
    assert cells[:9] == [row["day"], one_id, "test/echo", "3", *(str(row[c]) for c in (
        "prompt_tokens", "completion_tokens", "cached_tokens", "cache_write_tokens",
        "reasoning_tokens"))]
    money = [Decimal(c) for c in cells[9:]]
    assert money == [row["cost"], row["cost_net"], row["vat"]] and money[0] > 0
    assert all(len(c.split(".")[1]) >= 2 for c in cells[9:])  # to the kopeck at least
    refused = await s.get("/v1/usage", AUTH, **query, format="xml")
    assert (refused.status_code, refused.json()["error"]["param"]) == (400, "format")
