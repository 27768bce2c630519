"""VAT on the money path, in both modes: each generation is charged gross at the rate of its
time (across the 2026-01-01 change, on an injected clock), records its net, VAT and rate, and
its reservation covers the gross worst case."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest

from tests.infra.fixtures import redis_cluster  # noqa: F401 - the session fixture
from tests.infra.pg_fixtures import postgres_ha  # noqa: F401 - the session fixture
from tests.integration.admission_support import Rig, running_rig, service
from tests.unit.builders import request
from xrouter_router.domain.billing import chat_bill, cost_of
from xrouter_router.domain.catalog import Price
from xrouter_router.domain.errors import InsufficientCredits
from xrouter_router.domain.types import Sampling

# 2025-12-31 23:59:00 and 2026-01-01 00:00:00, Moscow time (the schedule's days).
LAST_MINUTE_OF_20 = datetime.fromisoformat("2025-12-31T23:59:00+03:00").timestamp()
FIRST_SECOND_OF_22 = datetime.fromisoformat("2026-01-01T00:00:00+03:00").timestamp()
# The fake's answer counts (estimated) 9 prompt and 11 completion tokens; "m" costs 100 and
# 200 RUB per million: (900 + 2200) / 1e6 net.
NET = Decimal("0.0031")


@pytest.fixture(params=["embedded", "cluster"])
async def rig(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Rig]:
    async with running_rig(request.param, request, tmp_path) as made:
        yield made


def _clock(at: float) -> Callable[[], float]:
    return lambda: at


async def test_each_generation_pays_the_vat_of_its_time_across_2026_01_01(rig: Rig) -> None:
    account = await rig.account("1")
    key = rig.key(account)
    for gen, at in (("gen-2025", LAST_MINUTE_OF_20), ("gen-2026", FIRST_SECOND_OF_22)):
        svc = service(rig, key, billing=rig.billing(wall=_clock(at)))
        result = await svc.chat("k", replace(request("m"), generation_id=gen), None)
        assert result.usage.cost == {"gen-2025": Decimal("0.00372000"),
                                     "gen-2026": Decimal("0.00378200")}[gen]
    old, new = await rig.stack.ledger.get("gen-2025"), await rig.stack.ledger.get("gen-2026")
    assert old is not None and new is not None
    assert (old.created_at, old.cost_net, old.vat, old.vat_rate, old.cost) == (
        LAST_MINUTE_OF_20, NET, Decimal("0.00062"), Decimal("0.2"), Decimal("0.00372"))
    assert (new.created_at, new.cost_net, new.vat, new.vat_rate, new.cost) == (
        FIRST_SECOND_OF_22, NET, Decimal("0.000682"), Decimal("0.22"), Decimal("0.003782"))
    # The balance is debited the gross amounts.
    expected = Decimal(1) - Decimal("0.00372") - Decimal("0.003782")
    assert await rig.charged(account, expected) == expected
    totals = await rig.stack.ledger.totals(account_id=account)
    assert (totals.cost, totals.vat, totals.cost_net) == (
        Decimal("0.007502"), Decimal("0.001302"), Decimal("0.0062"))
    assert await rig.held(key) == (0, Decimal(0))


async def test_a_balance_that_covers_the_net_but_not_the_gross_is_refused(rig: Rig) -> None:
    asked = replace(request("m"), sampling=Sampling(max_tokens=100))
    bill = chat_bill(asked, stream=False)
    net = cost_of(bill.prompt_tokens, 100, Price(Decimal(100), Decimal(200)))
    gross = cost_of(bill.prompt_tokens, 100, Price(Decimal(100), Decimal(200)), Decimal("0.22"))
    assert gross == net + (net * Decimal("0.22")).quantize(Decimal("1e-8"))
    at = FIRST_SECOND_OF_22
    short = rig.key(await rig.account(str(gross - Decimal("0.00000001"))))
    with pytest.raises(InsufficientCredits):
        await service(rig, short, billing=rig.billing(wall=lambda: at)).chat("k", asked, None)
    assert await rig.held(short) == (0, Decimal(0))
    assert await rig.stack.ledger.get("gen-1") is None
    # Exactly the gross worst case is enough, and the whole of it is what is held meanwhile.
    enough = rig.key(await rig.account(str(gross)))
    result = await service(rig, enough, billing=rig.billing(wall=lambda: at)).chat(
        "k", asked, None)
    assert result.usage.cost == Decimal("0.003782")
