"""`xrouter keys` against a real gateway and router: creating a key with an IP allow-list,
replacing and removing the list with `keys update`, and a malformed entry refused; residency
policies of keys and plans, and their personal-data guard."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.integration.conftest import Stack
from tests.support import MASTER_KEY
from xrouter_router.cli import main


async def _xrouter(stack: Stack, capsys: pytest.CaptureFixture[str],
                   *argv: str) -> tuple[int, Any, str]:
    """Exit code, the JSON printed on stdout (None when nothing) and stderr. The CLI blocks on
    its HTTP call, so it runs in a thread while this loop serves the gateway."""
    code = await asyncio.to_thread(main, ["keys", *argv, "--url", stack.url, "--key", MASTER_KEY])
    out, err = capsys.readouterr()
    return code, json.loads(out) if out else None, err


async def test_keys_create_and_update_set_the_ip_allow_list(
        stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    code, created, _ = await _xrouter(stack, capsys, "create", "--account", "acct-cli",
                                      "--tier", "pro", "--name", "ci", "--allow-ip",
                                      "192.0.2.0/24", "--allow-ip", "2001:DB8::1")
    assert code == 0
    info = created["data"]
    assert (info["label"], info["allowed_ips"]) == ("ci", ["192.0.2.0/24", "2001:db8::1"])
    code, updated, _ = await _xrouter(stack, capsys, "update", info["id"],
                                      "--allow-ip", "127.0.0.1")
    assert code == 0
    assert (updated["data"]["label"], updated["data"]["allowed_ips"]) == ("ci", ["127.0.0.1"])
    code, cleared, _ = await _xrouter(stack, capsys, "update", info["id"], "--any-ip")
    assert code == 0 and cleared["data"]["allowed_ips"] is None
    code, out, err = await _xrouter(stack, capsys, "create", "--account", "acct-cli",
                                    "--allow-ip", "192.0.2.300")
    assert (code, out) == (1, None)
    assert json.loads(err)["error"] == {
        "message": "allowed_ips: '192.0.2.300' is not an IP address or CIDR network",
        "type": "invalid_request_error", "code": 400, "param": "allowed_ips", "metadata": {}}
    code, out, err = await _xrouter(stack, capsys, "update")
    assert (code, out, err) == (2, None, "xrouter keys update: a key id is required\n")


async def test_keys_and_plans_take_a_residency_policy(
        stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    code, created, _ = await _xrouter(stack, capsys, "create", "--account", "acct-cli",
                                      "--residency", "ru")
    assert code == 0
    assert created["data"]["effective_residency"] == {"residency": "ru", "source": "key"}
    code, updated, _ = await _xrouter(stack, capsys, "update", created["data"]["id"],
                                      "--residency", "")
    assert code == 0
    assert updated["data"]["effective_residency"] == {"residency": "any", "source": "default"}
    plan = await asyncio.to_thread(main, ["plans", "set", "acct-cli", "--tier", "pro",
                                          "--residency", "ru", "--url", stack.url,
                                          "--key", MASTER_KEY])
    out, _ = capsys.readouterr()
    assert (plan, json.loads(out)["data"]["residency"]) == (0, "ru")
    code, out, err = await _xrouter(stack, capsys, "create", "--account", "acct-cli",
                                    "--residency", "eu")
    assert (code, out) == (1, None)
    assert json.loads(err)["error"]["param"] == "residency"


async def test_keys_and_plans_take_a_personal_data_guard(
        stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    code, created, _ = await _xrouter(stack, capsys, "create", "--account", "acct-pii",
                                      "--pii-guard", "mask")
    assert code == 0
    info = created["data"]
    assert (info["pii_guard"], info["pii_scope"]) == ("mask", None)
    assert info["effective_pii_guard"] == {"pii_guard": "mask", "pii_scope": "foreign",
                                           "source": "key"}
    plan = await asyncio.to_thread(main, ["plans", "set", "acct-pii", "--tier", "pro",
                                          "--pii-guard", "block", "--pii-scope", "always",
                                          "--url", stack.url, "--key", MASTER_KEY])
    out, _ = capsys.readouterr()
    assert plan == 0
    assert (json.loads(out)["data"]["pii_guard"], json.loads(out)["data"]["pii_scope"]) == (
        "block", "always")
    code, updated, _ = await _xrouter(stack, capsys, "update", info["id"], "--pii-guard", "")
    assert code == 0
    assert updated["data"]["effective_pii_guard"] == {"pii_guard": "block", "pii_scope": "always",
                                                      "source": "account"}
    code, out, err = await _xrouter(stack, capsys, "create", "--account", "acct-pii",
                                    "--pii-scope", "abroad")
    assert (code, out) == (1, None)
    assert json.loads(err)["error"] == {
        "message": "pii_scope must be one of ['foreign', 'always'] (or empty to clear it), "
                   "got 'abroad'",
        "type": "invalid_request_error", "code": 400, "param": "pii_scope", "metadata": {}}


async def test_a_plan_takes_an_outage_allowance(
        stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    plan = await asyncio.to_thread(main, ["plans", "set", "acct-outage", "--tier", "pro",
                                          "--outage-allowance", "1.25", "--url", stack.url,
                                          "--key", MASTER_KEY])
    out, _ = capsys.readouterr()
    assert (plan, json.loads(out)["data"]["outage_allowance"]) == (0, 1.25)
    plan = await asyncio.to_thread(main, ["plans", "set", "acct-outage", "--tier", "pro",
                                          "--outage-allowance", "lots", "--url", stack.url,
                                          "--key", MASTER_KEY])
    _, err = capsys.readouterr()
    assert plan == 1 and json.loads(err)["error"]["param"] == "outage_allowance"
