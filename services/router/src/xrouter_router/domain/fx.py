"""Currencies: the exchange rates to RUB (configured or the Central Bank of Russia's), which one
is in force on a day, and the catalog as a request routes over it, every price in RUB.

Rules (docs/compliance.md, "Currencies"):
- A rate is roubles per one unit of a currency. A configured rate (XROUTER_FX_RATES) is always
  in force and wins over the Central Bank's for its currency. A Central Bank rate is in force
  from 00:00 Moscow time (UTC+3) of its document's date (`ValCurs Date`: the Bank publishes on a
  working day the rates dated the next calendar day) until a later-dated rate replaces it, so a
  weekend or a holiday keeps the last one.
- A deployment priced in a foreign currency routes with its price converted exactly (the price
  times the rate, no rounding); a generation's cost is priced from it like any other, so the
  RUB cost is the exact foreign cost times the rate rounded once, half to even, to
  accounting.COST_QUANTUM. The foreign cost is kept too (rounded the same way on its own).
- A deployment whose currency has no rate in force is unpriced: routing excludes it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from xrouter_router.domain import accounting
from xrouter_router.domain.catalog import Catalog, Deployment, Price
from xrouter_router.domain.types import Conversion, TokenCounts, Usage

RUB = "RUB"
CONFIG = "config"
CBR = "cbr"
# The Central Bank's dates are Moscow dates; Moscow keeps UTC+3 all year (since 2014).
MOSCOW = timezone(timedelta(hours=3))
# Rates kept per currency: the one in force, the ones published ahead of their date, a few past.
_HISTORY = 4
_CODE = re.compile(r"[A-Z]{3}")


def currency(value: object) -> str:
    """An ISO 4217 code in upper case; ValueError unless it is three ASCII letters."""
    text = value.upper() if isinstance(value, str) else ""
    if not (text.isascii() and _CODE.fullmatch(text)):
        raise ValueError(f"must be an ISO 4217 currency code such as \"USD\", got {value!r}")
    return text


@dataclass(frozen=True, slots=True)
class Rate:
    """RUB per one unit of `currency`, in force from `effective` (a Moscow date; None: always,
    a configured rate)."""

    currency: str
    value: Decimal
    effective: date | None = None
    source: str = CONFIG


def configured(text: str) -> tuple[Rate, ...]:
    """XROUTER_FX_RATES ("USD=92.5,EUR=100.1"); ValueError naming the bad part."""
    rates: dict[str, Rate] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        code, sep, number = part.partition("=")
        if not sep:
            raise ValueError(f"{part!r} is not CODE=RATE")
        code = currency(code.strip())
        try:
            value = Decimal(number.strip())
        except InvalidOperation:
            raise ValueError(f"{code}: {number.strip()!r} is not a decimal number") from None
        if not value.is_finite() or value <= 0 or code == RUB:
            raise ValueError(f"{code}: the rate must be a positive number of RUB (not for RUB)")
        rates[code] = Rate(code, value)
    return tuple(rates.values())


@dataclass(frozen=True, slots=True)
class RateBook:
    """The known rates, immutable: per currency, dated rates oldest first, and the configured
    ones (which win)."""

    dated: Mapping[str, tuple[Rate, ...]]
    fixed: Mapping[str, Rate]

    @classmethod
    def of(cls, rates: Iterable[Rate]) -> RateBook:
        return EMPTY.merged(rates)

    def merged(self, rates: Iterable[Rate]) -> RateBook:
        """This book with `rates` added (a dated rate replaces one of the same currency and
        date); only the latest _HISTORY dated rates of each currency are kept."""
        dated = {code: {r.effective: r for r in kept} for code, kept in self.dated.items()}
        fixed = dict(self.fixed)
        for r in rates:
            if r.effective is None:
                fixed[r.currency] = r
            else:
                dated.setdefault(r.currency, {})[r.effective] = r
        return RateBook({code: tuple(sorted(by_day.values(), key=_effective))[-_HISTORY:]
                         for code, by_day in dated.items()}, fixed)

    def in_force(self, code: str, day: date) -> Rate | None:
        """The rate of `code` on the Moscow date `day` (None: none known)."""
        if code in self.fixed:
            return self.fixed[code]
        best = None
        for r in self.dated.get(code, ()):
            if _effective(r) <= day:
                best = r
        return best

    def next_change(self, day: date) -> date | None:
        """The first date after `day` on which a rate takes effect (None: none is known)."""
        later = [_effective(r) for rates in self.dated.values() for r in rates
                 if _effective(r) > day]
        return min(later, default=None)

    def rates(self, day: date) -> dict[str, Rate]:
        """Every currency's rate in force on `day`."""
        codes = {*self.dated, *self.fixed}
        return {code: rate for code in sorted(codes)
                if (rate := self.in_force(code, day)) is not None}


