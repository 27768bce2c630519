"""The monthly statement: months as Moscow intervals, lines from records, totals per VAT rate
and overall, exact and in kopecks (each rate rounded half up, the total their sum)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xrouter_router.domain import statement
from xrouter_router.domain.errors import InvalidRequest
from xrouter_router.domain.ledger import GenerationRecord
from xrouter_router.domain.vat import MOSCOW, Split


def _record(gen: str, at: str, net: str, rate: str) -> GenerationRecord:
    split = Split.from_net(Decimal(net), Decimal(rate))
    return GenerationRecord(
        id=gen, created_at=datetime.fromisoformat(at).timestamp(), key_id="k", account_id="a",
        model="m", provider="p", streamed=False, prompt_tokens=10, completion_tokens=5,
        cached_tokens=0, reasoning_tokens=0, counts_native=True, cost=split.gross, latency_ms=1,
        generation_ms=1, finish_reason="stop", status="success", vat=split.vat,
        vat_rate=split.rate)


def test_a_month_is_its_moscow_interval() -> None:
    since, until = statement.month_period("2026-01", MOSCOW)
    assert datetime.fromtimestamp(since, UTC).isoformat() == "2025-12-31T21:00:00+00:00"
    assert datetime.fromtimestamp(until, UTC).isoformat() == "2026-01-31T21:00:00+00:00"
    since, until = statement.month_period("2025-12", ZoneInfo("UTC"))
    assert (datetime.fromtimestamp(since, UTC).isoformat(),
            datetime.fromtimestamp(until, UTC).isoformat()) == (
        "2025-12-01T00:00:00+00:00", "2026-01-01T00:00:00+00:00")


@pytest.mark.parametrize("month", ["2026-00", "2026-13", "2026-1", "26-01", "", "1969-12",
                                   "2026-01-01", "２０２６-01", "2026-01\n"])
def test_a_malformed_month_is_refused_naming_the_parameter(month: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        statement.month_period(month, MOSCOW)
    assert caught.value.param == "month"
    assert str(caught.value) == f"month must be YYYY-MM (e.g. 2026-01), got {month!r}"


def test_totals_round_each_rate_half_up_and_add_the_rates() -> None:
    records = [
        _record("g1", "2025-12-31T23:59:00+03:00", "0.005", "0.2"),     # vat 0.001
        _record("g2", "2025-12-31T23:59:30+03:00", "0.01", "0.2"),      # vat 0.002
        _record("g3", "2026-01-01T00:00:00+03:00", "0.0125", "0.22"),   # vat 0.00275
        _record("g4", "2026-01-01T00:00:01+03:00", "0.0025", "0.22"),   # vat 0.00055
    ]
    made = statement.build("a", "2026-01", MOSCOW, records)
    assert [line.date for line in made.lines] == [
        "2025-12-31T23:59:00+03:00", "2025-12-31T23:59:30+03:00", "2026-01-01T00:00:00+03:00",
        "2026-01-01T00:00:01+03:00"]
    twenty, twenty_two = made.by_rate
    # 20%: net 0.015 -> 0.02 (half up), VAT 0.003 -> 0.00.
    assert (twenty.rate, twenty.requests, twenty.exact.net, twenty.exact.vat) == (
        Decimal("0.2"), 2, Decimal("0.01500000"), Decimal("0.00300000"))
    assert (twenty.net_rub, twenty.vat_rub, twenty.gross_rub) == (
        Decimal("0.02"), Decimal("0.00"), Decimal("0.02"))
    # 22%: net 0.015 -> 0.02, VAT 0.0033 -> 0.00.
    assert (twenty_two.net_rub, twenty_two.vat_rub) == (Decimal("0.02"), Decimal("0.00"))
    total = made.total
    assert (total.rate, total.requests, total.prompt_tokens, total.completion_tokens) == (
        None, 4, 40, 20)
    assert (total.exact.net, total.exact.vat, total.exact.gross) == (
        Decimal("0.03000000"), Decimal("0.00630000"), Decimal("0.03630000"))
    # The rates' kopecks, added: 0.04 net (the exact 0.03 would round to 0.03).
    assert (total.net_rub, total.vat_rub, total.gross_rub) == (
        Decimal("0.04"), Decimal("0.00"), Decimal("0.04"))


_LINES = st.lists(st.tuples(
    st.decimals(min_value=0, max_value=Decimal(1000), places=8, allow_nan=False,
                allow_infinity=False),
    st.sampled_from(["0.2", "0.22"])), max_size=30)


@given(_LINES)
def test_lines_add_up_to_the_totals_exactly(lines: list[tuple[Decimal, str]]) -> None:
    base = _record("g", "2026-01-01T00:00:00+03:00", "0", "0.22")
    records = []
    for i, (net, rate) in enumerate(lines):
        split = Split.from_net(net, Decimal(rate))
        records.append(replace(base, id=f"g{i}", cost=split.gross, vat=split.vat,
                               vat_rate=split.rate))
    made = statement.build("a", "2026-01", MOSCOW, records)
    for total in (*made.by_rate, made.total):
        assert total.exact.net + total.exact.vat == total.exact.gross
        assert total.net_rub + total.vat_rub == total.gross_rub
    zero = Decimal(0)
    assert made.total.exact.net == sum((line.split.net for line in made.lines), zero)
    assert made.total.exact.vat == sum((line.split.vat for line in made.lines), zero)
    assert made.total.exact.gross == sum((r.cost for r in records), zero)
    assert made.total.net_rub == sum((t.net_rub for t in made.by_rate), zero)
    assert made.total.vat_rub == sum((t.vat_rub for t in made.by_rate), zero)
    assert made.total.requests == len(records)
