"""Properties of the admission port under any interleaving of admits, extends, concludes,
cancellations and failures (hypothesis, derandomized, bounded): in-process, and across two
router replicas (two adapter instances) on the real Redis Cluster and PostgreSQL HA.

At every step: the money reserved fits what is left (top-ups = free + reserved + spent, the
free part never negative), the slots taken are the admissions open, and the key's window of the
model's tokens per minute holds the open admissions' upper bounds plus what the concluded ones
used, never more than the limit. At the end: no slot, no money and no upper bound is held, each
generation is recorded once and charged once, the balance is what was topped up less the
charges."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.infra.fixtures import redis_cluster  # noqa: F401 - the session fixture
from tests.infra.pg_fixtures import postgres_ha  # noqa: F401 - the session fixture
from tests.integration.admission_support import CATALOG, Rig, running_rig
from xrouter_router.domain.billing import Admission, Admitted, Bill, Outcome, cost_of
from xrouter_router.domain.errors import InsufficientCredits, RateLimited
from xrouter_router.domain.limits import TokenAsk
from xrouter_router.domain.types import Served, TokenCounts, Usage

TOP_UP = Decimal("0.05")  # 100 RUB / 200 RUB a million: a few hundred tokens each way
DEPLOYMENTS = CATALOG.resolve("m").deployments
PRICE = DEPLOYMENTS[0].price
SERVED = Served("m", "a", "m@a", 0)
CONCURRENT = 3
TPM = 500  # the model's tokens per minute: a few hundred tokens asked each, so some refused
NOW = 1_699_999_995.0  # the admissions' clock: every one in the same minute

OPS = st.lists(st.one_of(
    # admit: replica, streamed, prompt tokens, max tokens
    st.tuples(st.just("admit"), st.integers(0, 1), st.booleans(), st.integers(1, 120),
              st.integers(1, 200)),
    # extend an open admission by up to 64 tokens (a stream's batch)
    st.tuples(st.just("extend"), st.integers(0, 7), st.integers(1, 64)),
    # conclude with a share of the tokens paid for
    st.tuples(st.just("conclude"), st.integers(0, 7), st.integers(0, 100)),
    st.tuples(st.just("cancel"), st.integers(0, 7)),
    st.tuples(st.just("fail"), st.integers(0, 7)),
), max_size=24)


@dataclass
class Open:
    admitted: Admitted
    admission: Admission
    completion: int  # the completion tokens paid for so far
    asked: int  # the upper bound held in the model's window


@pytest.fixture(params=["embedded", "cluster"])
async def rig(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Rig]:
    replicas = 2 if request.param == "cluster" else 1
    async with running_rig(request.param, request, tmp_path, replicas=replicas) as made:
        yield made


class Run:
    """One interleaving against one fresh account and key."""

    def __init__(self, rig: Rig, account: str) -> None:
        self.rig = rig
        self.key = rig.key(account, concurrent=CONCURRENT)
        self.billings = [rig.billing(replica=i, wall=lambda: NOW)
                         for i in range(len(rig.stacks))]
        self.open: list[Open] = []
        self.charged: dict[str, Decimal] = {}
        self.used = 0  # the tokens of the concluded generations

    async def step(self, op: tuple[object, ...]) -> None:
        kind = op[0]
        if kind == "admit":
            await self._admit(*op[1:])  # type: ignore[arg-type]
            return
        if not self.open:
            return
        held = self.open[int(op[1]) % len(self.open)]  # type: ignore[call-overload]
        if kind == "extend":
            wanted = held.completion + int(op[2])  # type: ignore[call-overload]
            if held.admission.bill.streamed and await held.admission.extend(wanted):
                held.completion = wanted
            return
        self.open.remove(held)
        if kind == "conclude":
            await self._conclude(held, int(op[2]))  # type: ignore[call-overload]
        elif kind == "cancel":
            await held.admitted.__aexit__(asyncio.CancelledError, asyncio.CancelledError(), None)
            self.charged[held.admission.generation_id] = Decimal(0)
        else:
            await held.admitted.__aexit__(RuntimeError, RuntimeError("failed"), None)
            self.charged[held.admission.generation_id] = Decimal(0)

    async def _admit(self, replica: int, streamed: bool, prompt: int, max_tokens: int) -> None:
        bill = Bill(f"gen-{uuid.uuid4().hex}", "m", prompt, max_tokens, streamed)
        ask = TokenAsk("m", TPM, None, prompt + max_tokens)
        admitted = self.billings[replica % len(self.billings)].admit(self.key, bill, DEPLOYMENTS,
                                                                     (ask,))
        try:
            admission = await admitted.__aenter__()
        except (RateLimited, InsufficientCredits):
            return
        self.open.append(Open(admitted, admission, 0 if streamed else max_tokens, ask.tokens))

    async def _conclude(self, held: Open, percent: int) -> None:
        prompt = held.admission.prompt_tokens * percent // 100
        tokens = TokenCounts(prompt=prompt, completion=held.completion * percent // 100)
        cost = cost_of(tokens.prompt, tokens.completion, PRICE)
        await held.admission.conclude(Outcome(SERVED, Usage(tokens, cost), "success", "stop"))
        await held.admitted.__aexit__(None, None, None)
        self.charged[held.admission.generation_id] = cost
        self.used += tokens.total

    async def check(self) -> None:
        slots, reserved = await self.rig.held(self.key)
        spent = sum(self.charged.values(), Decimal(0))
        assert slots == len(self.open)
        assert Decimal(0) <= reserved <= TOP_UP - spent  # free = top-up - reserved - spent >= 0
        window = self.used + sum(o.asked for o in self.open)
        assert await self.rig.tokens(self.key, "m", NOW) == (window, 0) and window <= TPM


async def _settled_balance(rig: Rig, account: str, expected: Decimal) -> Decimal:
    """In the cluster mode the charges reach PostgreSQL through the ledger consumer a moment
    after the records (the 10 s bound only stops a broken consumer from hanging the test)."""
    for _ in range(200):
        balance = await rig.balance(account)
        if balance == expected or rig.mode == "embedded":
            return balance
        await asyncio.sleep(0.05)
    return balance


@settings(max_examples=40, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
async def test_any_interleaving_keeps_the_money_and_the_slots_exact(
        rig: Rig, ops: list[tuple[object, ...]]) -> None:
    account = await rig.account(str(TOP_UP))
    run = Run(rig, account)
    for op in ops:
        await run.step(op)
        await run.check()
    while run.open:
        await run.step(("cancel", 0))
    await run.check()
    assert await rig.held(run.key) == (0, Decimal(0))
    for gen, cost in run.charged.items():
        record = await rig.stack.ledger.get(gen)
        assert record is not None and record.cost == cost
    spent = sum(run.charged.values(), Decimal(0))
    assert await _settled_balance(rig, account, TOP_UP - spent) == TOP_UP - spent
    totals = await rig.stack.ledger.totals(key_id=run.key.id)
    assert totals.cost == spent
