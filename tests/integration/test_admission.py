"""The money path in both modes (embedded: SQLite and the in-process limiter; cluster:
PostgreSQL HA and the Redis Cluster): embeddings are admitted, charged and recorded like chat;
every exit gives the slot and the reservation back, whatever fails or cancels at whichever await
point; every candidate the router may try is one the key may use."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.infra.fixtures import redis_cluster  # noqa: F401 - the session fixture
from tests.infra.pg_fixtures import postgres_ha  # noqa: F401 - the session fixture
from tests.integration.admission_support import Faults, Rig, running_rig, service
from tests.integration.store_factories import generation
from tests.support import gross
from tests.unit.builders import request
from tests.unit.fakes import VECTORS, FakeEmbedder, FakeProvider
from xrouter_router.domain.catalog import Deployment
from xrouter_router.domain.errors import Forbidden, InsufficientCredits, UpstreamServerError
from xrouter_router.domain.keys import ApiKey
from xrouter_router.domain.ledger import GenerationRecord
from xrouter_router.domain.ports import UsageLedger
from xrouter_router.domain.service import ChatService
from xrouter_router.domain.types import (
    ChatRequest,
    Completion,
    Delta,
    EmbeddingRequest,
    Embeddings,
    StreamBatch,
    TokenCounts,
)

EMBED = EmbeddingRequest(model="e", inputs=("hello world", "привет"), generation_id="gen-e1")
# The fake reports no usage: counted by their UTF-8 bytes (11 + 12), at 100 RUB per million,
# net; charged with VAT (the admissions run on the real clock and the default schedule).
EMBED_NET = Decimal("0.0023")
FIXED = 1_699_999_995.0  # the admissions' clock in the fault tests: their windows stay put


@pytest.fixture(params=["embedded", "cluster"])
async def rig(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Rig]:
    async with running_rig(request.param, request, tmp_path) as made:
        yield made


# ---- embeddings ---------------------------------------------------------------------------

async def test_embeddings_are_charged_and_recorded_like_chat(rig: Rig) -> None:
    account = await rig.account("1")
    key = rig.key(account)
    embed_cost = gross(EMBED_NET)
    served, result, usage = await service(rig, key).embed("k", EMBED, None)
    assert (served.model, served.provider, result, usage.tokens, usage.cost) == (
        "e", "a", VECTORS, TokenCounts(prompt=23, estimated=True), embed_cost)
    record = await rig.stack.ledger.get("gen-e1")
    assert record is not None
    assert (record.model, record.provider, record.key_id, record.prompt_tokens, record.cost,
            record.status, record.streamed) == ("e", "a", key.id, 23, embed_cost, "success", False)
    assert (record.cost_net, record.vat) == (EMBED_NET, embed_cost - EMBED_NET)
    assert await rig.held(key) == (0, Decimal(0))
    assert await rig.charged(account, Decimal(1) - embed_cost) == Decimal(1) - embed_cost


async def test_embeddings_are_reserved_from_an_upper_bound_of_their_input(rig: Rig) -> None:
    # 1 RUB buys 10,000 tokens at 100 RUB per million: 6,000 Cyrillic letters are 12,000 bytes.
    account = await rig.account("1")
    key = rig.key(account)
    embedder = FakeEmbedder("a")
    big = EmbeddingRequest(model="e", inputs=("я" * 6000,), generation_id="gen-e2")
    with pytest.raises(InsufficientCredits):
        await service(rig, key, providers=(embedder, FakeProvider("b"))).embed("k", big, None)
    assert embedder.calls == []
    assert await rig.held(key) == (0, Decimal(0))
    assert await rig.stack.ledger.get("gen-e2") is None


async def test_embeddings_are_limited(rig: Rig) -> None:
    key = rig.key(await rig.account("1"), concurrent=1)
    entered, gate = asyncio.Event(), asyncio.Event()

    class Slow(FakeEmbedder):
        async def embed(self, request: EmbeddingRequest, deployment: Deployment) -> Embeddings:
            entered.set()
            await gate.wait()
            return await super().embed(request, deployment)

    svc = service(rig, key, providers=(Slow("a"), FakeProvider("b")))
    first = asyncio.create_task(svc.embed("k", EMBED, None))
    await entered.wait()
    # (11 + 1) + (12 + 1) tokens: the UTF-8 bytes of each input and one more, at 100 RUB a
    # million (net), reserved with VAT
    assert await rig.held(key) == (1, gross("0.0025"))
    with pytest.raises(Exception, match="1 concurrent requests"):
        await svc.embed("k", EmbeddingRequest(model="e", inputs=("x",), generation_id="g3"), None)
    gate.set()
    await first
    assert await rig.held(key) == (0, Decimal(0))


# ---- release on every exit ----------------------------------------------------------------

class Broken(FakeProvider):
    """A provider adapter with a bug of ours (as Gemini's was, on a malformed image URL)."""

    async def chat(self, request: ChatRequest, deployment: Deployment) -> Completion:
        raise ValueError("Invalid IPv6 URL")


async def test_an_error_of_ours_gives_the_slot_and_the_reservation_back(rig: Rig) -> None:
    key = rig.key(await rig.account("10"), concurrent=5)
    svc = service(rig, key, providers=(Broken("a"), FakeProvider("b")))
    for _ in range(6):  # before the fix the sixth was refused: "5 concurrent requests"
        with pytest.raises(ValueError, match="Invalid IPv6 URL"):
            await svc.chat("k", request("m"), None)
    assert await rig.held(key) == (0, Decimal(0))


async def _chat(svc: ChatService, gen: str = "gen-1") -> None:
    await svc.chat("k", replace(request("m", fallback=("m2",)), generation_id=gen), None)


async def _stream(svc: ChatService, gen: str = "gen-1") -> None:
    async for _ in svc.stream("k", replace(request("m", fallback=("m2",)), generation_id=gen),
                              None):
        pass


async def _embed(svc: ChatService, gen: str = "gen-e1") -> None:
    await svc.embed("k", replace(EMBED, generation_id=gen), None)


async def _windows_settled(rig: Rig, key: ApiKey, gen: str, model_id: str) -> bool:
    """No upper bound is left held in the models' windows: the model that would serve counts
    what its generation's record says it used (nothing when none was recorded), the fallback
    counts nothing (a fault is no provider error: there is no failover to it)."""
    record = await rig.stack.ledger.get(gen)
    used = record.prompt_tokens + record.completion_tokens if record is not None else 0
    fallback = await rig.tokens(key, "m2", FIXED) if model_id == "m" else (0, 0)
    return await rig.tokens(key, model_id, FIXED) in ((0, 0), (used, used)) \
        and fallback == (0, 0)


@pytest.mark.parametrize("kind", ["raise", "cancel"])
@pytest.mark.parametrize("call", [_chat, _stream, _embed], ids=["unary", "stream", "embeddings"])
async def test_a_fault_at_any_await_point_gives_everything_back(
        rig: Rig, kind: str, call: Callable[[ChatService, str], Awaitable[None]]) -> None:
    account = await rig.account("10")
    points = 0
    model_id = "e" if call is _embed else "m"
    for at in range(1, 200):
        key = rig.key(account)
        faults = Faults(at, kind)
        gen = f"gen-{uuid.uuid4().hex}"
        svc = service(rig, key, faults=faults, billing=rig.billing(faults, wall=lambda: FIXED))
        task = asyncio.ensure_future(call(svc, gen))
        await asyncio.wait([task])
        assert await rig.held(key) == (0, Decimal(0)), f"fault {kind} at await point {at}"
        assert await _windows_settled(rig, key, gen, model_id), f"windows: {kind} at {at}"
        if not faults.fired:  # the request completed before the at-th await point
            assert task.exception() is None
            record = await rig.stack.ledger.get(gen)
            assert record is not None  # and its model's windows keep what it used
            used = record.prompt_tokens + record.completion_tokens
            assert used > 0 and await rig.tokens(key, model_id, FIXED) == (used, used)
            points = faults.seen
            break
        assert task.cancelled() if kind == "cancel" else isinstance(task.exception(), RuntimeError)
    assert points > 5  # the request path was really walked


async def test_a_client_gone_after_a_one_read_answer_is_charged_once_and_released(
        rig: Rig) -> None:
    """An answer that came in one read goes out before the stream is concluded; a client that
    hangs up right after it is charged once for it, recorded, and its hold given back."""
    account = await rig.account("10")
    key = rig.key(account)
    one_read = FakeProvider("a", batches=[StreamBatch(
        (Delta(role="assistant", content="hello there"), Delta(finish_reason="stop")),
        TokenCounts(prompt=5, completion=3), done=True)])
    svc = service(rig, key, providers=(one_read,))
    events = svc.stream("k", replace(request("m"), generation_id="gen-gone"), None)
    first = await anext(events)
    assert first.end is None and [d.content for d in first.deltas] == ["hello there", None]
    await events.aclose()  # the client hangs up before the end event
    record = await rig.stack.ledger.get("gen-gone")
    assert record is not None
    assert (record.status, record.prompt_tokens, record.completion_tokens, record.key_id) == (
        "cancelled", 5, 3, key.id)
    assert record.cost > 0
    assert await rig.held(key) == (0, Decimal(0))
    assert await rig.charged(account, Decimal(10) - record.cost) == Decimal(10) - record.cost


async def test_a_client_gone_after_a_first_reads_head_is_charged_once_and_released(
        rig: Rig) -> None:
    """The first chunk of a first read goes out alone (StreamBatch.head); a client that hangs up
    right after it is charged once for what was relayed (estimated: the usage was in the rest
    of the read, never taken), recorded, and its hold given back."""
    account = await rig.account("10")
    key = rig.key(account)
    head_first = FakeProvider("a", batches=[
        StreamBatch((Delta(role="assistant", content="hello"),), head=True),
        StreamBatch((Delta(content=" there"), Delta(finish_reason="stop")),
                    TokenCounts(prompt=5, completion=3), done=True)])
    svc = service(rig, key, providers=(head_first,))
    events = svc.stream("k", replace(request("m"), generation_id="gen-head"), None)
    first = await anext(events)
    assert first.end is None and [d.content for d in first.deltas] == ["hello"]
    await events.aclose()  # the client hangs up before the rest of the read
    record = await rig.stack.ledger.get("gen-head")
    assert record is not None
    assert (record.status, record.key_id, record.counts_native) == ("cancelled", key.id, False)
    assert record.prompt_tokens > 0 and record.completion_tokens > 0 and record.cost > 0
    assert await rig.held(key) == (0, Decimal(0))
    assert await rig.charged(account, Decimal(10) - record.cost) == Decimal(10) - record.cost


# ---- every candidate obeys the key ---------------------------------------------------------

async def test_allowed_models_hold_for_the_fallbacks(rig: Rig) -> None:
    key = rig.key(await rig.account("10"), allowed=("m",))
    failing = FakeProvider("a", error=UpstreamServerError("a answered 500", provider="a",
                                                          status=500))
    fallback = FakeProvider("b")
    svc = service(rig, key, providers=(failing, fallback))
    with pytest.raises(Forbidden, match="'m2'"):
        await svc.chat("k", request("m", fallback=("m2",)), None)
    with pytest.raises(Forbidden, match="'m2'"):
        await _stream(svc)
    with pytest.raises(Forbidden, match="'e'"):
        await svc.embed("k", EMBED, None)
    assert (failing.calls, fallback.calls) == ([], [])
    assert await rig.held(key) == (0, Decimal(0))
    both = rig.key(key.account_id, allowed=("m", "m2"))
    result = await service(rig, both, providers=(failing, fallback)).chat(
        "k", request("m", fallback=("m2",)), None)
    assert result.served.model == "m2"


async def test_a_second_cancellation_cannot_stop_the_release(rig: Rig) -> None:
    """A shutdown cancels twice: the release goes on in its own task, and drain() waits."""
    key = rig.key(await rig.account("10"))
    entered, abandoned = asyncio.Event(), asyncio.Event()

    class StuckLedger:
        def __init__(self, inner: UsageLedger) -> None:
            self.inner = inner

        async def record(self, record: GenerationRecord) -> None:
            entered.set()
            try:
                await asyncio.Event().wait()  # until cancelled
            finally:
                abandoned.set()

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

    billing = rig.billing(ledger=StuckLedger(rig.stack.ledger))
    svc = service(rig, key, billing=billing)
    task = asyncio.ensure_future(_chat(svc))
    await entered.wait()
    task.cancel()  # the first: the record is abandoned, the release starts in a task of its own
    await abandoned.wait()  # the request now waits on that task
    task.cancel()  # the second: the request goes at once
    await asyncio.wait([task])
    assert task.cancelled()
    await billing.drain()
    assert await rig.held(key) == (0, Decimal(0))


async def test_the_in_process_meter_gives_a_generations_slot_back_once(
        request: pytest.FixtureRequest, tmp_path: Path) -> None:
    async with running_rig("embedded", request, tmp_path) as rig:
        key = rig.key(await rig.account("1"))
        meter = rig.stack.meter
        _, first, _ = await meter.admit(key, "gen-a", Decimal("0.1"), partial_from=None, now=0.0)
        await meter.admit(key, "gen-b", Decimal("0.1"), partial_from=None, now=0.0)
        # As Billing.conclude does: the record first, which carries the charge in the embedded
        # mode (SqliteUsageLedger(charge=True)), then the meter's conclusion.
        await rig.stack.ledger.record(generation("gen-a", key=key.id, account=key.account_id,
                                                 cost="0.05"))
        for _ in range(2):  # an interrupted conclusion runs again
            await meter.conclude(key, first, Decimal("0.05"), 10, 0.0)
        assert await rig.held(key) == (1, Decimal("0.1"))  # gen-b's slot and money stay held
        assert await rig.balance(key.account_id) == Decimal("0.95")
