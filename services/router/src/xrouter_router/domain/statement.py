"""An account's monthly statement: the month as an interval in the accounting time zone, one
line per charged generation (net, VAT, gross) and the totals, per VAT rate and overall, exact
and in kopecks. Pure: the records come from the UsageLedger."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from decimal import Decimal

from xrouter_router.domain import vat
from xrouter_router.domain.errors import InvalidRequest
from xrouter_router.domain.ledger import GenerationRecord

_MONTH = re.compile(r"([0-9]{4})-([0-9]{2})")


def month_period(month: str, zone: tzinfo) -> tuple[float, float]:
    """`YYYY-MM` as [its first instant, the next month's first instant) in unix time, months
    beginning at midnight in `zone`. InvalidRequest naming `month` otherwise."""
    found = _MONTH.fullmatch(month)
    if found is None or not 1 <= int(found[2]) <= 12 or int(found[1]) < 1970:
        raise InvalidRequest(f"month must be YYYY-MM (e.g. 2026-01), got {month!r}",
                             param="month")
    year, number = int(found[1]), int(found[2])
    following = date(year + number // 12, number % 12 + 1, 1)
    return vat.day_start(date(year, number, 1), zone), vat.day_start(following, zone)


@dataclass(frozen=True, slots=True)
class Line:
    """One charged generation: when (in the statement's zone), what, and its money."""

    generation_id: str
    date: str
    model: str
    provider: str
    prompt_tokens: int
    completion_tokens: int
    split: vat.Split


@dataclass(frozen=True, slots=True)
class Total:
    """A sum of lines (of one VAT rate, or of all: rate None): exact, and in kopecks."""

    rate: Decimal | None
    requests: int
    prompt_tokens: int
    completion_tokens: int
    exact: vat.Totals
    net_rub: Decimal
    vat_rub: Decimal

    @property
    def gross_rub(self) -> Decimal:
        return self.net_rub + self.vat_rub


@dataclass(frozen=True, slots=True)
class Statement:
    account_id: str
    month: str
    zone: str
    lines: tuple[Line, ...]
    by_rate: tuple[Total, ...]
    total: Total


def line_of(record: GenerationRecord, zone: tzinfo) -> Line:
    when = datetime.fromtimestamp(record.created_at, zone).isoformat(timespec="seconds")
    return Line(record.id, when, record.model, record.provider, record.prompt_tokens,
                record.completion_tokens, vat.Split(record.cost_net, record.vat, record.vat_rate))


def _total(rate: Decimal | None, lines: Sequence[Line], net_rub: Decimal,
           vat_rub: Decimal) -> Total:
    return Total(rate, len(lines), sum(line.prompt_tokens for line in lines),
                 sum(line.completion_tokens for line in lines),
                 vat.totals(line.split for line in lines), net_rub, vat_rub)


def build(account_id: str, month: str, zone: tzinfo,
          records: Sequence[GenerationRecord]) -> Statement:
    """The statement of the records (already the account's, in the month). Each rate's net and
    VAT are rounded to kopecks half up; the overall kopeck figures are the sums of the rates'
    (so the rate rows add up to the total row), and gross = net + VAT on every row."""
    lines = tuple(line_of(r, zone) for r in records)
    groups: dict[Decimal, list[Line]] = {}
    for line in lines:
        groups.setdefault(line.split.rate, []).append(line)
    rates = []
    for rate, members in sorted(groups.items()):
        exact = vat.totals(line.split for line in members)
        rates.append(_total(rate, members, exact.net_rub, exact.vat_rub))
    overall = _total(None, lines, sum((t.net_rub for t in rates), Decimal("0.00")),
                     sum((t.vat_rub for t in rates), Decimal("0.00")))
    return Statement(account_id, month, str(zone), lines, tuple(rates), overall)
