"""OAuth PKCE through a real gateway and router(s), in the embedded mode and in the cluster mode:
the consent page, the approval (a code sent to the callback, its query kept), the exchange for a
new key of the approving account labelled with the app's host; codes single-use even when
exchanged concurrently, 10 minutes long, a wrong verifier 403; plain only when configured;
callback hosts restricted by the operator; hostile input answered with a 4xx, pages escaped."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from tests.infra.fixtures import redis_cluster  # noqa: F401 - the session fixture
from tests.infra.pg_fixtures import postgres_ha  # noqa: F401 - the session fixture
from tests.integration.conftest import AUTH
from tests.integration.console_support import (
    Browser,
    Served,
    gateway_oauth_fixture,  # noqa: F401 - the fixture
    served_fixture,  # noqa: F401 - the fixture
)
from tests.support import MASTER_KEY

CALLBACK = "http://127.0.0.1:9/done?state=a%20b&x=1"


def pkce(method: str = "S256") -> tuple[str, str]:
    """A verifier and its challenge."""
    verifier = secrets.token_urlsafe(48)
    if method == "plain":
        return verifier, verifier
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).decode().rstrip("=")


def query(callback: str, challenge: str, method: str | None = "S256") -> str:
    params = {"callback_url": callback, "code_challenge": challenge}
    if method is not None:
        params["code_challenge_method"] = method
    return "/auth?" + urlencode(params)


async def manager(served: Served) -> Browser:
    key, _ = await served.key("mgmt")
    browser = served.browser()
    assert (await browser.sign_in(key)).status_code == 200
    return browser


async def approve(browser: Browser, challenge: str, method: str = "S256",
                  callback: str = CALLBACK, csrf: str | None = None) -> httpx.Response:
    form = {"callback_url": callback, "code_challenge": challenge,
            "code_challenge_method": method,
            "csrf_token": browser.csrf if csrf is None else csrf}
    return await browser.request("POST", "/auth", data=form, csrf="")


async def code_for(browser: Browser, challenge: str, method: str = "S256",
                   callback: str = CALLBACK) -> str:
    resp = await approve(browser, challenge, method, callback)
    assert resp.status_code == 303, resp.text
    return parse_qs(urlsplit(resp.headers["location"]).query)["code"][0]


async def exchange(served: Served, code: str, verifier: str,
                   method: str | None = "S256") -> httpx.Response:
    body: dict[str, Any] = {"code": code, "code_verifier": verifier}
    if method is not None:
        body["code_challenge_method"] = method
    return await served.http.post(f"{served.url}/v1/auth/keys", json=body)


async def test_s256_approval_makes_a_key_of_the_account_labelled_with_the_app(
        served: Served) -> None:
    browser = await manager(served)
    verifier, challenge = pkce()
    page = await browser.request("GET", query(CALLBACK, challenge))
    assert page.status_code == 200, page.text
    assert 'data-testid="authorize"' in page.text and "127.0.0.1:9" in page.text
    assert page.headers["content-security-policy"] == (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; form-action 'self' http://127.0.0.1:9; frame-ancestors 'none'; "
        "base-uri 'none'")
    assert (page.headers["x-frame-options"], page.headers["referrer-policy"]) == (
        "DENY", "no-referrer")
    approved = await approve(browser, challenge)
    assert approved.status_code == 303
    location = approved.headers["location"]
    assert location.startswith("http://127.0.0.1:9/done?state=a%20b&x=1&code=")
    code = parse_qs(urlsplit(location).query)["code"][0]
    made = await exchange(served, code, verifier)
    assert made.status_code == 200, made.text
    assert set(made.json()) == {"key", "user_id"}
    assert made.json()["user_id"] == served.account
    assert made.headers["access-control-allow-origin"] == "*"
    key = made.json()["key"]
    info = await served.http.get(f"{served.url}/v1/key", headers={"Authorization": f"Bearer {key}"})
    assert info.status_code == 200, info.text
    assert (info.json()["data"]["label"], info.json()["data"]["account_id"]) == (
        "127.0.0.1:9", served.account)
    chat = await served.http.post(f"{served.url}/v1/chat/completions",
                                  headers={"Authorization": f"Bearer {key}"},
                                  json={"model": "test/echo",
                                        "messages": [{"role": "user", "content": "hi"}]})
    assert chat.status_code == 200, chat.text


async def test_deny_sends_the_browser_back_to_the_app_with_access_denied(served: Served) -> None:
    browser = await manager(served)
    _, challenge = pkce()
    page = await browser.request("GET", query(CALLBACK, challenge))
    assert page.status_code == 200, page.text
    # A link, not a form: nothing is made or asked of the router; the app's own query is kept.
    assert ('<a href="http://127.0.0.1:9/done?state=a%20b&amp;x=1&amp;error=access_denied" '
            'data-testid="deny">Deny: back to the app without a key</a>') in page.text
    ru = await browser.request("GET", query(CALLBACK, challenge) + "&lang=ru")
    assert 'data-testid="deny">Отказать: вернуться в приложение без ключа</a>' in ru.text


async def test_a_browser_page_sending_json_gets_its_preflight_answered(served: Served) -> None:
    pre = await served.http.request("OPTIONS", f"{served.url}/v1/auth/keys", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert (pre.status_code, pre.content) == (204, b"")
    assert {k: v for k, v in pre.headers.items() if k.startswith("access-control-")} == {
        "access-control-allow-origin": "*", "access-control-allow-methods": "POST",
        "access-control-allow-headers": "Content-Type", "access-control-max-age": "600"}


async def test_a_wrong_verifier_is_403_and_the_code_is_spent(served: Served) -> None:
    browser = await manager(served)
    verifier, challenge = pkce()
    code = await code_for(browser, challenge)
    wrong = await exchange(served, code, pkce()[0])
    assert (wrong.status_code, wrong.json()["error"]["message"]) == (
        403, "Invalid code or code_verifier")
    assert (await exchange(served, code, verifier)).status_code == 403


async def test_a_code_is_exchanged_once_even_concurrently(served: Served) -> None:
    browser = await manager(served)
    verifier, challenge = pkce()
    code = await code_for(browser, challenge)
    answers = await asyncio.gather(*(exchange(served, code, verifier) for _ in range(8)))
    assert sorted(a.status_code for a in answers) == [200] + [403] * 7
    listed = await served.http.get(f"{served.url}/v1/keys", headers=AUTH,
                                   params={"account_id": served.account})
    assert [k["label"] for k in listed.json()["data"]].count("127.0.0.1:9") == 1


async def test_a_code_lasts_ten_minutes(served: Served) -> None:
    browser = await manager(served)
    verifier, challenge = pkce()
    late = await code_for(browser, challenge)
    in_time = await code_for(browser, challenge)
    served.clock.now += 599
    assert (await exchange(served, in_time, verifier)).status_code == 200
    served.clock.now += 1
    assert (await exchange(served, late, verifier)).status_code == 403


async def test_plain_is_refused_unless_configured(served: Served) -> None:
    browser = await manager(served)
    verifier, challenge = pkce("plain")
    for method in ("plain", None):  # no method means plain (RFC 7636)
        page = await browser.request("GET", query(CALLBACK, challenge, method))
        assert page.status_code == 400
        assert "plain is not accepted here" in page.text
    refused = await approve(browser, challenge, "plain")
    assert refused.status_code == 400
    exchanged = await exchange(served, "A" * 43, verifier, "plain")
    assert exchanged.status_code == 400
    assert exchanged.json()["error"]["param"] == "code_challenge_method"


@pytest.mark.parametrize("gateway_oauth", [{"oauth_allow_plain": True}])
async def test_plain_works_when_configured_and_methods_must_match(served: Served) -> None:
    browser = await manager(served)
    verifier, challenge = pkce("plain")
    assert (await browser.request("GET", query(CALLBACK, challenge, "plain"))).status_code == 200
    code = await code_for(browser, challenge, "plain")
    assert (await exchange(served, code, verifier, None)).status_code == 200
    s256_verifier, s256 = pkce()
    code = await code_for(browser, s256)
    mismatch = await exchange(served, code, s256_verifier, "plain")
    assert (mismatch.status_code, mismatch.json()["error"]["param"]) == (
        400, "code_challenge_method")


@pytest.mark.parametrize("gateway_oauth", [{"oauth_allowed_callbacks": ("app.example",
                                                                       "127.0.0.1:9")}])
async def test_the_operator_restricts_callback_hosts(served: Served) -> None:
    browser = await manager(served)
    _, challenge = pkce()
    for url, status in (("https://app.example/cb", 200), ("http://app.example:8443/cb", 200),
                        (CALLBACK, 200), ("https://evil.example/cb", 403),
                        ("http://127.0.0.1:10/cb", 403), ("http://localhost:9/cb", 403)):
        page = await browser.request("GET", query(url, challenge))
        assert page.status_code == status, (url, page.text)
    assert (await approve(browser, challenge, callback="https://evil.example/cb")).status_code \
        == 403


async def test_only_a_management_key_may_approve(served: Served) -> None:
    _, challenge = pkce()
    plain, _ = await served.key("pro")
    for key, says in ((plain, "This key cannot make keys"),
                      (MASTER_KEY, "The master key belongs to no account")):
        browser = served.browser()
        assert (await browser.sign_in(key)).status_code == 200
        page = await browser.request("GET", query(CALLBACK, challenge))
        assert page.status_code == 200 and says in page.text
        assert 'data-testid="authorize"' not in page.text
        refused = await approve(browser, challenge)
        assert refused.status_code == 403, refused.text
    anonymous = served.browser()
    page = await anonymous.request("GET", query(CALLBACK, challenge))
    assert 'data-testid="api-key"' in page.text and 'data-testid="sign-in"' in page.text
    assert (await approve(anonymous, challenge, csrf="x")).status_code == 401


async def test_a_forged_approval_or_a_disabled_approver_gets_no_key(served: Served) -> None:
    key, key_id = await served.key("mgmt")
    browser = served.browser()
    assert (await browser.sign_in(key)).status_code == 200
    verifier, challenge = pkce()
    for csrf in ("", "forged", browser.csrf + "x"):
        assert (await approve(browser, challenge, csrf=csrf)).status_code == 403
    code = await code_for(browser, challenge)
    disabled = await served.http.patch(f"{served.url}/v1/keys/{key_id}", headers=AUTH,
                                       json={"disabled": True})
    assert disabled.status_code == 200
    assert (await exchange(served, code, verifier)).status_code == 403


async def test_hostile_authorization_requests_get_an_escaped_error_page(served: Served) -> None:
    browser = await manager(served)
    _, challenge = pkce()
    for url in ("", "ftp://127.0.0.1/x", "javascript:alert(1)", "/relative", "https://u:p@a.example/",
                "https://a.example/#frag", "http://a.example/cb", "https://a.example:99999/",
                "https://exa mple.com/", "https://пример.рф/", "https://a.example/" + "x" * 3000,
                'https://a"><script>alert(1)</script>.example/'):
        page = await browser.request("GET", query(url, challenge))
        assert page.status_code == 400, (url, page.text)
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert "<script>alert" not in page.text
    for bad in ("x" * 42, "x" * 44, "é" * 43, "<script>" + "a" * 35):
        page = await browser.request("GET", query(CALLBACK, bad))
        assert page.status_code == 400 and "<script>" + "a" not in page.text
    assert (await browser.request("GET", "/auth")).status_code == 400
    assert (await browser.request("GET", query(CALLBACK, challenge, "S512"))).status_code == 400
    raw = await browser.request("POST", "/auth", content=b"x" * 20_000,
                                headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert raw.status_code == 413
    as_json = await browser.request("POST", "/auth", json={"callback_url": CALLBACK})
    assert as_json.status_code == 415


async def test_hostile_exchanges_are_4xx(served: Served) -> None:
    url = f"{served.url}/v1/auth/keys"
    verifier = pkce()[0]
    cases: list[tuple[dict[str, Any], int]] = [
        ({"content": b"{nope"}, 400), ({"json": []}, 400), ({"json": {}}, 400),
        ({"json": {"code": 5}}, 400), ({"json": {"code": "x" * 300}}, 400),
        ({"json": {"code": "A" * 43, "code_verifier": verifier}}, 400),  # plain by default
        ({"json": {"code": "A" * 43, "code_verifier": verifier,
                   "code_challenge_method": "S512"}}, 400),
        ({"json": {"code": "A" * 43, "code_verifier": "short",
                   "code_challenge_method": "S256"}}, 400),
        ({"json": {"code": "é" * 43, "code_verifier": verifier,
                   "code_challenge_method": "S256"}}, 403),
        ({"content": b'{"code": "\\ud800", "code_verifier": "' + verifier.encode()
          + b'", "code_challenge_method": "S256"}'}, 400),  # a lone surrogate: no JSON text
        ({"json": {"code": "A" * 43, "code_verifier": verifier,
                   "code_challenge_method": "S256"}}, 403),
        ({"content": b"x" * 20_000}, 413),
    ]
    for kwargs, status in cases:
        resp = await served.http.post(url, **kwargs)
        assert resp.status_code == status, (kwargs, resp.text)
        assert set(resp.json()["error"]) == {"message", "type", "code", "param", "metadata"}


async def test_the_consent_page_speaks_russian_or_english_and_switches(served: Served) -> None:
    """The browser's first choice of the two (Accept-Language), `lang` overriding it; the switch
    link keeps the authorization's parameters. The refusal and the consent itself too."""
    _, challenge = pkce()
    anonymous = served.browser()
    ru = await anonymous.request("GET", query(CALLBACK, challenge),
                                 headers={"Accept-Language": "ru-RU,ru;q=0.9,en;q=0.8"})
    assert ru.status_code == 200 and '<html lang="ru">' in ru.text
    assert ">Войти</button>" in ru.text and 'data-testid="sign-in"' in ru.text
    assert ">English</a>" in ru.text
    link = ru.text.split('data-testid="language"')[0].rsplit('href="', 1)[1].split('"')[0]
    switched = parse_qs(urlsplit(link.replace("&amp;", "&")).query)
    assert switched == {"callback_url": [CALLBACK], "code_challenge": [challenge],
                        "code_challenge_method": ["S256"], "lang": ["en"]}
    en = await anonymous.request("GET", query(CALLBACK, challenge) + "&lang=en",
                                 headers={"Accept-Language": "ru"})
    assert '<html lang="en">' in en.text and ">Sign in</button>" in en.text
    preferred = await anonymous.request("GET", query(CALLBACK, challenge),
                                        headers={"Accept-Language": "de, en;q=0.5, ru;q=0.9"})
    assert '<html lang="ru">' in preferred.text
    browser = await manager(served)
    consent = await browser.request("GET", query(CALLBACK, challenge) + "&lang=ru")
    assert 'data-testid="authorize">Разрешить 127.0.0.1:9</button>' in consent.text
    assert "будет создан новый API-ключ аккаунта" in consent.text
    bad = await browser.request("GET", query("ftp://x/", challenge) + "&lang=ru")
    assert bad.status_code == 400 and "Этому приложению нельзя предоставить доступ" in bad.text
