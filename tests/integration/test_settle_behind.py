"""Billing's settle_behind, the cluster mode's composition: the answer goes once the generation's
record is durable, and the settlement (the hold and the slot given back, the cost counted in
Redis) follows in a task of its own, which drain() waits for. A later request of the key from
the same router finds the slot and the money given back: the settlement's command is queued on
the lane's connection to the account's node before conclude() returns, and Redis runs a
connection's commands in order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.infra.fixtures import redis_cluster  # noqa: F401 - the session fixture
from tests.infra.pg_fixtures import postgres_ha  # noqa: F401 - the session fixture
from tests.integration.admission_support import Rig, running_rig, service
from tests.unit.builders import request as chat_request
from xrouter_router.domain.ports import Meter
from xrouter_router.domain.service import ChatService


@pytest.fixture(params=["embedded", "cluster"])
async def rig(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Rig]:
    async with running_rig(request.param, request, tmp_path) as made:
        yield made


class GatedMeter:
    """The stack's Meter, whose settlements wait until `opened` is set."""

    def __init__(self, inner: Meter) -> None:
        self._inner = inner
        self.settling = asyncio.Event()
        self.opened = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def conclude(self, *args: Any, **kwargs: Any) -> None:
        self.settling.set()
        await self.opened.wait()
        await self._inner.conclude(*args, **kwargs)


async def _cost(svc: ChatService, gen: str, *, stream: bool) -> Decimal:
    asked = replace(chat_request("m"), generation_id=gen)
    if not stream:
        return (await svc.chat("k", asked, None)).usage.cost
    costs = [event.end.usage.cost async for event in svc.stream("k", asked, None)
             if event.end is not None]
    assert len(costs) == 1
    return costs[0]


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
async def test_the_answer_does_not_wait_for_the_settlement(rig: Rig, stream: bool) -> None:
    account = await rig.account("10")
    key = rig.key(account)
    gated = GatedMeter(rig.stack.meter)
    svc = service(rig, key, billing=rig.billing(meter=gated, settle_behind=True))
    async with asyncio.timeout(10):  # an answer that waited for the settlement would hang
        cost = await _cost(svc, "gen-b1", stream=stream)
    assert gated.settling.is_set()  # the settlement began before the answer came back
    record = await rig.stack.ledger.get("gen-b1")
    assert record is not None and record.cost == cost  # after the record
    slots, reserved = await rig.held_now(key)
    assert slots == 1 and reserved > cost  # and the hold is still there
    gated.opened.set()
    assert await rig.held(key) == (0, Decimal(0))  # held() waits for the settlements: drain()
    assert await rig.charged(account, Decimal(10) - cost) == Decimal(10) - cost


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
async def test_a_later_request_finds_the_slot_and_the_money_given_back(
        request: pytest.FixtureRequest, tmp_path: Path, stream: bool) -> None:
    async with running_rig("cluster", request, tmp_path) as rig:
        assert rig.stack.settle_behind  # the composition root's choice in this mode
        # What one request reserves, read while its settlement is held back.
        probe = rig.key(await rig.account("10"))
        gated = GatedMeter(rig.stack.meter)
        await _cost(service(rig, probe, billing=rig.billing(meter=gated)), "gen-p", stream=stream)
        _, reservation = await rig.held_now(probe)
        gated.opened.set()
        # An account whose balance holds one such reservation and not two, a key of one slot:
        # each request is refused unless the one before it has been settled.
        balance = reservation * 3 / 2
        account = await rig.account(str(balance))
        key = rig.key(account, concurrent=1)
        svc = service(rig, key)
        spent = Decimal(0)
        for i in range(4):
            spent += await _cost(svc, f"gen-s{i}", stream=stream)
        assert await rig.held(key) == (0, Decimal(0))
        assert await rig.charged(account, balance - spent) == balance - spent
