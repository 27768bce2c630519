"""OAuth PKCE end to end in Debian's Chromium (Playwright), in the embedded mode and in the
cluster mode: an app's link opens the consent page, the person signs in there with the
account's management key and approves, the browser lands on the app's local callback server
with a code, and the app exchanges it for a key labelled with its host. A plain key's session
is told it cannot approve. Any console error or page error fails the test.
Chromium and the page (failing on errors) are tests/browser/conftest.py's; the gateway and its
routers are tests/integration/console_support.py's (`served`, with the OAuth settings)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlencode

import pytest
from aiohttp import web
from playwright.async_api import Page

from tests.browser.conftest import Problems
from tests.infra.fixtures import redis_cluster  # noqa: F401 - the session fixture
from tests.infra.pg_fixtures import postgres_ha  # noqa: F401 - the session fixture
from tests.integration.console_support import (
    Served,
    gateway_oauth_fixture,  # noqa: F401 - the fixture
    served_fixture,  # noqa: F401 - the fixture
)


class CallbackServer:
    """The app: one page at /done that records the query it was called with."""

    def __init__(self) -> None:
        self.calls: asyncio.Queue[dict[str, list[str]]] = asyncio.Queue()
        self.port = 0

    async def favicon(self, request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def done(self, request: web.Request) -> web.Response:
        await self.calls.put(parse_qs(request.query_string))
        return web.Response(text="<!doctype html><title>app</title><p>signed in</p>",
                            content_type="text/html")

EXCHANGE = """async ([url, body]) => {
  const resp = await fetch(url, {method: "POST", body: JSON.stringify(body)});
  return [resp.status, await resp.json()];
}"""


@pytest.fixture
async def app() -> AsyncIterator[CallbackServer]:
    server = CallbackServer()
    application = web.Application()
    application.router.add_get("/done", server.done)
    application.router.add_get("/favicon.ico", server.favicon)
    runner = web.AppRunner(application)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.port = runner.addresses[0][1]
    try:
        yield server
    finally:
        await runner.cleanup()


def _link(served: Served, app: CallbackServer, challenge: str) -> str:
    callback = f"http://127.0.0.1:{app.port}/done?state=xyz"
    return f"{served.url}/auth?" + urlencode({
        "callback_url": callback, "code_challenge": challenge, "code_challenge_method": "S256"})


async def _consent_signed_in(page: Page, served: Served, app: CallbackServer, challenge: str,
                             key: str) -> None:
    """The app's authorization link opened, and signed in on the consent page with `key`."""
    await page.goto(_link(served, app, challenge))
    await page.get_by_test_id("api-key").fill(key)
    await page.get_by_test_id("sign-in").click()


async def test_an_app_gets_a_key_through_the_consent_page(
        served: Served, app: CallbackServer, page: Page) -> None:
    manager, _ = await served.key("mgmt")
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(
        hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    await _consent_signed_in(page, served, app, challenge, manager)
    authorize = page.get_by_test_id("authorize")
    assert await authorize.inner_text() == f"Authorize 127.0.0.1:{app.port}"
    await authorize.click()
    called = await asyncio.wait_for(app.calls.get(), 30)
    assert called["state"] == ["xyz"]
    await page.wait_for_url(f"http://127.0.0.1:{app.port}/done?**")
    # The app's page exchanges the code itself, as OpenRouter's example does (cross-origin).
    status, made = await page.evaluate(EXCHANGE, [f"{served.url}/v1/auth/keys", {
        "code": called["code"][0], "code_verifier": verifier, "code_challenge_method": "S256"}])
    assert status == 200, made
    key = made["key"]
    info = await served.http.get(f"{served.url}/v1/key", headers={"Authorization": f"Bearer {key}"})
    assert info.json()["data"]["label"] == f"127.0.0.1:{app.port}"
    assert info.json()["data"]["account_id"] == served.account
    again = await served.http.post(f"{served.url}/v1/auth/keys", json={
        "code": called["code"][0], "code_verifier": verifier, "code_challenge_method": "S256"})
    assert again.status_code == 403


async def test_a_plain_keys_session_is_told_it_cannot_approve(
        served: Served, app: CallbackServer, page: Page) -> None:
    plain, _ = await served.key("pro")
    await _consent_signed_in(page, served, app, "A" * 43, plain)
    refusal = page.get_by_test_id("oauth-refusal")
    assert "This key cannot make keys" in await refusal.inner_text()
    assert await page.get_by_test_id("authorize").count() == 0
    await page.locator("#sign-out").click()
    await page.get_by_test_id("api-key").wait_for()
    assert app.calls.empty()


async def test_deny_takes_the_browser_back_to_the_app_with_access_denied(
        served: Served, app: CallbackServer, page: Page) -> None:
    manager, _ = await served.key("mgmt")
    await _consent_signed_in(page, served, app, "A" * 43, manager)
    await page.get_by_test_id("deny").click()
    called = await asyncio.wait_for(app.calls.get(), 30)
    assert called == {"state": ["xyz"], "error": ["access_denied"]}
    await page.wait_for_url(f"http://127.0.0.1:{app.port}/done?**")


JSON_EXCHANGE = """async ([url, body]) => {
  const resp = await fetch(url, {method: "POST", headers: {"Content-Type": "application/json"},
                                 body: JSON.stringify(body)});
  return [resp.status, await resp.json()];
}"""


async def test_an_app_page_may_send_the_exchange_as_json_after_a_preflight(
        served: Served, app: CallbackServer, page: Page, problems: Problems) -> None:
    problems.allow(403)  # the made-up code's answer, which the page reads
    await page.goto(f"http://127.0.0.1:{app.port}/done?state=page")  # the app's own origin
    await asyncio.wait_for(app.calls.get(), 30)
    status, answer = await page.evaluate(JSON_EXCHANGE, [f"{served.url}/v1/auth/keys", {
        "code": "A" * 43, "code_verifier": "B" * 43, "code_challenge_method": "S256"}])
    # The browser let the page read the answer: the preflight passed and the POST was made.
    assert (status, answer["error"]["code"]) == (403, 403), answer
