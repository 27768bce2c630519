"""Errors never leak: an upstream's error body reaches the client cut to 1 KiB with every
credential removed (the configured provider keys too), and a database failure is the generic
503; the full text goes to the router's log only. Real gateway and router, fake upstream."""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

import httpx
import pytest

from tests.fakes.openai_upstream import LEAKED_SECRETS
from tests.integration.conftest import AUTH, Stack

HELLO = [{"role": "user", "content": "hi"}]
# The credential in each of LEAKED_SECRETS (what follows its scheme or parameter name).
CREDENTIALS = ["sk-fake-upstream-key", "sk-wrong", "eyJhbGciOiJIUzI1NiJ9.leaked",
               "sk-ant-api03-LeakedKey123", "AQVNleakedyandexkey", "dXNlcjpwYXNzd29yZA==",
               "AIzaLeakedQueryKey"]


def _refused(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    for credential in CREDENTIALS:
        assert credential not in resp.text
    err: dict[str, Any] = resp.json()["error"]
    assert len(err["message"].encode()) <= 1024
    raw = err["metadata"]["raw"]
    assert isinstance(raw, str) and 1000 <= len(raw.encode()) <= 1024  # cut, not dropped
    assert raw.count("[redacted]") == len(LEAKED_SECRETS)
    return err


def test_each_leaked_string_holds_its_credential() -> None:
    assert [c in s for c, s in zip(CREDENTIALS, LEAKED_SECRETS, strict=True)] == [True] * 7


async def test_a_rejected_request_shows_the_upstream_body_cut_and_without_credentials(
        stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="xrouter.router.errors"):
        err = _refused(await stack.chat({"model": "test/leak-400", "messages": HELLO}), 400)
    assert err["metadata"]["provider_name"] == "fake"
    assert err["metadata"]["raw"].startswith(
        '{"error":{"message":"Request failed for [redacted] and [redacted] and Bearer [redacted] '
        'and [redacted] and Api-Key [redacted] and Basic [redacted] and key=[redacted] xxx')
    logged = [r.getMessage() for r in caplog.records if "upstream error body" in r.getMessage()]
    assert len(logged) == 1 and "x" * 5000 in logged[0]  # the log keeps the whole body
    assert "sk-fake-upstream-key" not in logged[0]


async def test_every_failed_attempt_is_cleaned_too(stack: Stack) -> None:
    err = _refused(await stack.chat({"model": "test/leak-500", "messages": HELLO}), 502)
    assert [a["status"] for a in err["metadata"]["attempts"]] == [500, 500]


async def test_a_streamed_request_is_cleaned_like_a_unary_one(stack: Stack) -> None:
    async with stack.http.stream("POST", f"{stack.url}/v1/chat/completions", headers=AUTH,
                                 json={"model": "test/leak-400", "messages": HELLO,
                                       "stream": True}) as resp:
        await resp.aread()
    _refused(resp, 400)


async def test_a_database_failure_is_the_generic_503(
        stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    path = stack.data_dir / "xrouter.sqlite3"
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # every write waits out the busy timeout, then fails
    try:
        with caplog.at_level(logging.WARNING):
            resp = await stack.http.post(f"{stack.url}/v1/keys", headers=AUTH,
                                         json={"account_id": "acct-1", "tier": "pro"})
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert resp.status_code == 503, resp.text
    err = resp.json()["error"]
    assert err["message"] == "The database is unavailable; retry shortly"
    assert str(path) not in resp.text and "locked" not in resp.text
    assert any("database is locked" in r.getMessage() and str(path) in r.getMessage()
               for r in caplog.records)
