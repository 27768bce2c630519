"""The money path of a deployment priced in USD, in both modes' real stores (embedded: SQLite and
the in-process meter; cluster: PostgreSQL HA and the Redis Cluster meter): the reservation
holds the worst case in RUB, and a stream cut at its reservation records that cost with its USD
equivalent."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from tests.infra.fixtures import redis_cluster  # noqa: F401 - the session fixture
from tests.infra.pg_fixtures import postgres_ha  # noqa: F401 - the session fixture
from tests.integration.admission_support import Rig, running_rig
from tests.unit.builders import deployment
from xrouter_router.domain import fx, vat
from xrouter_router.domain.billing import Bill, Outcome, cost_of
from xrouter_router.domain.catalog import Price
from xrouter_router.domain.types import Served, TokenCounts

RATE = Decimal("92.5")
USD = fx.priced_deployment(replace(deployment("m", "a", prompt="2.5", completion="10"),
                                   currency="USD"),
                           fx.RateBook.of([fx.Rate("USD", RATE)]), date(2026, 12, 6))
SERVED = Served("m", "a", USD.id, 0)


@pytest.fixture(params=["embedded", "cluster"])
async def rig(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Rig]:
    async with running_rig(request.param, request, tmp_path) as made:
        yield made


async def test_the_reservation_holds_the_usd_worst_case_in_rub(rig: Rig) -> None:
    key = rig.key(await rig.account("10"))
    bill = Bill(f"gen-{uuid.uuid4().hex}", "m", prompt_tokens=100, completion_tokens=1000,
                streamed=False)
    async with rig.billing().admit(key, bill, [USD]) as held:
        # In RUB at 92.5 (231.25 and 925 per million), then the VAT in force (prices are net).
        net = cost_of(100, 1000, Price(Decimal("231.25"), Decimal(925)))
        assert net == Decimal("0.9481250")
        worst = net + vat.vat_of(net, held.vat_rate)
        assert held.reservation is not None and held.reservation.amount == worst
        assert await rig.held(key) == (1, worst)
        usage = held.priced(TokenCounts(prompt=100, completion=10), USD)
        assert usage.conversion is not None and usage.conversion.cost == Decimal("0.00035")
        await held.conclude(Outcome(SERVED, usage, "success", "stop"))
    left = Decimal(10) - usage.cost  # 0.032375 net in RUB, with its VAT
    assert usage.cost == Decimal("0.032375") + vat.vat_of(Decimal("0.032375"), held.vat_rate)
    assert await rig.charged(key.account_id, left) == left


async def test_a_stream_cut_at_its_reservation_records_the_cut_cost_in_both_currencies(
        rig: Rig) -> None:
    key = rig.key(await rig.account("10"))
    gen = f"gen-{uuid.uuid4().hex}"
    bill = Bill(gen, "m", prompt_tokens=100, completion_tokens=1000, streamed=True)
    async with rig.billing().admit(key, bill, [USD]) as held:
        assert held.reservation is not None
        reserved = held.reservation.amount
        # The provider reported more than was paid for: the cost stops at the reservation.
        usage = held.priced(TokenCounts(prompt=100, completion=100_000), USD)
        assert usage.cost > reserved
        await held.conclude(Outcome(SERVED, usage, "budget_exhausted", "length"))
    record = await rig.stack.ledger.get(gen)
    assert record is not None
    # The gross reservation is charged; the USD equivalent is of its net part (prices are net).
    net = vat.Split.from_gross(reserved, held.vat_rate).net
    assert (record.cost, record.price_currency, record.fx_rate, record.cost_original,
            record.fx_date) == (reserved, "USD", RATE, fx.from_rub(net, RATE), None)
