"""`xrouter keys list`, `credits show`, `usage` and `generations` against a real gateway and
router: tables for a person by default (times in the local zone, fixed here by TZ), the API's
JSON with --json, a key listing only its own generations, and errors on stderr."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

import pytest

from tests.integration.conftest import AUTH, Stack
from tests.support import MASTER_KEY
from xrouter_router.cli import main
from xrouter_router.cli_format import local_time

HELLO = [{"role": "user", "content": "hello there"}]


pytestmark = pytest.mark.usefixtures("moscow_local_time")  # every test, in Moscow's time zone


async def _xrouter(stack: Stack, capsys: pytest.CaptureFixture[str], *argv: str,
                   key: str = MASTER_KEY) -> tuple[int, str, str]:
    """Exit code, stdout and stderr. The CLI blocks on its HTTP call, so it runs in a thread
    while this loop serves the gateway."""
    code = await asyncio.to_thread(main, [*argv, "--url", stack.url, "--key", key])
    out, err = capsys.readouterr()
    return code, out, err


async def _api(stack: Stack, path: str, key: str = MASTER_KEY, **params: str) -> Any:
    resp = await stack.http.get(f"{stack.url}{path}", params=params,
                                headers={"Authorization": f"Bearer {key}"})
    assert resp.status_code == 200, resp.text
    return resp.json()


async def test_tables_by_default_json_on_request(stack: Stack,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    funded = await stack.http.post(f"{stack.url}/v1/credits", headers=AUTH,
                                   json={"account_id": "acct-t", "amount": "1234.5"})
    assert funded.status_code == 200, funded.text
    code, out, _ = await _xrouter(stack, capsys, "credits", "show", "acct-t")
    assert (code, out) == (0, """\
account               acct-t
balance         1 234.50 RUB
credits         1 234.50 RUB
usage               0.00 RUB
  of which VAT      0.00 RUB
""")
    code, out, _ = await _xrouter(stack, capsys, "credits", "show", "acct-t", "--json")
    assert (code, json.loads(out)) == (0, await _api(stack, "/v1/credits", account_id="acct-t"))

    made = await stack.http.post(f"{stack.url}/v1/keys", headers=AUTH,
                                 json={"account_id": "acct-t", "tier": "pro", "name": "app"})
    key, key_id = made.json()["key"], made.json()["data"]["id"]
    created = local_time(made.json()["data"]["created_at"])
    code, out, _ = await _xrouter(stack, capsys, "keys", "list", "--account", "acct-t")
    assert (code, out.splitlines()) == (0, [
        f"ID{' ' * 20}LABEL  TIER  STATUS     USAGE  THIS MONTH  LIMIT  CREATED"
        f"{' ' * 14}EXPIRES",
        f"{key_id}  app    pro   active  0.00 RUB    0.00 RUB      -  {created}  -"])
    assert len(key_id) == 20

    ids = []
    for _ in range(2):
        resp = await stack.chat({"model": "test/echo", "messages": HELLO},
                                headers={"Authorization": f"Bearer {key}"})
        assert resp.status_code == 200, resp.text
        ids.append(resp.headers["x-generation-id"])
    await stack.chat({"model": "test/echo", "messages": HELLO})  # the master key's own
    page = await _api(stack, "/v1/generations", key)
    assert [g["id"] for g in page["data"]] == ids[::-1]
    code, out, _ = await _xrouter(stack, capsys, "generations", key=key)
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == [
        "TIME", "ID", "MODEL", "PROVIDER", "KEY", "IN", "OUT", "COST", "LATENCY", "STREAMED",
        "FINISH"]
    for line, g in zip(lines[1:], page["data"], strict=True):
        assert line.split() == [
            *local_time(g["created_at"]).split(), g["id"], "test/echo", g["provider"], "app",
            str(g["prompt_tokens"]), str(g["completion_tokens"]), str(Decimal(str(g["cost"]))),
            "RUB", str(g["latency_ms"]), "ms", "no", "stop"]
    code, out, _ = await _xrouter(stack, capsys, "generations", "--limit", "1", key=key)
    first = await _api(stack, "/v1/generations", key, limit="1")
    assert out.splitlines()[-1] == f"older: --before {first['next_before']}"
    code, out, _ = await _xrouter(stack, capsys, "generations", "--json", key=key)
    assert (code, json.loads(out)) == (0, page)

    code, out, _ = await _xrouter(stack, capsys, "usage", "--account", "acct-t", "--group-by",
                                  "model")
    report = await _api(stack, "/v1/usage", account_id="acct-t", group_by="model")
    cost = report["data"][0]["cost"]
    assert (code, out.splitlines()[0].split()) == (0, [
        "MODEL", "REQUESTS", "PROMPT", "TOKENS", "COMPLETION", "TOKENS", "COST"])
    assert out.splitlines()[1].split()[:2] == ["test/echo", "2"] and len(out.splitlines()) == 2
    assert out.splitlines()[1].endswith(" RUB") and cost > 0
    code, out, _ = await _xrouter(stack, capsys, "usage", "--account", "acct-t", "--group-by",
                                  "model", "--json")
    assert json.loads(out) == report


async def test_a_refusal_goes_to_stderr(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = await _xrouter(stack, capsys, "generations", "--limit", "0")
    assert (code, out) == (1, "")
    assert json.loads(err)["error"]["param"] == "limit"
    code, out, err = await _xrouter(stack, capsys, "keys", "list", key="not-a-key")
    assert (code, out, json.loads(err)["error"]["code"]) == (1, "", 401)
