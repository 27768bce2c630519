"""VAT through the HTTP API in the embedded mode, on an injected clock: generations on either
side of 2026-01-01 (Moscow time) in /v1/generation, /v1/credits and the monthly statement
(JSON, CSV, `xrouter statement`), who may read which statement, and malformed requests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.openai_upstream import FakeOpenAI
from tests.integration.conftest import AUTH
from tests.support import (
    MASTER_KEY,
    Clock,
    gateway_settings,
    router_settings,
    running_gateway,
    running_router,
)
from xrouter_router.cli import main

LAST_MINUTE_OF_20 = datetime.fromisoformat("2025-12-31T23:59:00+03:00").timestamp()
FIRST_SECOND_OF_22 = datetime.fromisoformat("2026-01-01T00:00:00+03:00").timestamp()
HELLO = [{"role": "user", "content": "hello there"}]


class Api:
    def __init__(self, url: str, http: httpx.AsyncClient, clock: Clock) -> None:
        self.url, self.http, self.clock = url, http, clock

    async def key(self, account: str, tier: str = "pro") -> dict[str, str]:
        resp = await self.http.post(f"{self.url}/v1/keys", headers=AUTH,
                                    json={"account_id": account, "tier": tier})
        assert resp.status_code == 201, resp.text
        return {"Authorization": f"Bearer {resp.json()['key']}"}

    async def chat(self, headers: dict[str, str], at: float) -> str:
        self.clock.now = at
        resp = await self.http.post(f"{self.url}/v1/chat/completions", headers=headers,
                                    json={"model": "test/echo", "messages": HELLO})
        assert resp.status_code == 200, resp.text
        return str(resp.json()["id"])

    async def embed(self, headers: dict[str, str], at: float) -> str:
        self.clock.now = at
        resp = await self.http.post(f"{self.url}/v1/embeddings", headers=headers,
                                    json={"model": "test/embed", "input": "hello"})
        assert resp.status_code == 200, resp.text
        return resp.headers["x-generation-id"]

    async def statement(self, headers: dict[str, str], **params: str) -> httpx.Response:
        return await self.http.get(f"{self.url}/v1/statement", headers=headers, params=params)


@pytest.fixture
async def api(catalog: Path, upstream: FakeOpenAI) -> AsyncIterator[Api]:
    clock = Clock(LAST_MINUTE_OF_20)
    async with running_router(router_settings(catalog), wall=clock) as router:
        target = f"127.0.0.1:{router.server.port}"
        async with running_gateway(gateway_settings(target)) as url, \
                httpx.AsyncClient(timeout=15.0) as http:
            made = Api(url, http, clock)
            for account in ("acct-1", "acct-2"):
                resp = await http.post(f"{url}/v1/credits", headers=AUTH,
                                       json={"account_id": account, "amount": "10"})
                assert resp.status_code == 200, resp.text
            yield made


def _line(gen: str, date: str, served: tuple[str, str], tokens: tuple[int, int],
          money: tuple[str, str, str, str]) -> dict[str, Any]:
    rate, *amounts = money
    model, provider = served
    return {"date": date, "generation_id": gen, "model": model, "provider": provider,
            "prompt_tokens": tokens[0], "completion_tokens": tokens[1], "vat_rate": rate,
            "net": amounts[0], "vat": amounts[1], "gross": amounts[2]}


def _total(rate: str | None, requests: int, tokens: tuple[int, int],
           money: tuple[str, str, str]) -> dict[str, Any]:
    return {"vat_rate": rate, "requests": requests, "prompt_tokens": tokens[0],
            "completion_tokens": tokens[1], "net": money[0], "vat": money[1], "gross": money[2],
            "net_rub": "0.00", "vat_rub": "0.00", "gross_rub": "0.00"}


async def test_generations_each_side_of_2026_01_01_and_their_statements(api: Api) -> None:
    mine, theirs = await api.key("acct-1"), await api.key("acct-2")
    # test/echo: 5 + 3 tokens at 100 and 200 RUB a million, 0.0011 net; test/embed: 2 tokens
    # at 10 RUB a million, 0.00002 net.
    gen_a = await api.chat(mine, LAST_MINUTE_OF_20)
    gen_b = await api.chat(mine, FIRST_SECOND_OF_22)
    gen_c = await api.embed(mine, FIRST_SECOND_OF_22 + 5)
    await api.chat(theirs, FIRST_SECOND_OF_22 + 10)  # another account's: on no statement here

    found = await api.http.get(f"{api.url}/v1/generation", params={"id": gen_a}, headers=mine)
    data = found.json()["data"]
    assert (data["total_cost"], data["cost_net"], data["vat"], data["vat_rate"]) == (
        0.00132, "0.0011", "0.00022", "0.2")
    found = await api.http.get(f"{api.url}/v1/generation", params={"id": gen_b}, headers=mine)
    data = found.json()["data"]
    assert (data["total_cost"], data["cost_net"], data["vat"], data["vat_rate"]) == (
        0.001342, "0.0011", "0.000242", "0.22")
    credits = (await api.http.get(f"{api.url}/v1/credits", headers=mine)).json()["data"]
    assert (credits["total_usage"], credits["total_usage_net"], credits["total_usage_vat"],
            Decimal(str(credits["balance"]))) == (
        0.0026864, 0.00222, 0.0004664, Decimal(10) - Decimal("0.0026864"))

    december = await api.statement(mine, month="2025-12")
    assert december.status_code == 200
    one = ("0.00110000", "0.00022000", "0.00132000")
    assert december.json() == {"data": {
        "account_id": "acct-1", "month": "2025-12", "timezone": "Europe/Moscow",
        "currency": "RUB",
        "lines": [_line(gen_a, "2025-12-31T23:59:00+03:00", ("test/echo", "fake"), (5, 3),
                        ("0.2", *one))],
        "totals_by_rate": [_total("0.2", 1, (5, 3), one)], "totals": _total(None, 1, (5, 3), one)}}

    january = await api.statement(mine, month="2026-01", format="json")
    both = ("0.00112000", "0.00024640", "0.00136640")
    assert january.json()["data"] == {
        "account_id": "acct-1", "month": "2026-01", "timezone": "Europe/Moscow",
        "currency": "RUB",
        "lines": [_line(gen_b, "2026-01-01T00:00:00+03:00", ("test/echo", "fake"), (5, 3),
                        ("0.22", "0.00110000", "0.00024200", "0.00134200")),
                  _line(gen_c, "2026-01-01T00:00:05+03:00", ("test/embed", "fake2"), (2, 0),
                        ("0.22", "0.00002000", "0.00000440", "0.00002440"))],
        "totals_by_rate": [_total("0.22", 2, (7, 3), both)],
        "totals": _total(None, 2, (7, 3), both)}

    csv = await api.statement(mine, month="2026-01", format="csv")
    assert csv.headers["content-type"] == "text/csv; charset=utf-8"
    assert csv.headers["content-disposition"] == 'attachment; filename="statement-acct-1-2026-01.csv"'
    assert csv.text == (
        "date,generation_id,model,provider,prompt_tokens,completion_tokens,vat_rate,net,vat,gross\r\n"
        f"2026-01-01T00:00:00+03:00,{gen_b},test/echo,fake,5,3,0.22,0.00110000,0.00024200,0.00134200\r\n"
        f"2026-01-01T00:00:05+03:00,{gen_c},test/embed,fake2,2,0,0.22,0.00002000,0.00000440,0.00002440\r\n"
        "total,,,,7,3,0.22,0.00112000,0.00024640,0.00136640\r\n"
        "total_rub,,,,7,3,0.22,0.00,0.00,0.00\r\n"
        "total,,,,7,3,,0.00112000,0.00024640,0.00136640\r\n"
        "total_rub,,,,7,3,,0.00,0.00,0.00\r\n")
    # The master key names the account and reads the same; a month with nothing is empty.
    named = await api.statement(AUTH, month="2026-01", format="csv", account_id="acct-1")
    assert named.text == csv.text
    empty = (await api.statement(mine, month="2026-02")).json()["data"]
    assert (empty["lines"], empty["totals_by_rate"], empty["totals"]) == (
        [], [], _total(None, 0, (0, 0), ("0.00000000",) * 3))


async def test_a_key_reads_only_its_own_accounts_statement(api: Api) -> None:
    mine = await api.key("acct-1")
    manager = await api.key("acct-1", tier="mgmt")
    for headers in (mine, manager):
        other = await api.statement(headers, month="2026-01", account_id="acct-2")
        assert other.status_code == 403, other.text
        assert other.json()["error"]["type"] == "permission_error"
    assert (await api.statement(mine, month="2026-01", account_id="acct-1")).status_code == 200
    master = await api.statement(AUTH, month="2026-01")
    assert master.status_code == 400
    assert master.json()["error"]["param"] == "account_id"


@pytest.mark.parametrize(("params", "param", "message"), [
    ({"month": "2026-13"}, "month", "month must be YYYY-MM (e.g. 2026-01), got '2026-13'"),
    ({"month": "2026-1"}, "month", "month must be YYYY-MM (e.g. 2026-01), got '2026-1'"),
    ({}, "month", "month must be YYYY-MM (e.g. 2026-01), got ''"),
    ({"month": "2026-01", "format": "xml"}, "format",
     "format must be one of ['json', 'csv'], got 'xml'"),
])
async def test_a_malformed_statement_request_is_a_400(api: Api, params: dict[str, str],
                                                      param: str, message: str) -> None:
    resp = await api.statement(await api.key("acct-1"), **params)
    assert resp.status_code == 400
    assert resp.json() == {"error": {"message": message, "type": "invalid_request_error",
                                     "code": 400, "param": param, "metadata": {}}}


async def test_the_cli_prints_the_statement(api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    gen = await api.chat(await api.key("acct-1"), FIRST_SECOND_OF_22)
    argv = ["statement", "--account", "acct-1", "--month", "2026-01", "--url", api.url,
            "--key", MASTER_KEY]
    assert await asyncio.to_thread(main, [*argv, "--format", "csv"]) == 0
    out = capsys.readouterr().out
    assert out.split("\r\n")[1] == (
        f"2026-01-01T00:00:00+03:00,{gen},test/echo,fake,5,3,0.22,0.00110000,0.00024200,"
        "0.00134200")
    assert out == (await api.statement(AUTH, month="2026-01", format="csv",
                                       account_id="acct-1")).text  # as served (CRLF rows)
    assert await asyncio.to_thread(main, argv) == 0
    printed = capsys.readouterr().out
    assert '"gross_rub": "0.00"' in printed and f'"generation_id": "{gen}"' in printed
