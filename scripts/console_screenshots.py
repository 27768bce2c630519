"""Screenshots of every console page in English and Russian, into docs/console/ (PNG).

Starts a router and the gateway in this process (embedded mode; a small sample catalog: the
demo model, and three models on two providers that are the tests' fake OpenAI upstream), makes
an account with credits, a few keys and some traffic, signs in with the account's management
key (and with the master key for the operator view) in Debian's Chromium, and captures each
page; any console error stops it. Run: .venv/bin/python scripts/console_screenshots.py
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlencode

import httpx
from playwright.async_api import Page, async_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fakes.openai_upstream import FakeOpenAI  # noqa: E402
from tests.support import (  # noqa: E402
    MASTER_KEY,
    gateway_settings,
    router_settings,
    running_gateway,
    running_router,
)

OUT = ROOT / "docs" / "console"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
ACCOUNT_PAGES = ["overview", "keys", "usage", "generations", "models", "providers", "playground"]
MASTER = {"Authorization": f"Bearer {MASTER_KEY}"}
# The sample catalog: (id, name, context length, [(provider, upstream model, prompt and
# completion RUB per million tokens)]); "alpha" and "beta" are the fake OpenAI upstream.
MODELS = [("xrouter/demo", "Demo", 32000, [("demo", "demo", "0", "0")]),
          ("sample/fast", "Sample Fast", 32000, [("alpha", "fake-echo", "40", "80")]),
          ("sample/smart", "Sample Smart", 128000, [("alpha", "fake-echo", "1200", "2400.5"),
                                                    ("beta", "fake-echo", "1300", "2600")]),
          ("sample/reasoner", "Sample Reasoner", 64000, [("beta", "fake-buckets", "500", "1500")])]


def sample_catalog(upstream: str) -> str:
    text = '[providers.demo]\ntype = "demo"\nword_delay = 0.001\n'
    for name in ("alpha", "beta"):
        text += (f'[providers.{name}]\ntype = "openai"\nbase_url = "{upstream}"\n'
                 'api_key_env = "FAKE_UPSTREAM_KEY"\njurisdiction = "ru"\n')
    for mid, name, context, deployments in MODELS:
        text += f'[[models]]\nid = "{mid}"\nname = "{name}"\n'
        for provider, model, prompt, completion in deployments:
            text += (f'[[models.deployments]]\nprovider = "{provider}"\n'
                     f'upstream_model = "{model}"\ncapabilities = ["streaming", "tools"]\n'
                     f'price = {{ prompt = "{prompt}", completion = "{completion}" }}\n'
                     f'context_length = {context}\n')
    return text


async def populate(http: httpx.AsyncClient, url: str) -> str:
    """The account "acme": 1000 RUB, a pro plan, keys, and traffic on two models. Returns its
    management key."""
    for account, amount in (("acme", "1000"), ("globex", "250")):
        await http.post(f"{url}/v1/credits", headers=MASTER, json={
            "account_id": account, "amount": amount, "reference": "invoice 2026-001"})
    await http.put(f"{url}/v1/accounts/acme/plan", headers=MASTER, json={"tier": "pro"})
    made = await http.post(f"{url}/v1/keys", headers=MASTER,
                           json={"account_id": "acme", "tier": "mgmt", "name": "console"})
    manager = str(made.json()["key"])
    for name, models in (("backend", None), ("chat bot", ["sample/fast", "sample/smart"])):
        key = await http.post(f"{url}/v1/keys", headers=MASTER, json={
            "account_id": "acme", "tier": "pro", "name": name, "allowed_models": models,
            "limit": "100"})
        auth = {"Authorization": f"Bearer {key.json()['key']}"}
        for model in ("sample/fast", "sample/smart", "sample/reasoner", "xrouter/demo"):
            await http.post(f"{url}/v1/chat/completions", headers=auth, json={
                "model": model, "messages": [{"role": "user", "content": f"hello from {name}"}]})
    return manager


async def capture(page: Page, url: str, key: str, pages: list[str]) -> None:
    await page.goto(f"{url}/console")
    await page.get_by_test_id("api-key").fill(key)
    await page.get_by_test_id("sign-in").click()
    await page.get_by_test_id("sign-out").wait_for()
    for lang in ("en", "ru"):
        if await page.evaluate("document.documentElement.lang") != lang:
            await page.get_by_test_id("lang-toggle").click()
        for name in pages:
            await page.get_by_test_id(f"nav-{name}").click()
            await page.locator(f"[data-testid=page-{name}][data-ready]").wait_for()
            if name == "playground":
                await page.get_by_test_id("play-model").select_option("sample/smart")
                await page.get_by_test_id("play-message").fill("Привет! Hello!")
                await page.get_by_test_id("play-send").click()
                await page.get_by_test_id("play-usage").wait_for()
            if name == "operator":
                await page.get_by_test_id("accounts-table").get_by_role("button").first.click()
                await page.get_by_test_id("topups-table").wait_for()
            await page.screenshot(path=str(OUT / f"{name}-{lang}.png"), full_page=True)
    await page.get_by_test_id("sign-out").click()
    await page.get_by_test_id("api-key").wait_for()


async def capture_consent(page: Page, url: str, key: str) -> None:
    """The OAuth consent page (docs/oauth.md) an app's link opens, signed in with the
    management key, in both languages."""
    challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    query = urlencode({"callback_url": "http://localhost:3000/callback",
                       "code_challenge": challenge, "code_challenge_method": "S256"})
    await page.goto(f"{url}/auth?{query}&lang=en")
    await page.get_by_test_id("api-key").fill(key)
    await page.get_by_test_id("sign-in").click()
    await page.get_by_test_id("authorize").wait_for()
    await page.screenshot(path=str(OUT / "consent-en.png"))
    await page.get_by_test_id("language").click()
    await page.get_by_test_id("authorize").wait_for()
    await page.screenshot(path=str(OUT / "consent-ru.png"))


async def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    upstream = FakeOpenAI().start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            catalog = Path(tmp) / "catalog.toml"
            catalog.write_text(sample_catalog(upstream.base_url), encoding="utf-8")
            async with running_router(router_settings(catalog)) as router, \
                    running_gateway(gateway_settings(f"127.0.0.1:{router.server.port}")) as url, \
                    httpx.AsyncClient(timeout=20) as http, async_playwright() as pw:
                manager = await populate(http, url)
                browser = await pw.chromium.launch(executable_path="/usr/bin/chromium",
                                                   args=CHROMIUM_ARGS)
                context = await browser.new_context(locale="en-US",
                                                    viewport={"width": 1280, "height": 800})
                page = await context.new_page()
                problems: list[str] = []
                page.on("pageerror", lambda error: problems.append(str(error)))
                page.on("console", lambda m: problems.append(m.text) if m.type == "error" and not
                        m.location.get("url", "").endswith("/console/session") else None)
                await page.goto(f"{url}/console")
                await page.get_by_test_id("api-key").wait_for()
                await page.screenshot(path=str(OUT / "sign-in-en.png"))
                await page.get_by_test_id("lang-toggle").click()
                await page.screenshot(path=str(OUT / "sign-in-ru.png"))
                await page.get_by_test_id("lang-toggle").click()
                await capture(page, url, manager, ACCOUNT_PAGES)
                await capture_consent(page, url, manager)
                await page.goto(f"{url}/console")
                await page.get_by_test_id("sign-out").click()
                await page.get_by_test_id("api-key").wait_for()
                await page.evaluate("localStorage.clear()")
                await capture(page, url, MASTER_KEY, ["operator"])
                await browser.close()
                if problems:
                    raise SystemExit(f"console errors: {problems}")
    finally:
        upstream.stop()
    print(f"screenshots: {sorted(p.name for p in OUT.glob('*.png'))}")


if __name__ == "__main__":
    asyncio.run(main())
