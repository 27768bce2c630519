"""The Central Bank of Russia's daily rates: parsing its XML (windows-1251, decimal commas,
rates per `Nominal` units) and the background task that fetches it, keeps the last good rates
(in the database too, for a restart) and swaps them into the priced catalog (domain/fx.py)."""

from __future__ import annotations

import asyncio
import logging
import time
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable, Iterable
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from urllib.parse import urljoin

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from xrouter_router.domain import fx
from xrouter_router.domain.ports import RateStore
from xrouter_router.providers.http1 import HttpClient

log = logging.getLogger("xrouter.router.fx")
# The real document is about 10 KB; anything far larger is not it.
MAX_BODY = 1 << 20
# A failed fetch is tried again this often (or at the refresh interval, if shorter).
RETRY = 300.0


class CbrFormatError(ValueError):
    """The body is not the Central Bank's daily rates document."""


def _number(text: str | None, what: str) -> Decimal:
    try:
        value = Decimal((text or "").strip().replace(",", "."))
    except InvalidOperation:
        raise CbrFormatError(f"{what} is not a number") from None
    if not value.is_finite() or value <= 0:
        raise CbrFormatError(f"{what} is not a positive number")
    return value


def _valute(node: ET.Element, day: date) -> fx.Rate:
    try:
        code = fx.currency(node.findtext("CharCode"))
    except ValueError:
        raise CbrFormatError("a Valute without a valid CharCode") from None
    unit = node.findtext("VunitRate")
    if unit is not None:
        rate = _number(unit, f"{code} VunitRate")
    else:
        nominal = _number(node.findtext("Nominal"), f"{code} Nominal")
        rate = _number(node.findtext("Value"), f"{code} Value") / nominal
    return fx.Rate(code, rate, day, fx.CBR)


def parse(body: bytes) -> tuple[fx.Rate, ...]:
    """The rates of a daily document (ValCurs), each in force from the document's Date (RUB per
    one unit: VunitRate when given, else Value / Nominal); CbrFormatError otherwise."""
    try:
        # expat (2.4.1+) refuses entity expansion attacks; the body is bounded (MAX_BODY).
        root = ET.fromstring(body)
    except (ET.ParseError, LookupError, ValueError) as exc:
        raise CbrFormatError(f"not XML ({type(exc).__name__})") from None
    if root.tag != "ValCurs":
        raise CbrFormatError("the root element is not ValCurs")
    try:
        day = datetime.strptime(root.get("Date", ""), "%d.%m.%Y").date()
    except ValueError:
        raise CbrFormatError("ValCurs has no Date dd.mm.yyyy") from None
    rates = tuple(_valute(node, day) for node in root.iter("Valute"))
    if not rates:
        raise CbrFormatError("no Valute")
    return rates


_REDIRECTS = 5


def http_fetch(session: HttpClient, url: str,
               timeout: float = 30.0) -> Callable[[], Awaitable[bytes]]:
    """A fetch of `url` through the router's HTTP client, following up to five redirects: the
    body of a 200, else an error."""
    async def fetch() -> bytes:
        async with asyncio.timeout(timeout):
            where = url
            for _ in range(_REDIRECTS + 1):
                async with session.get(where) as resp:
                    location = resp.headers.get("location")
                    if resp.status in (301, 302, 303, 307, 308) and location:
                        where = urljoin(where, location)
                        continue
                    if resp.status != 200:
                        raise CbrFormatError(f"HTTP {resp.status}")
                    return await _limited(resp.readany)
            raise CbrFormatError("too many redirects")
    return fetch


async def _limited(readany: Callable[[], Awaitable[bytes]]) -> bytes:
    parts: list[bytes] = []
    size = 0
    while data := await readany():
        parts.append(data)
        size += len(data)
        if size > MAX_BODY:
            raise CbrFormatError("the body is too large")
    return b"".join(parts)


class CbrFeed:
    """Fetches the rates every `interval` seconds (RETRY after a failure), merges the good ones
    into the priced catalog's book and the store; a failed or malformed fetch keeps the last
    known rates and logs a warning (never the body)."""

    def __init__(self, prices: fx.FxPrices, fetch: Callable[[], Awaitable[bytes]], *,
                 wanted: Iterable[str], store: RateStore | None = None, interval: float = 3600.0,
                 wall: Callable[[], float] = time.time) -> None:
        self._prices = prices
        self._fetch = fetch
        self._wanted = frozenset(wanted)
        self._store = store
        self._interval = interval
        self._wall = wall
        self.last_success: float | None = None
        self.failures = 0
        # Set once run()'s first fetch is over, good or bad.
        self.ready = asyncio.Event()

    async def restore(self) -> None:
        """The last rates stored, before the first fetch (a store failure only means none)."""
        if self._store is None:
            return
        try:
            rates = await self._store.load()
        except Exception as exc:  # noqa: BLE001 - the fetch will bring rates anyway
            log.warning("could not load the stored exchange rates (%s)", type(exc).__name__)
            return
        self._prices.update(self._prices.book.merged(r for r in rates if r.currency in self._wanted))

    async def refresh(self) -> bool:
        """One fetch; True when it brought good rates."""
        try:
            rates = [r for r in parse(await self._fetch()) if r.currency in self._wanted]
        except Exception as exc:  # noqa: BLE001 - whatever failed, the loop and the rates stay
            self.failures += 1
            log.warning("the Central Bank's rates could not be fetched (%s: %s); keeping the "
                        "last known", type(exc).__name__, str(exc)[:200])
            return False
        now = self._wall()
        self._prices.update(self._prices.book.merged(rates))
        self.last_success = now
        if self._store is not None and rates:
            try:
                await self._store.save(rates, now)
            except Exception as exc:  # noqa: BLE001 - in force in memory all the same
                log.warning("could not store the exchange rates (%s)", type(exc).__name__)
        return True

    async def run(self) -> None:
        while True:
            ok = await self.refresh()
            self.ready.set()
            await asyncio.sleep(self._interval if ok else min(self._interval, RETRY))


class FxCollector(Collector):
    """xrouter_fx_rate{currency} (RUB per unit in force), xrouter_fx_rate_effective_timestamp
    {currency} (when it took effect; 0 for a configured rate), and the feed's last success
    and failures, read at scrape time."""

    def __init__(self, prices: fx.FxPrices, currencies: Iterable[str],
                 feed: CbrFeed | None = None, wall: Callable[[], float] = time.time) -> None:
        self._prices = prices
        self._currencies = sorted(set(currencies))
        self._feed = feed
        self._wall = wall

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        rates = self._prices.book.rates(fx.moscow_day(self._wall()))
        value = GaugeMetricFamily("xrouter_fx_rate", "RUB per unit of the currency in force",
                                  labels=["currency"])
        since = GaugeMetricFamily("xrouter_fx_rate_effective_timestamp_seconds",
                                  "When the rate in force took effect (0: configured)",
                                  labels=["currency"])
        for code in self._currencies:
            rate = rates.get(code)
            if rate is None:
                continue
            value.add_metric([code], float(rate.value))
            since.add_metric([code], 0.0 if rate.effective is None
                             else fx.moscow_midnight(rate.effective))
        yield value
        yield since
        if self._feed is not None:
            yield GaugeMetricFamily("xrouter_fx_last_success_timestamp_seconds",
                                    "When the Central Bank's rates were last fetched (0: never)",
                                    value=self._feed.last_success or 0.0)
            yield CounterMetricFamily("xrouter_fx_fetch_failures",
                                      "Failed fetches of the Central Bank's rates",
                                      value=float(self._feed.failures))
