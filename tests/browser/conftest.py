"""Browser fixtures: Debian's Chromium driven by Playwright (async API, in the test's event loop,
where the gateway and the routers run too), against the embedded mode (one router on SQLite)
and the cluster mode (two replicas on PostgreSQL HA and the Redis Cluster). Every test fails on
a console error or an uncaught page error, but for the HTTP statuses it declares it expects."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, ConsoleMessage, Error, Page, async_playwright

from tests.infra.fixtures import redis_cluster  # noqa: F401 - the session fixture
from tests.infra.pg_fixtures import postgres_ha  # noqa: F401 - the session fixture
from tests.integration.cluster_support import running_mode
from tests.integration.conftest import AUTH

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
DEMO_CREDITS = "1000"
_FAILED = re.compile(r"^Failed to load resource: the server responded with a status of (\d{3})")


@dataclass
class Served:
    """A running gateway, an httpx client, and a fresh account funded like `make run`'s demo."""

    url: str
    http: httpx.AsyncClient
    account: str

    async def key(self, tier: str = "pro", account: str | None = None, **body: object) -> str:
        made = await self.http.post(f"{self.url}/v1/keys", headers=AUTH, json={
            "account_id": account or self.account, "tier": tier, **body})
        assert made.status_code == 201, made.text
        return str(made.json()["key"])

    async def plan(self, tier: str, account: str | None = None) -> None:
        """The account's plan (the default, free, lets its management keys make only free keys)."""
        done = await self.http.put(f"{self.url}/v1/accounts/{account or self.account}/plan",
                                   headers=AUTH, json={"tier": tier})
        assert done.status_code == 200, done.text

    async def fund(self, account: str, amount: str) -> None:
        funded = await self.http.post(f"{self.url}/v1/credits", headers=AUTH, json={
            "account_id": account, "amount": amount, "reference": "browser test"})
        assert funded.status_code == 200, funded.text


@pytest.fixture(params=["embedded", "cluster"])
async def served(request: pytest.FixtureRequest, tmp_path: Path,
                 catalog: Path) -> AsyncIterator[Served]:
    # One account per test: the cluster's Redis and PostgreSQL outlive a test.
    account = "demo-" + uuid.uuid4().hex[:8]
    async with running_mode(request.param, request, tmp_path, catalog) as (url, http, _):
        served = Served(url, http, account)
        await served.fund(account, DEMO_CREDITS)
        yield served


@dataclass
class Problems:
    """Console errors and page errors seen so far; `allow(status)` for a test that provokes one."""

    seen: list[str] = field(default_factory=list)
    allowed: set[int] = field(default_factory=set)

    def allow(self, *statuses: int) -> None:
        self.allowed.update(statuses)

    def console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        failed = _FAILED.match(message.text)
        if failed is not None:
            status = int(failed.group(1))
            # Before sign-in the page asks whether a session exists: 401 is the answer "no".
            if status in self.allowed or (
                    status == 401 and message.location.get("url", "").endswith("/console/session")):
                return
        self.seen.append(f"console: {message.text} at {message.location}")

    def page_error(self, error: Error) -> None:
        self.seen.append(f"page error: {error}")


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        # A fresh profile for each test (a persistent context would keep one on disk).
        launched = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
def problems() -> Problems:
    return Problems()


@pytest.fixture
async def page(browser: Browser, problems: Problems) -> AsyncIterator[Page]:
    context = await browser.new_context(locale="en-US", viewport={"width": 1280, "height": 900})
    opened = await context.new_page()
    opened.on("console", problems.console)
    opened.on("pageerror", problems.page_error)
    try:
        yield opened
    finally:
        await context.close()
    assert problems.seen == []


async def sign_in(page: Page, base: str, key: str) -> None:
    """Open the console, sign in with `key`, and wait for the first page of the shell."""
    await page.goto(f"{base}/console")
    await page.get_by_test_id("api-key").fill(key)
    await page.get_by_test_id("sign-in").click()
    await page.get_by_test_id("sign-out").wait_for()
