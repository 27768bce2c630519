"""The models' token limits in both modes (embedded: the in-process windows; cluster: the
credit script on the real Redis Cluster, with PostgreSQL HA), through the ChatService and the
admission port: a request's upper bound is held in its key's windows of each candidate model,
settled to the real tokens, given back on every failure; a full model is skipped for the
fallback, and none left is a 429 with Retry-After; tokens_per_request is a 400 before any
provider call. The admissions run on a fixed clock, so no test depends on the minute it runs in
(test_model_limits_http.py runs on the real clock, clear of a minute's end)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path

import pytest

from tests.infra.fixtures import redis_cluster  # noqa: F401 - the session fixture
from tests.infra.pg_fixtures import postgres_ha  # noqa: F401 - the session fixture
from tests.integration.admission_support import Rig, running_rig, service
from tests.unit.builders import catalog, deployment, model, request
from tests.unit.fakes import HELLO, FakeProvider
from xrouter_router.domain.catalog import Catalog, Deployment, Model, ModelLimits
from xrouter_router.domain.errors import (
    AllAttemptsFailed,
    InvalidRequest,
    RateLimited,
    UpstreamServerError,
)
from xrouter_router.domain.keys import MASTER, ApiKey, Limits
from xrouter_router.domain.service import ChatService
from xrouter_router.domain.types import ChatRequest, Completion, TokenCounts

NOW = 1_699_999_995.0  # 15 s into a minute that ends at 1_700_000_040; the day at 1_700_006_400


def _limited(model_id: str, provider: str, **limits: int) -> Model:
    return replace(model(model_id, deployment(model_id, provider, prompt="100",
                                              completion="200")),
                   limits=ModelLimits(**limits))


# m and d are served by a, m2 by b, t by a. "hello" counts as at most 9 prompt tokens (5 bytes,
# 4 for the message), so max_tokens N asks for N + 9.
LIMITED: Catalog = catalog(
    _limited("m", "a", tokens_per_minute=1000),
    _limited("m2", "b", tokens_per_minute=1000),
    _limited("d", "a", tokens_per_day=600),
    _limited("t", "a", tokens_per_request=100),
)


def _answer(total: int) -> Completion:
    """An answer whose usage (9 prompt tokens and the rest completion) makes `total`."""
    return Completion(HELLO.message, "stop", TokenCounts(prompt=9, completion=total - 9))


class Gated(FakeProvider):
    """Answers once the gate opens; says each time a call has arrived; keeps the requests."""

    def __init__(self, name: str, total: int = 50,
                 error: UpstreamServerError | None = None) -> None:
        super().__init__(name, completion=_answer(total), error=error)
        self.gate = asyncio.Event()
        self.gate.set()
        self.arrived: asyncio.Queue[None] = asyncio.Queue()
        self.requests: list[ChatRequest] = []

    async def chat(self, request: ChatRequest, deployment: Deployment) -> Completion:
        self.requests.append(request)
        self.arrived.put_nowait(None)
        await self.gate.wait()
        return await super().chat(request, deployment)


@dataclass
class Setup:
    rig: Rig
    account: str
    a: Gated
    b: Gated

    def service(self, key: ApiKey) -> ChatService:
        return service(self.rig, key, providers=(self.a, self.b), models=LIMITED,
                       billing=self.rig.billing(wall=lambda: NOW))

    async def chat(self, key: ApiKey, model_id: str, max_tokens: int | None = None,
                   fallback: tuple[str, ...] = ()) -> str:
        """The model that served."""
        asked = request(model_id, fallback=fallback)
        asked = replace(asked, generation_id=f"gen-{uuid.uuid4().hex}",
                        sampling=replace(asked.sampling, max_tokens=max_tokens))
        return (await self.service(key).chat("k", asked, None)).served.model


@pytest.fixture(params=["embedded", "cluster"])
async def setup(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Setup]:
    async with running_rig(request.param, request, tmp_path) as rig:
        yield Setup(rig, await rig.account("10"), Gated("a"), Gated("b"))


async def test_the_bound_is_held_then_settled_to_the_real_use_and_past_it_is_a_429(
        setup: Setup) -> None:
    rig, a = setup.rig, setup.a
    key = rig.key(setup.account)
    a.gate.clear()
    first = asyncio.ensure_future(setup.chat(key, "m", 491))  # asks 500
    await a.arrived.get()
    assert await rig.tokens(key, "m", NOW) == (500, 0)  # the minute's window only
    second = asyncio.ensure_future(setup.chat(key, "m", 491))  # 1000: exactly the limit
    await a.arrived.get()
    with pytest.raises(RateLimited) as exc:
        await setup.chat(key, "m", 491)
    assert (exc.value.message, exc.value.retry_after, exc.value.metadata) == (
        "Rate limit exceeded: 1000 tokens per minute of model m", 45.0,
        {"limit": 1000, "remaining": 0, "reset": 1_700_000_040, "model": "m", "requested": 500})
    assert len(a.requests) == 2  # the refused one reached no provider
    a.gate.set()
    assert list(await asyncio.gather(first, second)) == ["m", "m"]
    assert await rig.tokens(key, "m", NOW) == (100, 0)  # 50 each, as the provider reported
    assert await rig.held(key) == (0, Decimal(0))
    assert await setup.chat(key, "m", 891) == "m"  # 100 used + 900 asked fit
    assert await rig.tokens(key, "m", NOW + 60) == (0, 0)  # the next minute starts afresh


async def test_the_day_window_refuses_until_the_day_ends(setup: Setup) -> None:
    key = setup.rig.key(setup.account)
    assert await setup.chat(key, "d", 551) == "d"  # asks 560, uses 50
    assert await setup.rig.tokens(key, "d", NOW) == (0, 50)
    with pytest.raises(RateLimited) as exc:  # 50 + 560 > 600
        await setup.chat(key, "d", 551)
    assert (exc.value.message, exc.value.retry_after, exc.value.metadata["remaining"]) == (
        "Rate limit exceeded: 600 tokens per day of model d", 6405.0, 550)


async def test_keys_and_models_have_windows_of_their_own(setup: Setup) -> None:
    rig = setup.rig
    setup.a = Gated("a", total=1000)  # uses all of m's minute at once
    exhausted, other = rig.key(setup.account), rig.key(setup.account)
    assert await setup.chat(exhausted, "m", 991) == "m"
    with pytest.raises(RateLimited, match="1000 tokens per minute of model m"):
        await setup.chat(exhausted, "m", 10)
    assert await setup.chat(other, "m", 10) == "m"  # another key of the same account
    assert await setup.chat(exhausted, "m2", 10) == "m2"  # another model
    # A full model is skipped for the fallback: no provider call, no refusal.
    calls = len(setup.a.requests)
    assert await setup.chat(exhausted, "m", 10, fallback=("m2",)) == "m2"
    assert len(setup.a.requests) == calls
    assert [await rig.tokens(exhausted, m, NOW) for m in ("m", "m2")] == [(1000, 0), (100, 0)]


async def test_a_key_without_limits_of_its_own_is_held_to_the_models(setup: Setup) -> None:
    setup.a = Gated("a", total=1000)
    key = replace(setup.rig.key(setup.account), limits=Limits())
    assert await setup.chat(key, "m", 991) == "m"
    with pytest.raises(RateLimited, match="1000 tokens per minute of model m"):
        await setup.chat(key, "m", 10)
    assert await setup.rig.tokens(key, "m", NOW) == (1000, 0)


async def test_a_fallback_that_did_not_serve_gives_its_hold_back(setup: Setup) -> None:
    key = setup.rig.key(setup.account)
    setup.a.gate.clear()
    running = asyncio.ensure_future(setup.chat(key, "m", 491, fallback=("m2",)))
    await setup.a.arrived.get()
    assert [await setup.rig.tokens(key, m, NOW) for m in ("m", "m2")] == [(500, 0), (500, 0)]
    setup.a.gate.set()
    assert await running == "m"
    assert [await setup.rig.tokens(key, m, NOW) for m in ("m", "m2")] == [(50, 0), (0, 0)]


async def test_a_provider_failure_or_a_cancellation_gives_the_hold_back(setup: Setup) -> None:
    rig = setup.rig
    key = rig.key(setup.account)
    setup.a.gate.clear()
    running = asyncio.ensure_future(setup.chat(key, "m", 491))
    await setup.a.arrived.get()
    running.cancel()  # a client that hung up, a gRPC cancellation
    await asyncio.wait([running])
    assert running.cancelled()
    assert await rig.tokens(key, "m", NOW) == (0, 0)
    setup.a = Gated("a", error=UpstreamServerError("a answered 500", provider="a", status=500))
    with pytest.raises(AllAttemptsFailed):
        await setup.chat(key, "m", 491)
    assert await rig.tokens(key, "m", NOW) == (0, 0)
    assert await rig.held(key) == (0, Decimal(0))


async def test_tokens_per_request_is_a_400_before_any_provider_call(setup: Setup) -> None:
    key = setup.rig.key(setup.account)
    with pytest.raises(InvalidRequest) as exc:
        await setup.chat(key, "t", 92)  # 9 + 92 > 100
    assert (exc.value.param, exc.value.metadata["limit"], exc.value.metadata["model"]) == (
        "max_tokens", "tokens_per_request", "t")
    assert setup.a.requests == []
    assert await setup.rig.held(key) == (0, Decimal(0))
    # Without max_tokens the completion gets what the limit leaves.
    assert await setup.chat(key, "t") == "t"
    assert setup.a.requests[0].sampling.max_tokens == 91


async def test_the_master_key_is_not_counted_but_a_request_must_fit(setup: Setup) -> None:
    for _ in range(2):  # 2 x 1000 asked: past the window, were it counted
        assert await setup.chat(MASTER, "m", 991) == "m"
    assert await setup.rig.tokens(MASTER, "m", NOW) == (0, 0)
    with pytest.raises(InvalidRequest, match="tokens_per_request of model 't'"):
        await setup.chat(MASTER, "t", 92)
