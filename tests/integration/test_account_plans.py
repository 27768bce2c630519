"""Account plans through a real gateway and router (SQLite): the master key sets a plan (HTTP
and the `xrouter plans` CLI); the account's management key cannot create or change keys above
it; an account without a plan has the default one (XROUTER_DEFAULT_PLAN_TIER, free)."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest

from tests.integration.conftest import AUTH, Stack
from xrouter_router import cli


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def _manager(stack: Stack, account: str) -> str:
    resp = await stack.http.post(f"{stack.url}/v1/keys", headers=AUTH,
                                 json={"account_id": account, "tier": "mgmt"})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["key"])


async def _create(stack: Stack, key: str, **body: Any) -> tuple[int, dict[str, Any]]:
    resp = await stack.http.post(f"{stack.url}/v1/keys", headers=_bearer(key), json=body)
    return resp.status_code, resp.json()


async def _set_plan(stack: Stack, account: str, body: dict[str, Any],
                    key: str | None = None) -> tuple[int, dict[str, Any]]:
    resp = await stack.http.put(f"{stack.url}/v1/accounts/{account}/plan", json=body,
                                headers=AUTH if key is None else _bearer(key))
    return resp.status_code, resp.json()


async def test_a_management_key_stays_within_its_accounts_plan(stack: Stack) -> None:
    manager = await _manager(stack, "acme")
    status, body = await _set_plan(stack, "acme", {"tier": "pro", "requests_per_minute": 50})
    assert status == 200
    assert body["data"] == {"account_id": "acme", "tier": "pro", "is_default": False, "residency": None,
                            "pii_guard": None, "pii_scope": None, "outage_allowance": None,
                            "requests_per_minute": 50,
                            "requests_per_day": 1000, "tokens_per_minute": None, "concurrent": 20}
    status, created = await _create(stack, manager, tier="pro", requests_per_minute=40)
    assert status == 201 and created["data"]["rate_limit"]["requests"] == 40
    status, body = await _create(stack, manager, tier="max")
    assert status == 403
    assert body["error"]["message"] == (
        "The account's plan allows keys up to tier 'pro'; 'max' is above it")
    assert body["error"]["param"] == "tier"
    status, body = await _create(stack, manager, tier="pro")  # pro's own 100/min is above 50
    assert status == 403 and body["error"]["message"] == (
        "The account's plan allows at most 50 requests per minute per key; this key would have 100")
    key_id = created["data"]["id"]
    raised = await stack.http.patch(f"{stack.url}/v1/keys/{key_id}", headers=_bearer(manager),
                                    json={"concurrent": 100})
    assert raised.status_code == 403, raised.text
    assert raised.json()["error"]["param"] == "concurrent"
    renamed = await stack.http.patch(f"{stack.url}/v1/keys/{key_id}", headers=_bearer(manager),
                                     json={"name": "renamed", "concurrent": 10})
    assert renamed.status_code == 200, renamed.text
    limits = renamed.json()["data"]["rate_limit"]
    assert (limits["concurrent"], limits["requests"]) == (10, 40)  # the limit not named stays
    # The operator is not bound by plans.
    resp = await stack.http.post(f"{stack.url}/v1/keys", headers=AUTH,
                                 json={"account_id": "acme", "tier": "max"})
    assert resp.status_code == 201


async def test_an_account_without_a_plan_has_the_default_one(stack: Stack) -> None:
    manager = await _manager(stack, "newco")
    shown = await stack.http.get(f"{stack.url}/v1/accounts/newco/plan", headers=_bearer(manager))
    assert shown.json()["data"] == {"account_id": "newco", "tier": "free", "is_default": True,
                                    "residency": None, "pii_guard": None, "pii_scope": None,
                                    "outage_allowance": None, "requests_per_minute": 20,
                                    "requests_per_day": 200, "tokens_per_minute": None,
                                    "concurrent": 5}
    assert (await _create(stack, manager, tier="free"))[0] == 201
    status, body = await _create(stack, manager, tier="pro")
    assert status == 403 and body["error"]["message"] == (
        "The account's plan allows keys up to tier 'free'; 'pro' is above it")
    status, body = await _create(stack, manager, tier="mgmt")
    assert status == 403


async def test_only_the_master_key_sets_plans_and_only_managers_read_them(stack: Stack) -> None:
    manager = await _manager(stack, "acme")
    status, body = await _set_plan(stack, "acme", {"tier": "max"}, key=manager)
    assert status == 403 and body["error"]["message"] == "Plans are set with the master key"
    other = await stack.http.get(f"{stack.url}/v1/accounts/other/plan", headers=_bearer(manager))
    assert other.status_code == 403
    status, user = await _create(stack, manager, tier="free")
    assert status == 201
    mine = await stack.http.get(f"{stack.url}/v1/accounts/acme/plan", headers=_bearer(user["key"]))
    assert mine.status_code == 403
    status, body = await _set_plan(stack, "acme", {"tier": "gold"})
    assert status == 400 and body["error"]["param"] == "tier"
    status, body = await _set_plan(stack, "acme", {"tier": "pro", "rpm": 5})
    assert status == 400 and "rpm" in body["error"]["message"]


async def test_the_cli_sets_and_shows_a_plan(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--url", stack.url, "--key", AUTH["Authorization"].removeprefix("Bearer ")]
    # The CLI's HTTP client blocks: run it off the loop that serves the gateway.
    code = await asyncio.to_thread(cli.main, ["plans", "set", "acme", "--tier", "pro",
                                              "--concurrent", "3", *base])
    assert code == 0
    code = await asyncio.to_thread(cli.main, ["plans", "show", "acme", *base])
    assert code == 0
    out = capsys.readouterr().out
    assert out.count('"concurrent": 3') == 2 and out.count('"tier": "pro"') == 2
    code = await asyncio.to_thread(cli.main, ["plans", "set", "acme", *base])
    assert code == 2
    assert "xrouter plans set: --tier is required" in capsys.readouterr().err


async def test_a_plan_sets_an_exact_outage_allowance_or_follows_the_global_one(
        stack: Stack) -> None:
    url = f"{stack.url}/v1/accounts/allowed/plan"
    put = await stack.http.put(url, headers=AUTH, json={"tier": "pro",
                                                        "outage_allowance": "2.50000001"})
    assert put.status_code == 200
    assert put.json(parse_float=Decimal)["data"]["outage_allowance"] == Decimal("2.50000001")
    got = await stack.http.get(url, headers=AUTH)
    assert got.json(parse_float=Decimal)["data"]["outage_allowance"] == Decimal("2.50000001")
    status, body = await _set_plan(stack, "allowed", {"tier": "pro"})  # replaced whole
    assert status == 200 and body["data"]["outage_allowance"] is None
    status, body = await _set_plan(stack, "allowed", {"tier": "pro", "outage_allowance": -1})
    assert status == 400 and body["error"]["param"] == "outage_allowance"
