"""The Central Bank's daily document parsed (cbr.parse): windows-1251, decimal commas, rates per
Nominal units (VunitRate preferred), the document's date as the effective date, and every way a
body can fail to be the document; and the rates' metrics."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from prometheus_client import CollectorRegistry

from tests.fakes.cbr_upstream import VALUTES, Valute, document
from tests.unit.builders import catalog, deployment, model
from xrouter_router.cbr import CbrFeed, CbrFormatError, FxCollector, parse
from xrouter_router.domain import fx

DAY = date(2026, 12, 5)
EXPECTED = {"USD": Decimal("92.5"), "EUR": Decimal("100.1234"), "CNY": Decimal("12.7031"),
            "SEK": Decimal("8.52417"), "JPY": Decimal("0.616548"), "KZT": Decimal("0.178915"),
            "VND": Decimal("0.00351239")}


@pytest.mark.parametrize("unit_rates", [True, False], ids=["VunitRate", "Value/Nominal"])
def test_a_realistic_document_gives_roubles_per_unit_from_its_date(unit_rates: bool) -> None:
    rates = parse(document(DAY, unit_rates=unit_rates))
    assert {r.currency: r.value for r in rates} == EXPECTED
    assert {(r.effective, r.source) for r in rates} == {(DAY, fx.CBR)}


def test_vunitrate_is_preferred_to_value_over_nominal() -> None:
    body = document(DAY, VALUTES[:1]).replace(b"<VunitRate>92,5000", b"<VunitRate>92,4999")
    assert [r.value for r in parse(body)] == [Decimal("92.4999")]


def _bad_value(text: str) -> bytes:
    return document(DAY, (Valute("R01235", "840", "USD", 1, "Доллар США", "92.5"),)) \
        .replace(b"<Value>92,5000</Value><VunitRate>92,5000</VunitRate>",
                 f"<Value>{text}</Value>".encode())


@pytest.mark.parametrize(("body", "message"), [
    (document(DAY)[:400], "not XML (ParseError)"),
    (b"<html><body>502</body></html>", "the root element is not ValCurs"),
    (document(DAY).replace(b'Date="05.12.2026"', b'Date="2026-12-05"'),
     "ValCurs has no Date dd.mm.yyyy"),
    (document(DAY, ()), "no Valute"),
    (document(DAY, VALUTES[:1]).replace(b"USD", b"$$$"), "a Valute without a valid CharCode"),
    (_bad_value("n/a"), "USD Value is not a number"),
    (_bad_value("0,0000"), "USD Value is not a positive number"),
    (_bad_value("92,5").replace(b"<Nominal>1<", b"<Nominal>0<"),
     "USD Nominal is not a positive number"),
    (b"<?xml version='1.0' encoding='x-unknown'?><ValCurs/>", "not XML (LookupError)"),
])
def test_what_is_not_the_document_is_a_format_error(body: bytes, message: str) -> None:
    with pytest.raises(CbrFormatError) as info:
        parse(body)
    assert str(info.value) == message


def test_the_metrics_show_the_rates_in_force_of_the_catalogs_currencies() -> None:
    registry = CollectorRegistry()
    prices = fx.FxPrices(catalog(model("m", deployment("m", "p"))), fx.RateBook.of([
        fx.Rate("USD", Decimal("92.5")), fx.Rate("JPY", Decimal("0.616548"), DAY, fx.CBR),
        fx.Rate("EUR", Decimal("100"), DAY, fx.CBR)]))
    noon = fx.moscow_midnight(DAY) + 12 * 3600
    registry.register(FxCollector(prices, {"USD", "JPY", "CNY"}, wall=lambda: noon))
    value = registry.get_sample_value
    assert (value("xrouter_fx_rate", {"currency": "USD"}),
            value("xrouter_fx_rate", {"currency": "JPY"}),
            value("xrouter_fx_rate", {"currency": "CNY"}),
            value("xrouter_fx_rate", {"currency": "EUR"})) == (92.5, 0.616548, None, None)
    assert value("xrouter_fx_rate_effective_timestamp_seconds", {"currency": "JPY"}) == (
        fx.moscow_midnight(DAY))
    assert value("xrouter_fx_rate_effective_timestamp_seconds", {"currency": "USD"}) == 0.0
    assert value("xrouter_fx_last_success_timestamp_seconds") is None  # no feed


async def test_the_feeds_metrics_count_its_failures_and_time_its_last_success() -> None:
    registry = CollectorRegistry()
    prices = fx.FxPrices(catalog(model("m", deployment("m", "p"))))
    bodies = [document(DAY), b"<html/>"]

    async def fetch() -> bytes:
        return bodies.pop(0)

    noon = fx.moscow_midnight(DAY) + 12 * 3600
    feed = CbrFeed(prices, fetch, wanted={"USD"}, wall=lambda: noon)
    registry.register(FxCollector(prices, {"USD"}, feed, wall=lambda: noon))
    assert (await feed.refresh(), await feed.refresh()) == (True, False)
    assert registry.get_sample_value("xrouter_fx_last_success_timestamp_seconds") == noon
    assert registry.get_sample_value("xrouter_fx_fetch_failures_total") == 1.0
    assert registry.get_sample_value("xrouter_fx_rate", {"currency": "USD"}) == 92.5
