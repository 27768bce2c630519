"""Pricing in exact decimals, local token estimates, and joining streamed deltas."""

from __future__ import annotations

from decimal import Decimal

import pytest

from xrouter_router.domain.accounting import (
    COST_QUANTUM,
    StreamAccumulator,
    price,
    usage,
    utf8_bound,
)
from xrouter_router.domain.catalog import Price
from xrouter_router.domain.types import Delta, Message, TokenCounts, ToolCall


def test_price_is_exact_in_decimal() -> None:
    cost = price(TokenCounts(prompt=1234, completion=56), Price(Decimal("150.5"), Decimal("300")))
    # (1234 * 150.5 + 56 * 300) / 1e6 = (185717 + 16800) / 1e6
    assert format(cost, "f") == "0.20251700"


def test_price_has_eight_decimal_places_even_when_zero() -> None:
    assert format(price(TokenCounts(), Price(Decimal(1), Decimal(1))), "f") == "0.00000000"
    assert str(COST_QUANTUM) == "1E-8"


@pytest.mark.parametrize(("prompt_tokens", "rate", "expected"), [
    (1, "0.005", "0.00000000"),   # 5e-9 is a half: rounds to the even neighbour, 0
    (3, "0.005", "0.00000002"),   # 1.5e-8 rounds half to even: 2e-8
    (1, "0.015", "0.00000002"),   # 1.5e-8 again
    (1, "0.0149", "0.00000001"),  # 1.49e-8 rounds down
    (7, "0.01", "0.00000007"),
])
def test_price_quantizes_to_1e8_half_even(prompt_tokens: int, rate: str, expected: str) -> None:
    cost = price(TokenCounts(prompt=prompt_tokens), Price(Decimal(rate)))
    assert format(cost, "f") == expected


def test_price_ignores_cached_and_reasoning_counts() -> None:
    tokens = TokenCounts(prompt=1_000_000, completion=1_000_000, cached=500, reasoning=900)
    assert format(price(tokens, Price(Decimal("2"), Decimal("3"))), "f") == "5.00000000"


# 1000 prompt tokens: 500 plain, 300 read from the cache, 200 written to it; 500 completion
# tokens: 400 plain, 100 of reasoning.
BUCKETS = TokenCounts(prompt=1000, completion=500, cached=300, cache_write=200, reasoning=100)
SPLIT = Price(prompt=Decimal(2), completion=Decimal(8), cache_read=Decimal("0.5"),
              cache_write=Decimal("2.5"), reasoning=Decimal(10))


def test_each_bucket_costs_its_own_price() -> None:
    # (500*2 + 300*0.5 + 200*2.5) + (400*8 + 100*10) = 1650 + 4200 per million
    assert format(price(BUCKETS, SPLIT), "f") == "0.00585000"


def test_unset_bucket_prices_are_the_prompt_and_completion_prices() -> None:
    plain = Price(Decimal(2), Decimal(8))
    assert (plain.cache_read_rate, plain.cache_write_rate, plain.reasoning_rate) == (
        Decimal(2), Decimal(2), Decimal(8))
    # (1000*2 + 500*8) per million: as if the buckets were not there
    assert format(price(BUCKETS, plain), "f") == "0.00600000"


def test_usage_carries_the_prompt_share_of_the_cost() -> None:
    priced = usage(BUCKETS, SPLIT)
    assert (priced.cost, priced.prompt_cost) == (Decimal("0.00585000"), Decimal("0.00165000"))
    assert priced.capped(Decimal("0.001")).prompt_share == Decimal("0.001")


def test_the_ceilings_are_the_dearest_bucket_of_each_side() -> None:
    assert (SPLIT.prompt_ceiling, SPLIT.completion_ceiling) == (Decimal("2.5"), Decimal(10))
    cheap_cache = Price(Decimal(2), Decimal(8), cache_read=Decimal(0), reasoning=Decimal(1))
    assert (cheap_cache.prompt_ceiling, cheap_cache.completion_ceiling) == (Decimal(2), Decimal(8))


@pytest.mark.parametrize(("text", "size"), [
    ("", 0), ("abc", 3), ("ёж", 4), ("你好", 6), ("😀", 4), ("a\ud800", 4),  # a lone surrogate
])
def test_utf8_bound_is_the_utf8_length(text: str, size: int) -> None:
    assert utf8_bound(text) == size


def test_accumulator_joins_content_per_choice() -> None:
    acc = StreamAccumulator()
    for d in (Delta(index=0, role="assistant", content="Hel"), Delta(index=1, content="Bon"),
              Delta(index=0, content="lo"), Delta(index=1, content="jour"),
              Delta(index=0, content="", finish_reason="stop"), Delta(index=1, finish_reason="length")):
        acc.add(d)
    assert acc.message(0) == Message(role="assistant", content="Hello")
    assert acc.message(1) == Message(role="assistant", content="Bonjour")
    assert acc.finish_reason == {0: "stop", 1: "length"}
    assert acc.completion_text() == "HelloBonjour"


def test_accumulator_joins_tool_call_fragments_by_index() -> None:
    acc = StreamAccumulator()
    acc.add(Delta(role="assistant", tool_calls=(
        ToolCall(index=0, id="call_a", name="get_weather", arguments=""),)))
    acc.add(Delta(tool_calls=(ToolCall(index=0, id="", name="", arguments='{"city"'),)))
    acc.add(Delta(tool_calls=(ToolCall(index=1, id="call_b", name="get_time", arguments='{"tz":'),)))
    acc.add(Delta(tool_calls=(ToolCall(index=0, id="", name="", arguments=': "Oslo"}'),
                              ToolCall(index=1, id="", name="", arguments=' "UTC"}'))))
    acc.add(Delta(finish_reason="tool_calls"))
    assert acc.message() == Message(role="assistant", content=None, tool_calls=(
        ToolCall(index=0, id="call_a", name="get_weather", arguments='{"city": "Oslo"}'),
        ToolCall(index=1, id="call_b", name="get_time", arguments='{"tz": "UTC"}'),
    ))
    assert acc.completion_text() == '{"city": "Oslo"}{"tz": "UTC"}'
    assert acc.finish_reason == {0: "tool_calls"}


def test_accumulator_keeps_content_beside_tool_calls() -> None:
    acc = StreamAccumulator()
    acc.add(Delta(content="Let me check. "))
    acc.add(Delta(tool_calls=(ToolCall(index=0, id="c", name="f", arguments="{}"),)))
    assert acc.message() == Message(role="assistant", content="Let me check. ",
                                    tool_calls=(ToolCall(0, "c", "f", "{}"),))


def test_accumulator_with_nothing_gives_an_empty_message() -> None:
    acc = StreamAccumulator()
    assert acc.message() == Message(role="assistant", content="")
    assert acc.message(3) == Message(role="assistant", content="")
    assert acc.completion_text() == ""
    assert acc.finish_reason == {}