def _effective(rate: Rate) -> date:
    return rate.effective or date.min


EMPTY = RateBook({}, {})


def moscow_day(at: float) -> date:
    return datetime.fromtimestamp(at, MOSCOW).date()


def moscow_midnight(day: date) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=MOSCOW).timestamp()


def convert_price(price: Price, rate: Decimal) -> Price:
    """Every bucket's price times `rate`, exactly (no rounding: costs are rounded once)."""
    def times(value: Decimal | None) -> Decimal | None:
        return None if value is None else value * rate

    return Price(price.prompt * rate, price.completion * rate, cache_read=times(price.cache_read),
                 cache_write=times(price.cache_write), reasoning=times(price.reasoning))


def to_rub(amount: Decimal, rate: Decimal) -> Decimal:
    """An amount of a currency in RUB: rounded once, half to even, to COST_QUANTUM."""
    return (amount * rate).quantize(accounting.COST_QUANTUM, rounding=ROUND_HALF_EVEN)


def from_rub(amount: Decimal, rate: Decimal) -> Decimal:
    """RUB back in the currency (a cost cut to its reservation), rounded as to_rub rounds."""
    return (amount / rate).quantize(accounting.COST_QUANTUM, rounding=ROUND_HALF_EVEN)


def usage(tokens: TokenCounts, deployment: Deployment) -> Usage:
    """The tokens priced in RUB at the deployment's (converted) price, with the cost in its
    own currency and the rate when it is not RUB."""
    priced = accounting.usage(tokens, deployment.price)
    if deployment.fx_rate is None or deployment.original_price is None:
        return priced
    original = accounting.price(tokens, deployment.original_price)
    return replace(priced, conversion=Conversion(deployment.currency, deployment.fx_rate,
                                                 original, deployment.fx_date))


def priced_deployment(d: Deployment, book: RateBook, day: date) -> Deployment:
    """The deployment with its price in RUB at the rate in force on `day` (unchanged when it is
    priced in RUB; unpriced, its price in its own currency, when no rate is known)."""
    if d.currency == RUB:
        return d
    original = d.original_price or d.price
    rate = book.in_force(d.currency, day)
    if rate is None:
        return replace(d, price=original, fx_rate=None, original_price=original, fx_date=None)
    return replace(d, price=convert_price(original, rate.value), fx_rate=rate.value,
                   original_price=original, fx_date=rate.effective)


def priced_catalog(catalog: Catalog, book: RateBook, day: date) -> Catalog:
    """The catalog with every deployment priced in RUB on `day` (the same object when it has no
    foreign prices)."""
    if all(d.currency == RUB for m in catalog.models for d in m.deployments):
        return catalog
    return Catalog(replace(m, deployments=tuple(priced_deployment(d, book, day)
                                                for d in m.deployments))
                   for m in catalog.models)


@dataclass(frozen=True, slots=True)
class _Snapshot:
    catalog: Catalog
    valid_from: float
    valid_until: float


class FxPrices:
    """The catalog priced in RUB at the rates in force now: an immutable snapshot, rebuilt when
    the rates change (update) or when the next dated rate takes effect, never per request."""

    def __init__(self, catalog: Catalog, book: RateBook = EMPTY) -> None:
        self._base = catalog
        self._book = book
        self._snapshot = _Snapshot(catalog, math.inf, -math.inf)  # built on first use

    @property
    def book(self) -> RateBook:
        return self._book

    def catalog(self, now: float) -> Catalog:
        """The catalog as priced at `now` (cheap: a comparison, except when a rate changed)."""
        snap = self._snapshot
        if not snap.valid_from <= now < snap.valid_until:
            snap = self._snapshot = self._build(now)
        return snap.catalog

    def update(self, book: RateBook) -> None:
        """Swap in new rates: the next request prices at them."""
        self._book = book
        self._snapshot = _Snapshot(self._base, math.inf, -math.inf)

    def _build(self, now: float) -> _Snapshot:
        day = moscow_day(now)
        change = self._book.next_change(day)
        until = math.inf if change is None else moscow_midnight(change)
        # Without dated rates the prices never change: one snapshot for any time.
        since = moscow_midnight(day) if self._book.dated else -math.inf
        return _Snapshot(priced_catalog(self._base, self._book, day), since, until)


def missing_rate(d: Deployment) -> str:
    """Why routing excludes the deployment for its price ("" when it has one in RUB)."""
    if not d.unpriced:
        return ""
    return f"no exchange rate for {d.currency}: its price cannot be converted to RUB"
