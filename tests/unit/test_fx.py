"""Currencies (domain/fx.py): configured rates, which rate is in force on a day, the catalog
priced in RUB (exactly), the exclusion of a deployment without a rate, the cost and its
conversion, and the rounding rule's properties."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.builders import catalog, deployment, model, request
from xrouter_router.domain import fx
from xrouter_router.domain.accounting import COST_QUANTUM
from xrouter_router.domain.billing import worst_price
from xrouter_router.domain.catalog import Deployment, Price
from xrouter_router.domain.errors import ErrorKind, NoProvider
from xrouter_router.domain.routing import embedding_plan, plan
from xrouter_router.domain.stats import BreakerPolicy
from xrouter_router.domain.types import Conversion, TokenCounts

D = Decimal
FRI, SAT, SUN, MON, TUE = (date(2026, 12, d) for d in (4, 5, 6, 7, 8))


def _usd(model_id: str, provider: str, *, prompt: str = "0", completion: str = "0") -> Deployment:
    return replace(deployment(model_id, provider, prompt=prompt, completion=completion),
                   currency="USD")


def _cbr(code: str, value: str, day: date) -> fx.Rate:
    return fx.Rate(code, D(value), day, fx.CBR)


# ---- configuration and validation ----------------------------------------------------------

def test_configured_rates_parse_with_codes_upper_cased() -> None:
    assert fx.configured(" usd=92.5, EUR = 100.1 ,") == (
        fx.Rate("USD", D("92.5")), fx.Rate("EUR", D("100.1")))
    assert fx.configured("") == ()


@pytest.mark.parametrize(("text", "message"), [
    ("USD", "'USD' is not CODE=RATE"),
    ("USD=ninety", "USD: 'ninety' is not a decimal number"),
    ("USD=0", "USD: the rate must be a positive number of RUB (not for RUB)"),
    ("USD=-1", "USD: the rate must be a positive number of RUB (not for RUB)"),
    ("RUB=1", "RUB: the rate must be a positive number of RUB (not for RUB)"),
    ("US=1", "must be an ISO 4217 currency code such as \"USD\", got 'US'"),
    ("ДОЛ=1", "must be an ISO 4217 currency code such as \"USD\", got 'ДОЛ'"),
])
def test_a_bad_configured_rate_names_itself(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        fx.configured(text)
    assert str(info.value) == message


# ---- the rate in force -----------------------------------------------------------------------

def test_a_dated_rate_is_in_force_from_its_date_until_a_later_one_and_over_weekends() -> None:
    # Friday's document (dated Saturday) covers Saturday, Sunday and Monday; Tuesday's follows.
    book = fx.RateBook.of([_cbr("USD", "90", FRI), _cbr("USD", "91", SAT),
                           _cbr("USD", "92", TUE)])
    assert [book.in_force("USD", d).value for d in (FRI, SAT, SUN, MON, TUE)] == [  # type: ignore[union-attr]
        D(90), D(91), D(91), D(91), D(92)]
    assert book.in_force("USD", date(2026, 12, 3)) is None
    assert book.in_force("EUR", SAT) is None
    assert book.next_change(SAT) == TUE
    assert book.next_change(TUE) is None


def test_a_configured_rate_wins_over_the_central_banks() -> None:
    book = fx.RateBook.of([_cbr("USD", "91", SAT), fx.Rate("USD", D("95"))])
    assert book.in_force("USD", SUN) == fx.Rate("USD", D("95"))
    assert book.rates(SUN) == {"USD": fx.Rate("USD", D("95"))}


def test_a_refetched_date_replaces_its_rate_and_only_the_latest_few_are_kept() -> None:
    book = fx.RateBook.of([_cbr("USD", "90", FRI)]).merged([_cbr("USD", "90.5", FRI)])
    assert book.dated["USD"] == (_cbr("USD", "90.5", FRI),)
    days = [date(2026, 11, d) for d in range(1, 11)]
    many = fx.RateBook.of(_cbr("USD", str(i + 1), d) for i, d in enumerate(days))
    assert [r.effective for r in many.dated["USD"]] == days[-4:]


# ---- the catalog priced in RUB -----------------------------------------------------------------

CAT = catalog(
    model("m", _usd("m", "oai", prompt="2.5", completion="10"),
          deployment("m", "giga", prompt="500", completion="1500")),
    model("only-usd", _usd("only-usd", "oai", prompt="1", completion="2")),
    model("rub", deployment("rub", "giga", prompt="1", completion="1")),
)


def test_prices_in_usd_are_converted_exactly_and_keep_their_original() -> None:
    priced = fx.priced_catalog(CAT, fx.RateBook.of([fx.Rate("USD", D("92.3456"))]), SUN)
    usd = priced.resolve("m").deployments[0]
    assert (usd.price, usd.currency, usd.fx_rate) == (
        Price(D("230.8640"), D("923.4560")), "USD", D("92.3456"))
    assert (usd.original_price, usd.fx_date) == (Price(D("2.5"), D(10)), None)
    assert not usd.unpriced
    assert priced.resolve("m").deployments[1] is CAT.resolve("m").deployments[1]
    assert fx.priced_catalog(catalog(model("rub", deployment("rub", "g"))), fx.EMPTY, SUN) \
        .resolve("rub").deployments[0].fx_rate is None


def test_without_a_rate_a_usd_deployment_is_unpriced_and_shows_its_own_price() -> None:
    priced = fx.priced_catalog(CAT, fx.EMPTY, SUN)
    usd = priced.resolve("only-usd").deployments[0]
    assert (usd.unpriced, usd.price, usd.fx_rate) == (True, Price(D(1), D(2)), None)
    assert priced.resolve("only-usd").unpriced
    assert not priced.resolve("m").unpriced
    # The model's shown price is its priced deployment's, in RUB.
    assert priced.resolve("m").price == Price(D(500), D(1500))


def test_the_snapshot_changes_at_moscow_midnight_of_a_rate_published_ahead() -> None:
    prices = fx.FxPrices(CAT, fx.RateBook.of([_cbr("USD", "90", MON), _cbr("USD", "92", TUE)]))
    tuesday = fx.moscow_midnight(TUE)
    before = prices.catalog(tuesday - 1).resolve("only-usd").deployments[0]
    after = prices.catalog(tuesday).resolve("only-usd").deployments[0]
    assert (before.fx_rate, before.fx_date, after.fx_rate, after.fx_date) == (D(90), MON, D(92), TUE)
    assert fx.usage(TokenCounts(prompt=10**6), after).conversion == Conversion("USD", D(92), D(1), TUE)
    assert prices.catalog(tuesday + 5) is prices.catalog(tuesday + 6)  # no rebuild per request
    assert fx.moscow_midnight(TUE) == 1796677200.0  # 2026-12-07T21:00:00Z


def test_an_update_swaps_the_rates_for_the_next_request() -> None:
    prices = fx.FxPrices(CAT)
    now = fx.moscow_midnight(SUN) + 3600
    assert prices.catalog(now).resolve("only-usd").deployments[0].unpriced
    prices.update(prices.book.merged([_cbr("USD", "91", SAT)]))
    assert prices.catalog(now).resolve("only-usd").deployments[0].fx_rate == D(91)


# ---- routing -----------------------------------------------------------------------------------

NO_RATE = "no exchange rate for USD: its price cannot be converted to RUB"


def test_a_deployment_without_a_rate_is_excluded_and_the_next_one_planned() -> None:
    priced = fx.priced_catalog(CAT, fx.EMPTY, SUN)
    route = plan(priced, request("m"))
    assert [c.deployment.provider for c in route.candidates] == ["giga"]
    explained = plan(priced, request("m"), explain=True, commit=False)
    assert {s.deployment.provider: s.rejected_by for s in explained.scored} == {
        "oai": NO_RATE, "giga": ""}


def test_a_plan_left_empty_by_missing_rates_is_a_503_naming_them() -> None:
    priced = fx.priced_catalog(CAT, fx.EMPTY, SUN)
    with pytest.raises(NoProvider) as info:
        plan(priced, request("only-usd"))
    assert info.value.kind is ErrorKind.NO_PROVIDER
    assert info.value.metadata == {"reasons": {"only-usd@oai": NO_RATE}}


def test_embeddings_without_a_rate_are_a_503_naming_it() -> None:
    emb = catalog(model("e", replace(_usd("e", "oai"), capabilities=frozenset({"embeddings"}))))
    with pytest.raises(NoProvider) as info:
        embedding_plan(fx.priced_catalog(emb, fx.EMPTY, SUN), "e", {}, now=0.0,
                       policy=BreakerPolicy())
    assert info.value.metadata == {"reasons": {"e@oai": NO_RATE}}


def test_the_reservation_prices_a_usd_deployment_in_rub() -> None:
    priced = fx.priced_catalog(CAT, fx.RateBook.of([fx.Rate("USD", D(100))]), SUN)
    assert worst_price(priced.resolve("m").deployments) == Price(D(500), D(1500))
    assert worst_price(priced.resolve("only-usd").deployments) == Price(D(100), D(200))


# ---- the cost --------------------------------------------------------------------------------

def test_a_usd_cost_is_the_exact_usd_cost_times_the_rate_rounded_once() -> None:
    d = fx.priced_deployment(_usd("m", "oai", prompt="0.15", completion="0.6"),
                             fx.RateBook.of([fx.Rate("USD", D("92.5001"))]), SUN)
    usage = fx.usage(TokenCounts(prompt=1234, completion=567), d)
    # USD: (1234 * 0.15 + 567 * 0.6) / 1e6 = 0.0005253; times 92.5001 = 0.04859030253.
    assert usage.cost == D("0.04859030")
    assert usage.conversion == Conversion("USD", D("92.5001"), D("0.00052530"))
    rub = fx.usage(TokenCounts(prompt=1), deployment("r", "g", prompt="1"))
    assert rub.conversion is None


MONEY = st.decimals(min_value=0, max_value=10**6, places=8, allow_nan=False)
RATES = st.decimals(min_value=D("0.0001"), max_value=10**4, places=4, allow_nan=False)


@given(MONEY, MONEY, RATES)
def test_conversion_is_monotonic_in_the_amount(a: Decimal, b: Decimal, rate: Decimal) -> None:
    low, high = sorted((a, b))
    assert fx.to_rub(low, rate) <= fx.to_rub(high, rate)


@given(MONEY, RATES, RATES)
def test_conversion_is_monotonic_in_the_rate(amount: Decimal, r1: Decimal, r2: Decimal) -> None:
    low, high = sorted((r1, r2))
    assert fx.to_rub(amount, low) <= fx.to_rub(amount, high)


@given(RATES)
def test_zero_stays_zero(rate: Decimal) -> None:
    assert fx.to_rub(D(0), rate) == 0
    assert fx.usage(TokenCounts(), fx.priced_deployment(
        _usd("m", "o", prompt="3", completion="4"), fx.RateBook.of([fx.Rate("USD", rate)]),
        SUN)).cost == 0


@given(st.integers(0, 10**7), st.integers(0, 10**6),
       st.decimals(min_value=0, max_value=1000, places=6, allow_nan=False),
       st.decimals(min_value=0, max_value=1000, places=6, allow_nan=False), RATES)
def test_the_rub_cost_is_the_exact_foreign_cost_converted_once(
        prompt: int, completion: int, p: Decimal, c: Decimal, rate: Decimal) -> None:
    d = fx.priced_deployment(replace(_usd("m", "o"), price=Price(p, c)),
                             fx.RateBook.of([fx.Rate("USD", rate)]), SUN)
    usage = fx.usage(TokenCounts(prompt=prompt, completion=completion), d)
    exact = (prompt * p + completion * c) / D(10**6)
    assert usage.cost == fx.to_rub(exact, rate)
    assert usage.cost == usage.cost.quantize(COST_QUANTUM)
    # The recorded foreign cost, converted on its own, is off by at most half a quantum per
    # unit of the rate, plus the final rounding.
    assert abs(fx.to_rub(usage.conversion.cost, rate) - usage.cost) <= (  # type: ignore[union-attr]
        rate * COST_QUANTUM / 2 + COST_QUANTUM)


@given(MONEY)
def test_a_rate_of_one_changes_nothing(amount: Decimal) -> None:
    assert fx.to_rub(amount, D(1)) == amount
    assert fx.from_rub(amount, D(1)) == amount
