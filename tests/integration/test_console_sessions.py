"""Console sessions through a real gateway and router(s), in the embedded mode and in the cluster
mode (two replicas behind one gateway, so a session opened on one is used on the other): sign-in
with each kind of credential, the exact cookie, the cookie as the API's credential with CSRF
checks on changes, a session that sees exactly what its key sees, its end (sign-out, the key
disabled or deleted, 12 hours), and hostile input answered with a 4xx."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime

import httpx
import pytest

from tests.infra.fixtures import redis_cluster  # noqa: F401 - the session fixture
from tests.infra.pg_fixtures import postgres_ha  # noqa: F401 - the session fixture
from tests.integration.conftest import AUTH
from tests.integration.console_support import (
    Browser,
    Served,
    served_fixture,  # noqa: F401 - the fixture
)
from tests.support import MASTER_KEY

HELLO = {"model": "test/echo", "messages": [{"role": "user", "content": "hello"}]}
TWELVE_HOURS = 12 * 3600


@pytest.fixture(name="gateway_oauth")
def no_failed_auth_throttle() -> dict[str, object]:
    """The gateway's settings here: no throttle of failed authentications. _refused_everywhere
    polls until both replicas refuse, and while the second has yet to hear of the change, the
    first one's refusals are failures from this address: at the default 20 a minute, a second
    replica that heard 10 polls late made every answer a 429 (CI, once). The throttle has tests
    of its own (test_auth_throttle.py)."""
    return {"auth_failures_per_minute": 0}


def _iso(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).isoformat().replace("+00:00", "Z")


async def _refused_everywhere(browser: Browser, path: str = "/v1/key") -> httpx.Response:
    """The first of four 401s in a row (the gateway alternates replicas), waiting for the other
    replica to hear of a change (Redis pub/sub) for at most 10 s: a bound 100x what it takes."""
    deadline = time.monotonic() + 10.0
    while True:
        answers = [await browser.request("GET", path) for _ in range(4)]
        if all(a.status_code == 401 for a in answers) or time.monotonic() > deadline:
            assert [a.status_code for a in answers] == [401] * 4, answers[0].text
            return answers[0]


async def test_each_credential_signs_in_as_itself(served: Served) -> None:
    plain, plain_id = await served.key("pro", label="laptop")
    manager, manager_id = await served.key("mgmt", label="ops")
    expected_expiry = _iso(math.floor(served.clock.now + TWELVE_HOURS))
    for key, role, account, key_id, label in (
            (MASTER_KEY, "master", None, None, None),
            (manager, "management", served.account, manager_id, "ops"),
            (plain, "key", served.account, plain_id, "laptop")):
        browser = served.browser()
        resp = await browser.sign_in(key)
        assert resp.status_code == 200, resp.text
        assert resp.headers["set-cookie"] == (
            f"xr_session={browser.token}; HttpOnly; SameSite=Strict; Path=/")
        assert browser.token.startswith("xrs-") and len(browser.token) == 47
        assert resp.json() == {"data": {
            "role": role, "account_id": account, "key_id": key_id, "label": label,
            "csrf_token": browser.csrf, "expires_at": expected_expiry}}
        current = await browser.request("GET", "/console/session")
        assert current.status_code == 200 and current.json() == resp.json()
    assert len({browser.csrf, browser.token}) == 2


async def test_the_cookie_is_secure_when_the_browser_came_over_https(served: Served) -> None:
    browser = served.browser()
    resp = await browser.sign_in(MASTER_KEY, **{"X-Forwarded-Proto": "https"})
    assert resp.headers["set-cookie"] == (
        f"xr_session={browser.token}; HttpOnly; SameSite=Strict; Path=/; Secure")
    out = await browser.request("DELETE", "/console/session",
                                headers={"X-Forwarded-Proto": "https"})
    assert out.headers["set-cookie"] == (
        "xr_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0; Secure")


async def test_the_cookie_is_the_apis_credential_and_changes_need_the_csrf_token(
        served: Served) -> None:
    manager, _ = await served.key("mgmt")
    browser = served.browser()
    assert (await browser.sign_in(manager)).status_code == 200
    listed = await browser.request("GET", "/v1/keys")  # safe: no CSRF token needed
    assert listed.status_code == 200, listed.text
    body = {"tier": "free", "label": "made in the console"}
    for csrf in ("-", "x" * 43, browser.csrf[:-1] + "A" if browser.csrf[-1] != "A" else "B"):
        refused = await browser.request("POST", "/v1/keys", json=body, csrf=csrf)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["param"] == "X-CSRF-Token"
    missing = await served.http.post(f"{served.url}/v1/keys", json=body,
                                     headers={"Cookie": f"xr_session={browser.token}"})
    assert missing.status_code == 403
    made = await browser.request("POST", "/v1/keys", json=body)
    assert made.status_code == 201, made.text
    assert made.json()["data"]["account_id"] == served.account
    chat = await browser.request("POST", "/v1/chat/completions", json=HELLO)
    assert chat.status_code == 200, chat.text
    messages = await browser.request("POST", "/v1/messages", csrf="-", json={
        "model": "test/echo", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]})
    assert messages.status_code == 403
    # A header credential wins over the cookie, and needs no CSRF token.
    other, other_id = await served.key("free")
    own = await browser.request("GET", "/v1/key", headers={"Authorization": f"Bearer {other}"})
    assert own.json()["data"]["id"] == other_id


async def test_a_plain_keys_session_sees_exactly_what_its_key_sees(served: Served) -> None:
    await served.fund("5", account="acct-other")
    plain, plain_id = await served.key("pro")
    browser = served.browser()
    assert (await browser.sign_in(plain)).status_code == 200
    bearer = {"Authorization": f"Bearer {plain}"}
    for path in ("/v1/key", "/v1/credits", "/v1/keys", "/v1/credits?account_id=acct-other",
                 "/v1/usage", "/v1/accounts/acct-other/plan"):
        by_cookie = await browser.request("GET", path)
        by_key = await served.http.get(f"{served.url}{path}", headers=bearer)
        assert (by_cookie.status_code, by_cookie.json()) == (by_key.status_code, by_key.json())
    assert (await browser.request("GET", "/v1/key")).json()["data"]["id"] == plain_id
    assert (await browser.request("GET", "/v1/keys")).status_code == 403
    assert (await browser.request("GET", "/v1/credits?account_id=acct-other")).status_code == 403
    made = await browser.request("POST", "/v1/keys", json={"tier": "free"})
    assert made.status_code == 403


async def test_disabling_the_key_ends_its_sessions_for_good(served: Served) -> None:
    plain, plain_id = await served.key("pro")
    browser = served.browser()
    assert (await browser.sign_in(plain)).status_code == 200
    for _ in range(4):  # both replicas hold the session in their caches
        assert (await browser.request("GET", "/v1/key")).status_code == 200
    disable = await served.http.patch(f"{served.url}/v1/keys/{plain_id}", headers=AUTH,
                                      json={"disabled": True})
    assert disable.status_code == 200, disable.text
    refused = await _refused_everywhere(browser)
    assert refused.json()["error"]["type"] == "authentication_error"
    enable = await served.http.patch(f"{served.url}/v1/keys/{plain_id}", headers=AUTH,
                                     json={"disabled": False})
    assert enable.status_code == 200
    await _refused_everywhere(browser)  # the key works again; the session does not
    assert (await served.http.get(f"{served.url}/v1/key",
                                  headers={"Authorization": f"Bearer {plain}"})).status_code == 200


async def test_deleting_the_key_ends_its_sessions(served: Served) -> None:
    plain, plain_id = await served.key("pro")
    browser = served.browser()
    assert (await browser.sign_in(plain)).status_code == 200
    assert (await browser.request("GET", "/v1/key")).status_code == 200
    gone = await served.http.delete(f"{served.url}/v1/keys/{plain_id}", headers=AUTH)
    assert gone.json() == {"data": {"deleted": True}}
    await _refused_everywhere(browser)
    assert (await browser.request("GET", "/console/session")).status_code == 401


async def test_sign_out_revokes_the_session_and_clears_the_cookie(served: Served) -> None:
    browser = served.browser()
    assert (await browser.sign_in(MASTER_KEY)).status_code == 200
    for _ in range(4):
        assert (await browser.request("GET", "/v1/keys")).status_code == 200
    forged = await browser.request("DELETE", "/console/session", csrf="-")
    assert forged.status_code == 403
    assert (await browser.request("GET", "/v1/keys")).status_code == 200
    out = await browser.request("DELETE", "/console/session")
    assert out.status_code == 200
    assert out.json() == {"data": {"revoked": True}}
    assert out.headers["set-cookie"] == "xr_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"
    await _refused_everywhere(browser, "/v1/keys")
    again = await browser.request("DELETE", "/console/session")
    assert (again.status_code, again.json()) == (200, {"data": {"revoked": False}})
    anonymous = await served.http.delete(f"{served.url}/console/session")
    assert (anonymous.status_code, anonymous.json()) == (200, {"data": {"revoked": False}})


async def test_a_session_ends_twelve_hours_after_sign_in(served: Served) -> None:
    plain, _ = await served.key("pro")
    browser = served.browser()
    assert (await browser.sign_in(plain)).status_code == 200
    served.clock.now += TWELVE_HOURS - 1
    for _ in range(2):
        assert (await browser.request("GET", "/v1/key")).status_code == 200
    served.clock.now += 1
    expired = await _refused_everywhere(browser)
    assert expired.json()["error"]["message"] == "This session has expired: sign in again"
    current = await browser.request("GET", "/console/session")
    assert current.status_code == 401
    assert (await served.http.get(f"{served.url}/v1/key",
                                  headers={"Authorization": f"Bearer {plain}"})).status_code == 200


async def test_a_session_cannot_open_another(served: Served) -> None:
    browser = served.browser()
    assert (await browser.sign_in(MASTER_KEY)).status_code == 200
    resp = await served.browser().sign_in(browser.token)
    assert resp.status_code == 403, resp.text
    assert "set-cookie" not in resp.headers


async def test_hostile_sign_ins_are_4xx(served: Served) -> None:
    url = f"{served.url}/console/session"
    cases: list[tuple[dict[str, object], int]] = [
        ({"json": {"key": "xr-pro-" + "A" * 32 + "-AAAAAA"}}, 401),  # wrong checksum
        ({"json": {"key": "not a key at all"}}, 401),
        ({"json": {"key": "ключ"}}, 401),
        ({"json": {"key": "k" * 1025}}, 400),
        ({"json": {"key": ""}}, 400),
        ({"json": {"key": 42}}, 400),
        ({"json": {"key": "x", "extra": 1}}, 400),
        ({"json": ["x"]}, 400),
        ({"content": b"{not json", "headers": {"Content-Type": "application/json"}}, 400),
        ({"content": b'{"key": "' + b"k" * 20_000 + b'"}',
          "headers": {"Content-Type": "application/json"}}, 413),
        ({"content": b'{"key": "x"}', "headers": {"Content-Type": "text/plain"}}, 415),
        ({"data": {"key": MASTER_KEY}}, 415),
    ]
    for kwargs, status in cases:
        resp = await served.http.post(url, **kwargs)  # type: ignore[arg-type]
        assert resp.status_code == status, (kwargs, resp.text)
        assert set(resp.json()["error"]) == {"message", "type", "code", "param", "metadata"}
        assert "set-cookie" not in resp.headers


async def test_hostile_cookies_and_csrf_headers_are_4xx(served: Served) -> None:
    browser = served.browser()
    assert (await browser.sign_in(MASTER_KEY)).status_code == 200
    for cookie in ("xrs-" + "A" * 43, "xrs-short", "garbage", "x" * 4000, "xrs-" + "é" * 43):
        for path in ("/v1/key", "/console/session"):
            resp = await served.http.get(f"{served.url}{path}",
                                         headers={b"Cookie": f"xr_session={cookie}".encode()})
            assert resp.status_code == 401, (cookie, path, resp.text)
    for csrf in ("é" * 10, "a\tb", "A" * 10_000):
        resp = await served.http.post(f"{served.url}/v1/keys", json={"tier": "free"},
                                      headers={b"Cookie": f"xr_session={browser.token}".encode(),
                                               b"X-CSRF-Token": csrf.encode()})
        assert resp.status_code == 403, resp.text
    nobody = await served.http.get(f"{served.url}/console/session")
    assert nobody.status_code == 401
    assert nobody.json()["error"]["type"] == "authentication_error"
