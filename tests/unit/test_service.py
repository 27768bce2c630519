"""ChatService use cases: authenticate, plan, fail over, account; stream event framing."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from tests.unit.builders import catalog, deployment, model, request
from tests.unit.fakes import FakeProvider
from xrouter_router.domain.auth import MasterKeyAuthenticator
from xrouter_router.domain.errors import (
    ModelNotFound,
    Unauthenticated,
    UpstreamServerError,
    UpstreamTimeout,
)
from xrouter_router.domain.failover import Failover, FailoverPolicy
from xrouter_router.domain.health import ProviderHealth
from xrouter_router.domain.service import ChatService, StreamEnd, StreamEvent
from xrouter_router.domain.types import (
    Completion,
    Delta,
    Message,
    Served,
    StreamBatch,
    TokenCounts,
    ToolCall,
    Usage,
)

KEY = "sk-master-key"
NOW = 1_764_115_200
CATALOG = catalog(model(
    "m",
    deployment("m", "a", prompt="150.5", completion="300"),
    deployment("m", "b", prompt="1", completion="2"),
))
SERVED_A = Served("m", "a", "m@a", NOW)
SERVED_B = Served("m", "b", "m@b", NOW)
REPORTED = TokenCounts(prompt=1234, completion=56, cached=7, reasoning=3)
# 1234 * 150.5 / 1e6 + 56 * 300 / 1e6
REPORTED_COST = Decimal("0.2025170")


@pytest.fixture(autouse=True)
def _frozen_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "time", lambda: NOW + 0.75)


def _service(*providers: FakeProvider, idle: float = 30.0) -> ChatService:
    failover = Failover({p.name: p for p in providers}, FailoverPolicy(60.0, 5),
                        ProviderHealth([p.name for p in providers]))
    return ChatService(CATALOG, failover, MasterKeyAuthenticator(KEY), idle_timeout=idle)


async def _events(service: ChatService, text: str = "hello") -> list[StreamEvent]:
    return [ev async for ev in service.stream(KEY, request("m", text=text), None)]


# ---- chat --------------------------------------------------------------------------------

async def test_chat_prices_the_usage_the_provider_reported() -> None:
    answer = Completion(Message(role="assistant", content="hi"), "stop", REPORTED, "fp_1")
    result = await _service(FakeProvider("a", completion=answer)).chat(KEY, request("m"), None)
    assert result.served == SERVED_A
    assert result.completion == answer
    assert result.usage == Usage(REPORTED, REPORTED_COST)


async def test_chat_estimates_usage_when_the_provider_reports_none() -> None:
    answer = Completion(Message(role="assistant", content="hello there"), "stop")
    result = await _service(FakeProvider("a", completion=answer)).chat(
        KEY, request("m", text="hello"), None)
    # prompt: 4 framing + ceil(5 / 4); completion: ceil(11 / 4)
    tokens = TokenCounts(prompt=6, completion=3, estimated=True)
    assert result.usage == Usage(tokens, Decimal("0.00180300"))


async def test_chat_is_served_by_the_deployment_failover_reached() -> None:
    a = FakeProvider("a", error=UpstreamServerError("a answered HTTP 500", provider="a", status=500))
    answer = Completion(Message(role="assistant", content="ok"), "stop", TokenCounts(10, 20))
    result = await _service(a, FakeProvider("b", completion=answer)).chat(KEY, request("m"), None)
    assert result.served == SERVED_B
    # priced at b's rates: 10 * 1 / 1e6 + 20 * 2 / 1e6
    assert result.usage.cost == Decimal("0.00005000")


@pytest.mark.parametrize(("key", "message"), [
    ("", "Missing API key: send 'Authorization: Bearer <key>'"),
    ("sk-wrong", "Invalid API key"),
])
async def test_chat_refuses_a_bad_key_before_calling_a_provider(key: str, message: str) -> None:
    a = FakeProvider("a")
    with pytest.raises(Unauthenticated) as info:
        await _service(a).chat(key, request("m"), None)
    assert info.value.message == message
    assert a.calls == []


async def test_chat_for_an_unknown_model_calls_no_provider() -> None:
    a = FakeProvider("a")
    with pytest.raises(ModelNotFound):
        await _service(a).chat(KEY, request("nope"), None)
    assert a.calls == []


# ---- stream ------------------------------------------------------------------------------

HEL = Delta(role="assistant", content="Hel")
LO = Delta(content="lo")
STOP = Delta(finish_reason="stop")


async def test_stream_events_served_first_then_deltas_then_end_with_usage_and_cost() -> None:
    a = FakeProvider("a", batches=[
        StreamBatch((HEL,)), StreamBatch((LO,)), StreamBatch((STOP,), REPORTED, done=True)])
    assert await _events(_service(a)) == [
        StreamEvent(deltas=(HEL,), served=SERVED_A),
        StreamEvent(deltas=(LO,)),
        StreamEvent(deltas=(STOP,), end=StreamEnd(Usage(REPORTED, REPORTED_COST))),
    ]
    assert a.streams_closed == 1


async def test_a_first_batch_that_is_also_the_last_is_one_event_with_served_and_end() -> None:
    done = StreamBatch((Delta(role="assistant", content="Hello", finish_reason="stop"),),
                       TokenCounts(3, 1), done=True)
    events = await _events(_service(FakeProvider("a", batches=[done])))
    assert events == [StreamEvent(deltas=done.deltas, served=SERVED_A,
                                  end=StreamEnd(Usage(TokenCounts(3, 1), Decimal("0.00075150"))))]


async def test_usage_arriving_in_a_batch_without_deltas_is_kept_for_the_end() -> None:
    a = FakeProvider("a", batches=[StreamBatch((HEL,)), StreamBatch((), TokenCounts(2, 2))])
    events = await _events(_service(a))
    assert events == [
        StreamEvent(deltas=(HEL,), served=SERVED_A),
        StreamEvent(end=StreamEnd(Usage(TokenCounts(2, 2), Decimal("0.00090100")))),
    ]


async def test_stream_usage_is_estimated_from_the_joined_text_when_none_is_reported() -> None:
    call = ToolCall(index=0, id="call_1", name="f", arguments='{"x": 1}')
    a = FakeProvider("a", batches=[StreamBatch((HEL,)), StreamBatch((LO, Delta(tool_calls=(call,))))])
    events = await _events(_service(a), text="abcdefghi")
    # prompt: 4 + ceil(9 / 4); completion: ceil(len("Hello" + '{"x": 1}') / 4) = ceil(13 / 4)
    tokens = TokenCounts(prompt=7, completion=4, estimated=True)
    assert events[-1] == StreamEvent(end=StreamEnd(Usage(tokens, Decimal("0.00225350"))))


async def test_an_upstream_error_mid_stream_ends_in_band_with_usage() -> None:
    boom = UpstreamServerError("a failed mid-stream: overloaded", provider="a")
    a = FakeProvider("a", batches=[StreamBatch((HEL,)), StreamBatch((LO,))], stream_error=boom)
    events = await _events(_service(a))
    tokens = TokenCounts(prompt=6, completion=2, estimated=True)
    assert events == [
        StreamEvent(deltas=(HEL,), served=SERVED_A),
        StreamEvent(deltas=(LO,)),
        StreamEvent(end=StreamEnd(Usage(tokens, Decimal("0.00150300")), error=boom)),
    ]


async def test_a_stream_idle_past_the_idle_timeout_ends_with_a_timeout_error() -> None:
    a = FakeProvider("a", batches=[StreamBatch((HEL,)), StreamBatch((LO,))], gap=5.0)
    events = await _events(_service(a, idle=0.05))
    assert len(events) == 2
    end = events[1].end
    assert end is not None
    assert isinstance(end.error, UpstreamTimeout)
    assert end.error.message == "a sent nothing for 0.05s"
    assert end.error.metadata == {"provider_name": "a", "reason": "timeout"}
    assert end.usage.tokens == TokenCounts(prompt=6, completion=1, estimated=True)
    assert a.streams_closed == 1


async def test_stopping_the_stream_early_closes_the_provider_stream() -> None:
    a = FakeProvider("a", batches=[StreamBatch((HEL,)), StreamBatch((LO,)), StreamBatch((STOP,))])
    events = _service(a).stream(KEY, request("m"), None)
    assert await anext(events) == StreamEvent(deltas=(HEL,), served=SERVED_A)
    assert a.streams_closed == 0
    await events.aclose()
    assert a.streams_closed == 1


async def test_stream_refuses_a_bad_key_before_the_first_event() -> None:
    a = FakeProvider("a", batches=[StreamBatch((HEL,))])
    with pytest.raises(Unauthenticated):
        await anext(_service(a).stream("nope", request("m"), None))
    assert a.calls == []
