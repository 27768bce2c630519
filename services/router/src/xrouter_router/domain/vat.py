"""VAT: the schedule of rates by date (configuration), the rate in force at an instant, a net
cost's VAT and gross, and the rounding of period totals to kopecks. Pure: no I/O, no clock."""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, tzinfo
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal, InvalidOperation
from zoneinfo import ZoneInfo

from xrouter_router.domain.accounting import COST_QUANTUM

# Russian accounting days are Moscow days (UTC+3 since 2014, no daylight saving time).
MOSCOW = ZoneInfo("Europe/Moscow")
DEFAULT_SCHEDULE = "2019-01-01=20,2026-01-01=22"
KOPECK = Decimal("0.01")
_HUNDRED = Decimal(100)
_ONE = Decimal(1)
_ZERO = Decimal(0)


def vat_of(net: Decimal, rate: Decimal) -> Decimal:
    """The VAT on a net amount at `rate` (a fraction: 0.22 is 22%), rounded once (half to even)
    to COST_QUANTUM, the precision of every cost: net + vat_of(net, rate) is the gross, exactly."""
    return (net * rate).quantize(COST_QUANTUM, rounding=ROUND_HALF_EVEN)


def net_of(gross: Decimal, rate: Decimal) -> Decimal:
    """The net part of a gross amount (half to even, to COST_QUANTUM); gross - net_of(...) is its
    VAT. For amounts known only gross: a top-up, a stream's charge capped at its reservation."""
    return (gross / (_ONE + rate)).quantize(COST_QUANTUM, rounding=ROUND_HALF_EVEN)


def kopecks(amount: Decimal) -> Decimal:
    """An amount rounded to the kopeck, half up (away from zero): how statements round."""
    return amount.quantize(KOPECK, rounding=ROUND_HALF_UP)


@dataclass(frozen=True, slots=True)
class Split:
    """An amount as net + VAT = gross (exactly), with the rate (a fraction) that made the VAT."""

    net: Decimal
    vat: Decimal
    rate: Decimal

    @property
    def gross(self) -> Decimal:
        return self.net + self.vat

    @classmethod
    def from_net(cls, net: Decimal, rate: Decimal) -> Split:
        return cls(net, vat_of(net, rate), rate)

    @classmethod
    def from_gross(cls, gross: Decimal, rate: Decimal) -> Split:
        net = net_of(gross, rate)
        return cls(net, gross - net, rate)


class VatSchedule:
    """Rates by the date they take effect, each in force until the next one; before the first
    date there is no VAT (rate 0). Days begin at midnight in `zone` (Moscow by default). The
    boundaries are kept as unix times, so rate_at() is one bisect of a float: nothing is parsed
    or converted per generation."""

    __slots__ = ("_rates", "_starts", "steps", "zone")

    def __init__(self, steps: Sequence[tuple[date, Decimal]], zone: tzinfo = MOSCOW) -> None:
        ordered = sorted(steps)
        if len({day for day, _ in ordered}) != len(ordered):
            raise ValueError("a date is given twice")
        self.steps = tuple(ordered)
        self.zone = zone
        self._starts = [day_start(day, zone) for day, _ in ordered]
        self._rates = [rate for _, rate in ordered]

    @classmethod
    def parse(cls, text: str, zone: tzinfo = MOSCOW) -> VatSchedule:
        """`YYYY-MM-DD=RATE[,YYYY-MM-DD=RATE...]` (RATE in percent, 0 to 100; kept as a
        fraction). ValueError saying what is wrong otherwise."""
        steps = [_step(part.strip()) for part in text.split(",") if part.strip()]
        if not steps:
            raise ValueError("no rate given (expected YYYY-MM-DD=RATE[,...])")
        return cls(steps, zone)

    def rate_at(self, ts: float) -> Decimal:
        """The rate (a fraction: 0.22) in force at unix time `ts`."""
        at = bisect.bisect_right(self._starts, ts)
        return self._rates[at - 1] if at else _ZERO

    def split(self, net: Decimal, ts: float) -> Split:
        """The net amount of a generation made at `ts`, with its VAT."""
        return Split.from_net(net, self.rate_at(ts))

    def gross(self, net: Decimal, ts: float) -> Decimal:
        return self.split(net, ts).gross

    def text(self) -> str:
        return ",".join(f"{day.isoformat()}={percent(rate)}" for day, rate in self.steps)


def percent(rate: Decimal) -> str:
    """A rate as the percentage it is configured in (0.22 -> "22")."""
    return f"{(rate * _HUNDRED).normalize():f}"


def rate_text(rate: Decimal) -> str:
    """A rate as the API shows it: a decimal fraction without trailing zeros (0.22 -> "0.22")."""
    return f"{rate.normalize():f}"


def day_start(day: date, zone: tzinfo) -> float:
    """The unix time at which `day` begins in `zone`."""
    return datetime.combine(day, time(0), tzinfo=zone).timestamp()


def _step(part: str) -> tuple[date, Decimal]:
    day_text, sep, rate_text = part.partition("=")
    if not sep:
        raise ValueError(f"{part!r} is not DATE=RATE")
    try:
        day = date.fromisoformat(day_text.strip())
    except ValueError:
        raise ValueError(f"{day_text.strip()!r} is not a date (YYYY-MM-DD)") from None
    try:
        rate = Decimal(rate_text.strip())
    except InvalidOperation:
        raise ValueError(f"{rate_text.strip()!r} is not a rate in percent") from None
    if not rate.is_finite() or not _ZERO <= rate <= _HUNDRED:
        raise ValueError(f"the rate {rate_text.strip()!r} is not between 0 and 100")
    return day, rate / _HUNDRED


@dataclass(frozen=True, slots=True)
class Totals:
    """A period's sums: exact (to COST_QUANTUM, net + vat == gross) and in kopecks, where net and
    VAT are each rounded half up and the gross is their sum (so the identity holds in kopecks
    too; the kopeck gross may differ from the exact gross rounded by at most 0.01)."""

    net: Decimal = _ZERO
    vat: Decimal = _ZERO

    @property
    def gross(self) -> Decimal:
        return self.net + self.vat

    @property
    def net_rub(self) -> Decimal:
        return kopecks(self.net)

    @property
    def vat_rub(self) -> Decimal:
        return kopecks(self.vat)

    @property
    def gross_rub(self) -> Decimal:
        return self.net_rub + self.vat_rub

    def add(self, split: Split) -> Totals:
        return Totals(self.net + split.net, self.vat + split.vat)


def totals(splits: Iterable[Split]) -> Totals:
    """The exact sums of the lines (each line's net + VAT is its gross, so the sums are too)."""
    net, vat = _ZERO, _ZERO
    for split in splits:
        net += split.net
        vat += split.vat
    return Totals(net, vat)


def by_rate(splits: Iterable[Split]) -> dict[Decimal, Totals]:
    """The sums per VAT rate (a period across a change of rate has one per rate), by rate."""
    groups: dict[Decimal, Totals] = {}
    for split in splits:
        groups[split.rate] = groups.get(split.rate, Totals()).add(split)
    return dict(sorted(groups.items()))


# The schedule a service built without settings applies (tests, tools); immutable.
DEFAULT_VAT = VatSchedule.parse(DEFAULT_SCHEDULE)
