"""What the console-session and OAuth tests share: a real gateway and router(s) in the embedded
mode or the cluster mode (two replicas on PostgreSQL HA and the Redis Cluster) with a clock the
test moves, and a Browser that holds one session cookie as a browser does."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.openai_upstream import FakeOpenAI
from tests.infra.postgres_ha import PostgresHA
from tests.infra.redis_cluster import RedisCluster
from tests.integration.cluster_support import running_cluster
from tests.integration.conftest import AUTH
from tests.support import Clock, gateway_settings, router_settings, running_gateway, running_router


@dataclass
class Served:
    url: str
    http: httpx.AsyncClient
    account: str
    clock: Clock
    mode: str

    async def key(self, tier: str = "pro", account: str = "", **body: Any) -> tuple[str, str]:
        """A new key of the account (or of `account`): its plain text and id."""
        resp = await self.http.post(f"{self.url}/v1/keys", headers=AUTH, json={
            "account_id": account or self.account, "tier": tier, **body})
        assert resp.status_code == 201, resp.text
        return resp.json()["key"], resp.json()["data"]["id"]

    async def fund(self, amount: str = "100", account: str = "") -> None:
        resp = await self.http.post(f"{self.url}/v1/credits", headers=AUTH,
                                    json={"account_id": account or self.account,
                                          "amount": amount})
        assert resp.status_code == 200, resp.text

    def browser(self) -> Browser:
        return Browser(self.url, self.http)


@dataclass
class Browser:
    """One browser's cookie: sent with every request, CSRF token added to unsafe ones unless
    told otherwise. The shared client keeps no cookie of its own."""

    url: str
    http: httpx.AsyncClient
    token: str = ""
    csrf: str = ""
    session: dict[str, Any] = field(default_factory=dict)

    async def sign_in(self, key: str, **headers: str) -> httpx.Response:
        resp = await self.http.post(f"{self.url}/console/session", json={"key": key},
                                    headers=headers)
        self.http.cookies.clear()
        if resp.status_code == 200:
            self.session = resp.json()["data"]
            self.csrf = self.session["csrf_token"]
            cookie = resp.headers["set-cookie"]
            self.token = cookie.removeprefix("xr_session=").partition(";")[0]
        return resp

    async def request(self, method: str, path: str, *, csrf: str | None = None,
                      **kwargs: Any) -> httpx.Response:
        headers = {**kwargs.pop("headers", {})}
        if self.token:
            headers["Cookie"] = f"xr_session={self.token}"
        if method in {"POST", "PUT", "PATCH", "DELETE"}:
            token = self.csrf if csrf is None else csrf
            if token:
                headers["X-CSRF-Token"] = token
        resp = await self.http.request(method, f"{self.url}{path}", headers=headers, **kwargs)
        self.http.cookies.clear()
        return resp


@contextlib.asynccontextmanager
async def serving(request: pytest.FixtureRequest, tmp_path: Path, catalog: Path,
                  upstream: FakeOpenAI, **gateway: object) -> AsyncIterator[Served]:
    """The stack of request.param ("embedded" or "cluster"), its clock at the real time."""
    clock = Clock(time.time())
    async with contextlib.AsyncExitStack() as stack:
        if request.param == "embedded":
            router = await stack.enter_async_context(
                running_router(router_settings(catalog), wall=clock))
            url = await stack.enter_async_context(running_gateway(
                gateway_settings(f"127.0.0.1:{router.server.port}", **gateway)))
            http = await stack.enter_async_context(httpx.AsyncClient(timeout=20))
            yield Served(url, http, "acct-console", clock, "embedded")
            return
        postgres: PostgresHA = request.getfixturevalue("postgres_ha")
        redis: RedisCluster = request.getfixturevalue("redis_cluster")
        cluster = await stack.enter_async_context(
            running_cluster(tmp_path, catalog, postgres, redis, wall=clock, gateway=gateway))
        yield Served(cluster.url, cluster.http, cluster.account, clock, "cluster")


@pytest.fixture(name="gateway_oauth")
def gateway_oauth_fixture() -> dict[str, object]:
    """More gateway settings (a test parametrizes `gateway_oauth` to change them)."""
    return {}


# Named apart from the `served` argument of the tests it feeds (import it into each module).
@pytest.fixture(params=["embedded", "cluster"], name="served")
async def served_fixture(request: pytest.FixtureRequest, tmp_path: Path, catalog: Path,
                         upstream: FakeOpenAI,
                         gateway_oauth: dict[str, object]) -> AsyncIterator[Served]:
    """Either mode, its account funded with 100 RUB."""
    async with serving(request, tmp_path, catalog, upstream, **gateway_oauth) as served:
        await served.fund()
        yield served
