"""USD prices at the Central Bank's rate, end to end: a router whose feed reads the local fake of
the Bank's XML (tests/fakes/cbr_upstream.py) behind a real gateway. The rate in force changes
between two generations and each records its own; a failed fetch keeps the last rate; a
restarted router prices with the stored rate while the Bank is down."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from tests.fakes.cbr_upstream import FakeCbr, with_rate
from tests.integration.conftest import AUTH
from tests.integration.test_currencies import (
    ACCOUNT,
    _chat,
    _key,
    catalog,  # noqa: F401 - the fixture
    rub,
    usd_cost,
)
from tests.support import gateway_settings, gross, router_settings, running_gateway, running_router
from xrouter_router.bootstrap import RouterApp
from xrouter_router.domain import fx

TODAY = fx.moscow_day(time.time())


@pytest.fixture
def bank() -> Iterator[FakeCbr]:
    fake = FakeCbr(TODAY - timedelta(days=1)).start()
    yield fake
    fake.stop()


@contextlib.asynccontextmanager
async def running(path: Path, bank: FakeCbr) -> AsyncIterator[
        tuple[RouterApp, str, httpx.AsyncClient]]:
    """Router (its feed's first fetch over) and gateway; the same data directory every time."""
    settings = router_settings(path, fx_cbr_url=bank.url)
    async with running_router(settings) as router, \
            running_gateway(gateway_settings(f"127.0.0.1:{router.server.port}")) as url, \
            httpx.AsyncClient(timeout=15.0) as http:
        assert router.fx is not None
        await router.fx.ready.wait()
        yield router, url, http


async def _generation(http: httpx.AsyncClient, url: str,
                      key: str) -> tuple[str, str, str, Decimal]:
    """A generation of fx/usd: its recorded currency, rate, the rate's date and original cost
    (checked against its cost)."""
    resp = await _chat(http, url, key, "fx/usd")
    assert resp.status_code == 200, resp.text
    stats = await http.get(f"{url}/v1/generation", params={"id": resp.json()["id"]},
                           headers={"Authorization": f"Bearer {key}"})
    data = stats.json()["data"]
    usage = resp.json()["usage"]
    original = usd_cost(usage["prompt_tokens"], usage["completion_tokens"])
    assert (Decimal(data["cost_original"]), Decimal(str(data["total_cost"]))) == (
        rub(original), gross(rub(original * Decimal(data["fx_rate"]))))
    return data["price_currency"], data["fx_rate"], data["fx_date"], rub(original)


async def test_each_generation_records_the_rate_in_force_when_it_ran(
        catalog: Path, bank: FakeCbr) -> None:  # noqa: F811
    async with running(catalog, bank) as (router, url, http):
        assert router.fx is not None
        key = await _key(http, url, ACCOUNT, "100")
        first = await _generation(http, url, key)
        # Today's document, with a new rate: in force from today (Moscow).
        bank.date, bank.valutes = TODAY, with_rate("USD", "93.1000")
        assert await router.fx.refresh() is True
        second = await _generation(http, url, key)
        # The Bank fails: the last rate stays.
        bank.scenario = "malformed"
        assert await router.fx.refresh() is False
        third = await _generation(http, url, key)
    yesterday, today = (TODAY - timedelta(days=1)).isoformat(), TODAY.isoformat()
    assert [g[:3] for g in (first, second, third)] == [
        ("USD", "92.5", yesterday), ("USD", "93.1", today), ("USD", "93.1", today)]
    models = None
    async with running(catalog, bank) as (_, url, http):
        listed = await http.get(f"{url}/v1/models", headers=AUTH)
        models = {m["id"]: m for m in listed.json()["data"]}
        # The Bank is still down: the restarted router prices with the stored rate.
        again = await _generation(http, url, key)
    assert again[:3] == ("USD", "93.1", today)
    assert models["fx/usd"]["original_pricing"]["fx_rate"] == "93.1"
    assert bank.served == 4  # two good fetches, the malformed one, the restart's failed one
