"""The web console in real Chromium, in the embedded and the cluster mode: sign in with a key and
see the exact balance, create a key and use it with curl, a streamed chat in the playground,
another account's data refused (in the page and by the API), every page in both languages with
no console error."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from playwright.async_api import Page, expect

from tests.browser.conftest import Problems, Served, sign_in
from tests.integration.conftest import AUTH

HELLO = [{"role": "user", "content": "hello"}]


async def curl_chat(base: str, key: str, model: str = "test/echo") -> tuple[int, dict[str, object]]:
    """A chat completion with curl in a subprocess (not blocking the loop the servers run in)."""
    proc = await asyncio.create_subprocess_exec(
        "curl", "-s", "-o", "-", "-w", "\n%{http_code}", f"{base}/v1/chat/completions",
        "-H", f"Authorization: Bearer {key}", "-H", "Content-Type: application/json",
        "-d", json.dumps({"model": model, "messages": HELLO}),
        stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    body, _, status = out.decode().rpartition("\n")
    return int(status), json.loads(body)


async def rub_text(page: Page, value: object) -> str:
    """An amount as the console writes it in English (kopecks, and up to 6 decimals)."""
    return str(await page.evaluate(
        "c => new Intl.NumberFormat('en-US', {minimumFractionDigits: 2, "
        "maximumFractionDigits: 6}).format(c) + ' ₽'", value))


async def usage_rows(served: Served, group_by: str) -> list[dict[str, Any]]:
    """The account's usage once it has a row: in the cluster mode the ledger consumer writes the
    records to PostgreSQL a fraction of a second after the answers (30 s: a loaded machine)."""
    deadline = time.monotonic() + 30
    while True:
        reply = await served.http.get(f"{served.url}/v1/usage", headers=AUTH, params={
            "account_id": served.account, "group_by": group_by})
        rows: list[dict[str, Any]] = reply.json()["data"]
        if rows or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.05)


async def test_sign_in_with_a_key_shows_the_exact_balance_and_keeps_no_key(
        served: Served, page: Page) -> None:
    key = await served.key("pro")
    await sign_in(page, served.url, key)
    await expect(page.get_by_test_id("balance")).to_have_text("1,000.00 ₽")
    stored = await page.evaluate(
        "() => JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage)])")
    assert key not in stored
    cookies = {c["name"]: c for c in await page.context.cookies()}
    assert cookies["xr_session"]["httpOnly"] is True
    assert cookies["xr_session"]["sameSite"] == "Strict"
    assert key not in cookies["xr_session"]["value"]
    # A plain key sees no key management, usage report or operator view.
    for hidden in ("keys", "usage", "operator"):
        await expect(page.get_by_test_id(f"nav-{hidden}")).to_have_count(0)
    await page.get_by_test_id("sign-out").click()
    await page.get_by_test_id("api-key").wait_for()
    assert [c["name"] for c in await page.context.cookies()] == []
    # Signed out on the server too: the old cookie no longer opens anything.
    old = await served.http.get(f"{served.url}/console/session",
                                headers={"Cookie": f"xr_session={cookies['xr_session']['value']}"})
    assert old.status_code == 401, old.text


async def test_a_wrong_key_is_refused_in_the_page(
        served: Served, page: Page, problems: Problems) -> None:
    problems.allow(401)
    await page.goto(f"{served.url}/console")
    await page.get_by_test_id("api-key").fill("xr-pro-not-a-real-key")
    await page.get_by_test_id("sign-in").click()
    await expect(page.get_by_test_id("error")).to_contain_text("401")
    await expect(page.get_by_test_id("sign-out")).to_have_count(0)


async def test_create_a_key_in_the_page_and_use_it_with_curl(served: Served, page: Page) -> None:
    await served.plan("pro")
    manager = await served.key("mgmt")
    await sign_in(page, served.url, manager)
    await page.get_by_test_id("nav-keys").click()
    await page.get_by_test_id("key-name").fill("made in the console")
    await page.get_by_test_id("create-key").click()
    new_key = await page.get_by_test_id("new-key").text_content()
    assert new_key is not None and new_key.startswith("xr-pro-")
    status, body = await curl_chat(served.url, new_key)
    assert status == 200, body
    listed = await served.http.get(f"{served.url}/v1/keys", headers=AUTH,
                                   params={"account_id": served.account})
    made = [k for k in listed.json()["data"] if k["label"] == "made in the console"]
    assert len(made) == 1
    # Disabled in the page, the key is refused.
    await page.get_by_test_id(f"toggle-{made[0]['id']}").click()
    await expect(page.get_by_test_id(f"toggle-{made[0]['id']}")).to_have_text("Enable")
    status, body = await curl_chat(served.url, new_key)
    assert status in (401, 403), body


async def test_a_streamed_chat_in_the_playground_shows_route_tokens_and_cost(
        served: Served, page: Page) -> None:
    key = await served.key("pro")
    await sign_in(page, served.url, key)
    await page.get_by_test_id("nav-playground").click()
    await page.get_by_test_id("play-model").select_option("test/echo")
    await page.get_by_test_id("play-message").fill("hello from the playground")
    await page.get_by_test_id("play-send").click()
    usage = page.get_by_test_id("play-usage")
    await usage.wait_for()
    await expect(page.get_by_test_id("play-route")).to_contain_text("Route: test/echo@fake")
    text = await usage.text_content()
    assert text is not None
    generation = text.split()[-1]
    stats = await served.http.get(f"{served.url}/v1/generation", params={"id": generation},
                                  headers={"Authorization": f"Bearer {key}"})
    assert stats.status_code == 200, stats.text
    g = stats.json()["data"]
    assert g["streamed"] is True
    assert text.startswith(f"{g['tokens_prompt']} prompt + {g['tokens_completion']} completion "
                           f"tokens, {await rub_text(page, g['total_cost'])}")
    answer = page.locator(".msg.assistant .content")
    await expect(answer).not_to_have_text("")


@pytest.mark.parametrize("role", ["mgmt", "pro", "master"])
async def test_every_page_renders_in_both_languages_without_console_errors(
        served: Served, page: Page, role: str) -> None:
    key = "xr-test-master-key" if role == "master" else await served.key(role)
    await sign_in(page, served.url, key)
    for language, overview in (("en", "Overview"), ("ru", "Обзор")):
        if language == "ru":
            await page.get_by_test_id("lang-toggle").click()
        assert await page.evaluate("document.documentElement.lang") == language
        nav = page.locator("nav.side a")
        ids = [str(await a.get_attribute("data-testid"))[4:] for a in await nav.all()]
        if role != "master":
            await expect(page.get_by_test_id("nav-overview")).to_have_text(overview)
        for page_id in ids:
            await page.get_by_test_id(f"nav-{page_id}").click()
            # Drawn with its data, in this language (a failed load shows an error instead).
            await page.locator(f"[data-testid=page-{page_id}][data-ready]").wait_for()
            await expect(page.get_by_test_id("error")).to_have_count(0)
        expected = {"master": ["operator", "keys", "usage", "generations", "models",
                               "providers", "playground"],
                    "mgmt": ["overview", "keys", "usage", "generations", "models",
                             "providers", "playground"],
                    "pro": ["overview", "generations", "models", "providers", "playground"]}
        assert ids == expected[role]
    # The choice is remembered across a reload (and only the language is stored).
    await page.reload()
    await page.get_by_test_id("sign-out").wait_for()
    assert await page.evaluate("document.documentElement.lang") == "ru"
    assert await page.evaluate("Object.keys(localStorage)") == ["xrouter-console-lang"]


async def test_the_operator_tops_up_an_account_with_a_reference(
        served: Served, page: Page) -> None:
    await sign_in(page, served.url, "xr-test-master-key")
    await expect(page.get_by_test_id("page-operator")).to_be_visible()
    await page.get_by_test_id("topup-account").fill(served.account)
    await page.get_by_test_id("topup-amount").fill("250.50")
    await page.get_by_test_id("topup-reference").fill("invoice 42")
    await page.get_by_test_id("topup-submit").click()
    await expect(page.get_by_test_id("topup-done")).to_have_text(
        f"Topped up: the balance of {served.account} is 1,250.50 ₽")
    await expect(page.get_by_test_id(f"balance-{served.account}")).to_have_text("1,250.50 ₽")
    credits = await served.http.get(f"{served.url}/v1/credits", headers=AUTH,
                                    params={"account_id": served.account})
    assert credits.json()["data"]["balance"] == 1250.5


async def test_saving_a_default_plan_keeps_the_tiers_own_limits(
        served: Served, page: Page) -> None:
    url = f"{served.url}/v1/accounts/{served.account}/plan"
    default = (await served.http.get(url, headers=AUTH)).json()["data"]
    assert (default["is_default"], default["tier"]) == (True, "free")
    await sign_in(page, served.url, "xr-test-master-key")
    await page.get_by_test_id(f"show-{served.account}").click()
    for name in ("requests_per_minute", "requests_per_day", "tokens_per_minute", "concurrent"):
        field = page.get_by_test_id(f"plan-{name}")
        await expect(field).to_have_value("")  # the tier's figure is a placeholder, not a value
        shown = "" if default[name] is None else str(default[name])
        assert (await field.get_attribute("placeholder") or "") == shown
    await page.get_by_test_id("plan-tier").select_option("pro")
    await page.get_by_test_id("plan-save").click()
    await expect(page.get_by_text("Plan saved")).to_be_visible()
    saved = (await served.http.get(url, headers=AUTH)).json()["data"]
    assert (saved["tier"], saved["is_default"]) == ("pro", False)
    # No ceiling was typed, so none was set: the plan has tier pro's own limits (docs/accounts.md),
    # not the free tier's that the form showed.
    names = ("requests_per_minute", "requests_per_day", "tokens_per_minute", "concurrent")
    assert [saved[name] for name in names] == [100, 1000, None, 20]
    assert [default[name] for name in names] != [100, 1000, None, 20]


async def test_usage_by_model_matches_the_api_and_exports_csv(served: Served, page: Page) -> None:
    status, _ = await curl_chat(served.url, await served.key("pro"))
    assert status == 200
    rows = await usage_rows(served, "model")
    assert [r["model"] for r in rows] == ["test/echo"]
    await sign_in(page, served.url, await served.key("mgmt"))
    await page.get_by_test_id("nav-usage").click()
    await page.get_by_test_id("usage-group").select_option("model")
    row = page.get_by_test_id("usage-table").locator("tbody tr")
    await expect(row).to_have_count(1)
    await expect(row.locator("td")).to_have_text(
        ["test/echo", "1", str(rows[0]["prompt_tokens"]), str(rows[0]["completion_tokens"]),
         await rub_text(page, rows[0]["cost"])])
    await expect(page.get_by_test_id("usage-chart").locator("rect")).to_have_count(1)
    async with page.expect_download() as started:
        await page.get_by_test_id("usage-csv").click()
    download = await started.value
    assert download.suggested_filename == "usage-model.csv"
    saved = await download.path()
    lines = (await asyncio.to_thread(saved.read_text, encoding="utf-8")).splitlines()
    assert len(lines) == 2 and "model" in lines[0] and lines[1].startswith("test/echo,")


# (the key's tier, the page asked for the other account, its table, the API's refusals)
REFUSALS = [("mgmt", "keys", "keys-table", ["/v1/keys", "/v1/usage", "/v1/generations"]),
            ("pro", "generations", "gen-table", ["/v1/generations", "/v1/keys", "/v1/usage"])]


@pytest.mark.parametrize("case", REFUSALS, ids=["management-key", "plain-key"])
async def test_another_accounts_data_is_refused_in_the_page_and_by_the_api(
        served: Served, page: Page, problems: Problems,
        case: tuple[str, str, str, list[str]]) -> None:
    tier, page_id, table, endpoints = case
    other = served.account + "-b"
    await served.fund(other, "5")
    status, answer = await curl_chat(served.url, await served.key("pro", account=other))
    assert status == 200
    mine = await served.key(tier)
    problems.allow(403)
    await sign_in(page, served.url, mine)
    await page.goto(f"{served.url}/console#/{page_id}?account_id={other}")
    await expect(page.get_by_test_id("error")).to_contain_text("403")
    await expect(page.get_by_test_id(table)).to_have_count(0)
    auth = {"Authorization": f"Bearer {mine}"}
    for path in endpoints:
        refused = await served.http.get(f"{served.url}{path}", params={"account_id": other},
                                        headers=auth)
        assert refused.status_code == 403, (path, refused.text)
    one = await served.http.get(f"{served.url}/v1/generation", params={"id": str(answer["id"])},
                                headers=auth)
    assert one.status_code == 404, one.text  # another key's generation does not exist for it


async def test_models_show_rub_per_million_tokens_and_context(served: Served, page: Page) -> None:
    await sign_in(page, served.url, await served.key("pro"))
    await page.get_by_test_id("nav-models").click()
    row = page.get_by_test_id("models-table").locator("tbody tr").filter(
        has=page.get_by_text("test/buckets", exact=True))
    # The catalog's prices are per million tokens (100 and 200 RUB); the API's are per token.
    await expect(row.locator("td").nth(1)).to_have_text("16,000")
    await expect(row.locator("td").nth(2)).to_have_text("100")
    await expect(row.locator("td").nth(3)).to_have_text("200")
    await expect(row.locator("td").nth(4)).to_have_text("fake")
    await expect(row.locator(".chip")).to_contain_text(["max_tokens", "temperature"])


async def test_a_keys_limits_and_models_change_in_the_page_and_it_is_deleted(
        served: Served, page: Page) -> None:
    await served.plan("pro")
    key = await served.key("pro", name="to change")
    listed = await served.http.get(f"{served.url}/v1/keys", headers=AUTH,
                                   params={"account_id": served.account})
    key_id = next(k["id"] for k in listed.json()["data"] if k["label"] == "to change")
    await sign_in(page, served.url, await served.key("mgmt"))
    await page.get_by_test_id("nav-keys").click()
    await page.get_by_test_id(f"edit-{key_id}").click()
    await page.get_by_test_id("edit-key-limit").fill("50")
    await page.get_by_test_id("edit-key-models").fill("test/echo, xrouter/demo")
    await page.get_by_test_id("edit-key-rpm").fill("7")
    await page.get_by_test_id("save-key").click()
    row = page.get_by_test_id("keys-table").locator("tbody tr").filter(has_text="to change")
    await expect(row.locator("td").nth(5)).to_have_text(
        "≤ 50.00 ₽ · 7/min · 1,000/day · test/echo, xrouter/demo")
    got = (await served.http.get(f"{served.url}/v1/keys/{key_id}", headers=AUTH)).json()["data"]
    assert (got["limit"], got["allowed_models"], got["rate_limit"]["requests"]) == (
        50, ["test/echo", "xrouter/demo"], 7)
    status, _ = await curl_chat(served.url, key, model="test/failover")
    assert status == 403  # a model the key may no longer use
    # Delete asks once more before it deletes.
    await page.get_by_test_id(f"delete-{key_id}").click()
    await expect(page.get_by_test_id(f"delete-{key_id}")).to_have_text("Delete for good?")
    await page.get_by_test_id(f"delete-{key_id}").click()
    await expect(row).to_have_count(0)
    status, _ = await curl_chat(served.url, key)
    assert status == 401
