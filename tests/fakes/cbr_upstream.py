"""A local stand-in for the Central Bank of Russia's daily rates, GET /scripts/XML_daily.asp, as
the Bank serves it (../shared/reference/russia/README.md): one line of XML encoded windows-1251
under `Content-Type: application/xml; charset=windows-1251`, root `ValCurs Date="dd.mm.yyyy"
name="Foreign Currency Market"`, a `Valute ID=...` per currency with NumCode, CharCode,
Nominal, Name (Russian), Value (roubles for Nominal units, decimal comma, four places) and
VunitRate (roubles per unit, decimal comma).

`scenario` switches the answer: "good" (the document of `date` and `valutes`), "500" (the
Bank's HTML error page), "malformed" (the document cut off mid-element), "garbage" (a 200 HTML
page). `served` counts the requests. It runs on its own thread and loop."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from aiohttp import web

from tests.fakes.server import FakeUpstream

PATH = "/scripts/XML_daily.asp"


@dataclass(frozen=True, slots=True)
class Valute:
    id: str
    num: str
    code: str
    nominal: int
    name: str
    value: str  # roubles for `nominal` units, with a point here; written with a comma

    @property
    def unit_rate(self) -> Decimal:
        return Decimal(self.value) / self.nominal


def _comma(value: Decimal, places: int = 4) -> str:
    """With a decimal comma and at least `places` decimals (more when the value has them)."""
    exponent = value.normalize().as_tuple().exponent
    places = max(places, -exponent if isinstance(exponent, int) else 0)
    return f"{value:.{places}f}".replace(".", ",")


# A realistic day: currencies quoted per 1, 10, 100 and 10 000 units.
VALUTES = (
    Valute("R01235", "840", "USD", 1, "Доллар США", "92.5000"),
    Valute("R01239", "978", "EUR", 1, "Евро", "100.1234"),
    Valute("R01375", "156", "CNY", 1, "Китайский юань", "12.7031"),
    Valute("R01770", "752", "SEK", 10, "Шведских крон", "85.2417"),
    Valute("R01820", "392", "JPY", 100, "Японских иен", "61.6548"),
    Valute("R01335", "398", "KZT", 100, "Казахстанских тенге", "17.8915"),
    Valute("R01150", "704", "VND", 10000, "Вьетнамских донгов", "35.1239"),
)


def document(day: date, valutes: tuple[Valute, ...] = VALUTES, *, unit_rates: bool = True) -> bytes:
    """The Bank's daily document, byte for byte as it serves one (unit_rates=False: as it did
    before it added VunitRate)."""
    parts = [f'<?xml version="1.0" encoding="windows-1251"?><ValCurs Date="{day:%d.%m.%Y}" '
             'name="Foreign Currency Market">']
    for v in valutes:
        parts.append(
            f'<Valute ID="{v.id}"><NumCode>{v.num}</NumCode><CharCode>{v.code}</CharCode>'
            f"<Nominal>{v.nominal}</Nominal><Name>{v.name}</Name>"
            f"<Value>{_comma(Decimal(v.value))}</Value>"
            + (f"<VunitRate>{_comma(v.unit_rate)}</VunitRate>" if unit_rates else "")
            + "</Valute>")
    parts.append("</ValCurs>")
    return "".join(parts).encode("windows-1251")


def with_rate(code: str, value: str, valutes: tuple[Valute, ...] = VALUTES) -> tuple[Valute, ...]:
    """The valutes with one currency's rate changed."""
    return tuple(Valute(v.id, v.num, v.code, v.nominal, v.name, value) if v.code == code else v
                 for v in valutes)


_ERROR_PAGE = ("<html><head><title>Ошибка</title></head><body>Сервис временно недоступен"
               "</body></html>").encode("windows-1251")


class FakeCbr(FakeUpstream):
    name = "fake CBR"

    def __init__(self, day: date) -> None:
        super().__init__()
        self.scenario = "good"
        self.date = day
        self.valutes: tuple[Valute, ...] = VALUTES
        self.served = 0

    @property
    def url(self) -> str:
        return f"{self.origin}{PATH}"

    def routes(self, app: web.Application) -> None:
        app.router.add_get(PATH, self._daily)

    async def _daily(self, request: web.Request) -> web.Response:
        self.served += 1
        body = document(self.date, self.valutes)
        if self.scenario == "500":
            return web.Response(status=500, body=_ERROR_PAGE,
                                content_type="text/html", charset="windows-1251")
        if self.scenario == "malformed":
            return web.Response(status=200, body=body[: len(body) // 2],
                                content_type="application/xml", charset="windows-1251")
        if self.scenario == "garbage":
            return web.Response(status=200, body=_ERROR_PAGE,
                                content_type="text/html", charset="windows-1251")
        return web.Response(status=200, body=body, content_type="application/xml",
                            charset="windows-1251")
