"""Exchange rates from the Central Bank: the RateStore contract (SQLite and PostgreSQL), and the
feed against a local fake of the Bank's daily XML served over HTTP (good, 500, malformed, a
changed rate), falling back to the last known rates, keeping them across a restart."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from tests.fakes.cbr_upstream import FakeCbr, with_rate
from tests.infra.pg_fixtures import postgres_ha  # noqa: F401 - the session fixture
from tests.integration.store_factories import (
    Stores,
    stores_fixture,  # noqa: F401 - the fixture
)
from tests.unit.builders import catalog, deployment, model
from xrouter_router.cbr import CbrFeed, http_fetch
from xrouter_router.domain import fx
from xrouter_router.providers.http1 import HttpClient
from xrouter_router.storage.sql.sqlite_db import SqliteDatabase
from xrouter_router.storage.sql.sqlite_fx import SqliteRateStore

SAT, SUN, MON, TUE = (date(2026, 12, d) for d in (5, 6, 7, 8))
SUNDAY_NOON = fx.moscow_midnight(SUN) + 12 * 3600
CATALOG = catalog(model("m", deployment("m", "oai", prompt="1", completion="2")))
USD_CATALOG = catalog(model("m", replace(deployment("m", "oai", prompt="1", completion="2"),
                                         currency="USD")))


def _cbr(code: str, value: str, day: date) -> fx.Rate:
    return fx.Rate(code, Decimal(value), day, fx.CBR)


class TestRateStore:
    async def test_rates_are_stored_and_a_refetched_date_replaced(self, stores: Stores) -> None:
        assert await stores.rates.load() == []
        await stores.rates.save([_cbr("USD", "92.5", SAT), _cbr("JPY", "0.616548", SAT)], 1.0)
        await stores.rates.save([_cbr("USD", "92.6", SAT), _cbr("USD", "93", TUE)], 2.0)
        assert await stores.rates.load() == [
            _cbr("JPY", "0.616548", SAT), _cbr("USD", "92.6", SAT), _cbr("USD", "93", TUE)]

    async def test_only_the_latest_four_of_a_currency_are_loaded(self, stores: Stores) -> None:
        days = [date(2026, 11, d) for d in range(1, 8)]
        await stores.rates.save([_cbr("USD", str(90 + i), d) for i, d in enumerate(days)], 1.0)
        assert [r.effective for r in await stores.rates.load()] == days[-4:]


@pytest.fixture
def bank() -> Iterator[FakeCbr]:
    fake = FakeCbr(SAT).start()
    yield fake
    fake.stop()


@pytest.fixture
async def session() -> AsyncIterator[HttpClient]:
    async with HttpClient(connect_timeout=5.0, pool_size=4) as opened:
        yield opened


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[SqliteDatabase]:
    db = SqliteDatabase(tmp_path / "xrouter.sqlite3")
    await db.open()
    yield db
    await db.close()


def _feed(prices: fx.FxPrices, bank: FakeCbr, session: HttpClient,
          db: SqliteDatabase) -> CbrFeed:
    return CbrFeed(prices, http_fetch(session, bank.url), wanted={"USD", "JPY"},
                   store=SqliteRateStore(db), wall=lambda: SUNDAY_NOON)


def _usd_rate(prices: fx.FxPrices, at: float = SUNDAY_NOON) -> Decimal | None:
    return prices.catalog(at).resolve("m").deployments[0].fx_rate


async def test_a_good_fetch_prices_usd_deployments_and_stores_the_wanted_rates(
        bank: FakeCbr, session: HttpClient, database: SqliteDatabase) -> None:
    prices = fx.FxPrices(USD_CATALOG)
    feed = _feed(prices, bank, session, database)
    assert _usd_rate(prices) is None
    assert await feed.refresh() is True
    assert _usd_rate(prices) == Decimal("92.5")
    assert (feed.last_success, feed.failures, bank.served) == (SUNDAY_NOON, 0, 1)
    assert await SqliteRateStore(database).load() == [
        _cbr("JPY", "0.616548", SAT), _cbr("USD", "92.5", SAT)]


@pytest.mark.parametrize("scenario", ["500", "malformed", "garbage"])
async def test_a_failed_fetch_keeps_the_last_known_rate_and_logs_no_body(
        scenario: str, bank: FakeCbr, session: HttpClient, database: SqliteDatabase,
        caplog: pytest.LogCaptureFixture) -> None:
    prices = fx.FxPrices(USD_CATALOG)
    feed = _feed(prices, bank, session, database)
    assert await feed.refresh() is True
    bank.scenario = scenario
    bank.valutes = with_rate("USD", "99.0000")
    with caplog.at_level(logging.WARNING, logger="xrouter.router.fx"):
        assert await feed.refresh() is False
    assert _usd_rate(prices) == Decimal("92.5")
    assert (feed.last_success, feed.failures) == (SUNDAY_NOON, 1)
    [warning] = [r.getMessage() for r in caplog.records]
    assert warning.startswith("the Central Bank's rates could not be fetched (CbrFormatError")
    assert "ValCurs" not in warning and "Сервис" not in warning and "99" not in warning


async def test_a_bank_that_does_not_answer_leaves_the_last_known_rate(
        session: HttpClient, database: SqliteDatabase,
        caplog: pytest.LogCaptureFixture) -> None:
    gone = FakeCbr(SAT).start()
    gone.stop()  # nothing listens at its port any more: the connection is refused
    prices = fx.FxPrices(USD_CATALOG, fx.RateBook.of([_cbr("USD", "92.5", SAT)]))
    feed = _feed(prices, gone, session, database)
    with caplog.at_level(logging.WARNING, logger="xrouter.router.fx"):
        assert await feed.refresh() is False
    assert (_usd_rate(prices), feed.failures, feed.last_success) == (Decimal("92.5"), 1, None)
    assert caplog.records[0].getMessage().startswith(
        "the Central Bank's rates could not be fetched (ConnectFailed: ConnectionRefusedError")


async def test_a_changed_rate_takes_effect_from_its_documents_date(
        bank: FakeCbr, session: HttpClient, database: SqliteDatabase) -> None:
    prices = fx.FxPrices(USD_CATALOG)
    feed = _feed(prices, bank, session, database)
    await feed.refresh()
    # Monday's document (dated Tuesday) arrives on Sunday's clock: Monday keeps Saturday's.
    bank.date, bank.valutes = TUE, with_rate("USD", "93.1000")
    assert await feed.refresh() is True
    assert [_usd_rate(prices, fx.moscow_midnight(d) + 60) for d in (SUN, MON, TUE)] == [
        Decimal("92.5"), Decimal("92.5"), Decimal("93.1")]


async def test_a_restarted_router_prices_with_the_stored_rates_before_any_fetch(
        bank: FakeCbr, session: HttpClient, tmp_path: Path) -> None:
    first = SqliteDatabase(tmp_path / "restart.sqlite3")
    await first.open()
    await _feed(fx.FxPrices(USD_CATALOG), bank, session, first).refresh()
    await first.close()
    bank.scenario = "500"
    again = SqliteDatabase(tmp_path / "restart.sqlite3")
    await again.open()
    try:
        prices = fx.FxPrices(USD_CATALOG)
        feed = _feed(prices, bank, session, again)
        await feed.restore()
        assert (_usd_rate(prices), bank.served) == (Decimal("92.5"), 1)
        assert await feed.refresh() is False
        assert _usd_rate(prices) == Decimal("92.5")
    finally:
        await again.close()


def test_a_rub_catalog_needs_no_rates() -> None:
    assert fx.FxPrices(CATALOG).catalog(SUNDAY_NOON) is CATALOG
