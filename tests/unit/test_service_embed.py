"""ChatService.embed: usage estimated or reported (an impossible report charged at the
estimate), failover past an open breaker, and refusals. The service is built as in
test_service.py."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.unit.builders import catalog, deployment, model
from tests.unit.fakes import VECTORS, FakeEmbedder
from tests.unit.test_service import (  # fake_time: the autouse fixture that fixes the clock
    KEY,
    NOW,
    _server_error,
    _service,
    fake_time,  # noqa: F401
)
from xrouter_router.domain.errors import NoProvider, Unauthenticated
from xrouter_router.domain.stats import InMemoryStats
from xrouter_router.domain.types import EmbeddingRequest, Embeddings, Served, TokenCounts, Usage

EMBED = catalog(model("e", deployment("e", "a", caps=("embeddings",), prompt="100"),
                      deployment("e", "b", caps=("embeddings",), prompt="50")),
                model("m", deployment("m", "a")))
TWO_INPUTS = EmbeddingRequest(model="e", inputs=("one", "two"))


async def test_embed_estimates_usage_from_the_inputs_and_prices_it() -> None:
    served, result, usage = await _service(FakeEmbedder("a"), cat=EMBED).embed(KEY, TWO_INPUTS, None)
    assert served == Served("e", "a", "e@a", NOW)
    assert result == VECTORS
    # cl100k: 1 + 1 tokens at 100 per million
    assert usage == Usage(TokenCounts(prompt=2, estimated=True), Decimal("0.00020000"))


async def test_embed_prices_the_usage_the_provider_reported() -> None:
    reported = Embeddings(VECTORS.vectors, TokenCounts(prompt=300))
    service = _service(FakeEmbedder("a", embeddings=reported), cat=EMBED)
    _served, _result, usage = await service.embed(KEY, TWO_INPUTS, None)
    assert usage == Usage(TokenCounts(prompt=300), Decimal("0.03000000"))


@pytest.mark.parametrize("reported", [TokenCounts(prompt=-5), TokenCounts(prompt=2, completion=1),
                                      TokenCounts(prompt=10_000)])
async def test_embed_charges_the_estimate_when_the_provider_reports_what_cannot_be(
        reported: TokenCounts) -> None:
    embedder = FakeEmbedder("a", embeddings=Embeddings(VECTORS.vectors, reported))
    _served, _result, usage = await _service(embedder, cat=EMBED).embed(KEY, TWO_INPUTS, None)
    assert usage == Usage(TokenCounts(prompt=2, estimated=True), Decimal("0.00020000"))


async def test_embed_fails_over_and_skips_an_open_breaker() -> None:
    stats = InMemoryStats()
    a = FakeEmbedder("a", error=_server_error("a"))
    b = FakeEmbedder("b")
    service = _service(a, b, cat=EMBED, stats=stats)
    for _ in range(3):
        served, _result, _usage = await service.embed(KEY, TWO_INPUTS, None)
        assert served.provider == "b"
    assert a.calls == ["e@a", "e@a", "e@a"]
    await service.embed(KEY, TWO_INPUTS, None)
    assert len(a.calls) == 3
    assert len(b.calls) == 4


async def test_embed_refuses_a_bad_key_and_a_model_without_embeddings() -> None:
    a = FakeEmbedder("a")
    with pytest.raises(Unauthenticated):
        await _service(a, cat=EMBED).embed("sk-wrong", TWO_INPUTS, None)
    with pytest.raises(NoProvider) as info:
        await _service(a, cat=EMBED).embed(KEY, EmbeddingRequest(model="m", inputs=("x",)), None)
    assert info.value.message == "Model 'm' has no embeddings deployment"
    assert a.calls == []
