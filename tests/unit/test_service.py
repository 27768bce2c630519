"""ChatService use cases: authenticate, plan, fail over, account; the explained route; stream
event framing; statistics fed back into routing; embeddings."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import pytest

from tests.unit.builders import catalog, deployment, model, request
from tests.unit.fakes import Clock, FakeProvider
from xrouter_router.domain import service as service_module
from xrouter_router.domain.auth import MasterKeyAuthenticator
from xrouter_router.domain.catalog import Catalog
from xrouter_router.domain.errors import (
    Attempt,
    ModelNotFound,
    NoProvider,
    Unauthenticated,
    UpstreamServerError,
    UpstreamTimeout,
)
from xrouter_router.domain.failover import Failover, FailoverPolicy
from xrouter_router.domain.observe import NullObserver
from xrouter_router.domain.ports import TokenCounter
from xrouter_router.domain.service import ChatService, StreamEnd, StreamEvent
from xrouter_router.domain.stats import InMemoryStats
from xrouter_router.domain.types import (
    Completion,
    Delta,
    Message,
    Served,
    StreamBatch,
    TokenCounts,
    Tool,
    ToolCall,
    Usage,
)
from xrouter_router.providers.tokenizer import Cl100kCounter

KEY = "sk-master-key"
NOW = 1_764_115_200
WALL = 5_000.0
# a is the cheaper deployment, so a fresh balancer tries it first (weights about 44 : 1).
CATALOG = catalog(model(
    "m",
    deployment("m", "a", prompt="150.5", completion="300"),
    deployment("m", "b", prompt="1000", completion="2000"),
))
SERVED_A = Served("m", "a", "m@a", NOW)
SERVED_B = Served("m", "b", "m@b", NOW)
A_OK = Attempt("m", "a", "m@a", "success", 0)
B_OK = Attempt("m", "b", "m@b", "success", 0)
# Plausible for a one-word prompt (at most ten times its byte bound, plus PROMPT_SLACK).
REPORTED = TokenCounts(prompt=234, completion=56, cached=7, reasoning=3)
# 234 * 150.5 / 1e6 + 56 * 300 / 1e6
REPORTED_COST = Decimal("0.0520170")


class FakeTime:
    """Stands in for the `time` module inside service.py: a fixed wall clock and a monotonic
    clock that reads `ticks` in turn (repeating the last)."""

    def __init__(self) -> None:
        self.ticks: list[float] = [0.0]

    def time(self) -> float:
        return NOW + 0.75

    def monotonic(self) -> float:
        return self.ticks.pop(0) if len(self.ticks) > 1 else self.ticks[0]


@pytest.fixture(autouse=True)
def fake_time(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr(service_module, "time", fake)
    return fake


TOKENIZER = Cl100kCounter()  # the bundled tokenizer the router estimates with


class WordCounter:
    """A TokenCounter that counts words."""

    async def count(self, texts: Sequence[str]) -> int:
        return sum(len(t.split()) for t in texts)


class ImplausibleSeen(NullObserver):
    """Records the implausible usage reports."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def implausible_usage(self, provider: str, reason: str) -> None:
        self.seen.append((provider, reason))


def _service(*providers: FakeProvider, idle: float = 30.0, cat: Catalog = CATALOG,
             stats: InMemoryStats | None = None, wall: Clock | None = None,
             counter: TokenCounter | None = None,
             observer: NullObserver | None = None) -> ChatService:
    store = InMemoryStats() if stats is None else stats
    wall = wall or Clock(WALL)
    failover = Failover({p.name: p for p in providers}, FailoverPolicy(60.0, 5), store,
                        clock=Clock(), wall=wall)
    return ChatService(cat, failover, MasterKeyAuthenticator(KEY), idle_timeout=idle,
                       stats=store, wall=wall, counter=counter or TOKENIZER, observer=observer)


def _server_error(name: str) -> UpstreamServerError:
    return UpstreamServerError(f"{name} answered HTTP 500", provider=name, status=500)


async def _events(service: ChatService, text: str = "hello") -> list[StreamEvent]:
    return [ev async for ev in service.stream(KEY, request("m", text=text), None)]


# ---- chat --------------------------------------------------------------------------------

async def test_chat_prices_the_usage_the_provider_reported() -> None:
    answer = Completion(Message(role="assistant", content="hi"), "stop", REPORTED, "fp_1")
    result = await _service(FakeProvider("a", completion=answer)).chat(KEY, request("m"), None)
    assert result.served == SERVED_A
    assert result.completion == answer
    assert result.usage == Usage(REPORTED, REPORTED_COST)
    assert result.attempts == (A_OK,)


async def test_chat_estimates_usage_when_the_provider_reports_none() -> None:
    answer = Completion(Message(role="assistant", content="hello there"), "stop")
    result = await _service(FakeProvider("a", completion=answer)).chat(
        KEY, request("m", text="hello"), None)
    # cl100k: prompt 4 framing + 1 ("hello"); completion 2 ("hello there")
    tokens = TokenCounts(prompt=5, completion=2, estimated=True)
    assert result.usage == Usage(tokens, Decimal("0.00135250"))


@pytest.mark.parametrize(("reported", "reason"), [
    (TokenCounts(prompt=5, completion=-50), "negative count"),
    (TokenCounts(prompt=5, completion=5000), "completion beyond the deployment's max_completion_tokens"),
    (TokenCounts(prompt=1_000_000, completion=2), "prompt beyond ten times its byte bound"),
])
async def test_counts_that_cannot_be_true_are_a_provider_error_charged_at_the_estimate(
        reported: TokenCounts, reason: str, caplog: pytest.LogCaptureFixture) -> None:
    answer = Completion(Message(role="assistant", content="hello there"), "stop", reported)
    seen = ImplausibleSeen()
    result = await _service(FakeProvider("a", completion=answer), observer=seen).chat(
        KEY, request("m", text="hello"), None)
    tokens = TokenCounts(prompt=5, completion=2, estimated=True)  # as if none were reported
    assert result.usage == Usage(tokens, Decimal("0.00135250"))
    assert seen.seen == [("a", reason)]
    assert [r.getMessage() for r in caplog.records if r.name == "xrouter.router.usage"] == [
        f"provider a reported implausible usage ({reason}): {reported}; charging the estimate"]


async def test_chat_estimates_with_the_token_counter_it_was_given() -> None:
    answer = Completion(Message(role="assistant", content="hello there"), "stop")
    service = _service(FakeProvider("a", completion=answer), counter=WordCounter())
    result = await service.chat(KEY, request("m", text="hello big world"), None)
    # prompt: 4 framing + 3 words; completion: 2 words; 7 * 150.5 / 1e6 + 2 * 300 / 1e6
    assert result.usage == Usage(TokenCounts(prompt=7, completion=2, estimated=True),
                                 Decimal("0.00165350"))


async def test_chat_is_served_by_the_deployment_failover_reached_and_lists_the_attempts() -> None:
    a = FakeProvider("a", error=_server_error("a"))
    answer = Completion(Message(role="assistant", content="ok"), "stop", TokenCounts(10, 20))
    result = await _service(a, FakeProvider("b", completion=answer)).chat(KEY, request("m"), None)
    assert result.served == SERVED_B
    # priced at b's rates: 10 * 1000 / 1e6 + 20 * 2000 / 1e6
    assert result.usage.cost == Decimal("0.05000000")
    assert result.attempts == (Attempt("m", "a", "m@a", "server_error", 0, "a answered HTTP 500",
                                       500), B_OK)


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


# ---- statistics feed routing -------------------------------------------------------------

async def test_chat_records_every_attempt_in_the_services_statistics() -> None:
    stats = InMemoryStats()
    service = _service(FakeProvider("a", error=_server_error("a")), FakeProvider("b"), stats=stats)
    await service.chat(KEY, request("m"), None)
    assert service.stats is stats
    recorded = await stats.all()
    assert sorted(recorded) == ["m@a", "m@b"]
    assert (recorded["m@a"].failures, recorded["m@a"].last_failure) == (1, WALL)
    assert (recorded["m@b"].failures, recorded["m@b"].latency_ms) == (0, 0.0)


async def test_a_deployment_that_just_failed_is_tried_last_until_the_recent_window_passes() -> None:
    wall = Clock(WALL)
    a, b = FakeProvider("a", error=_server_error("a")), FakeProvider("b")
    service = _service(a, b, wall=wall)
    assert [x.deployment for x in (await service.chat(KEY, request("m"), None)).attempts] == [
        "m@a", "m@b"]
    wall.now += 9.0
    assert (await service.chat(KEY, request("m"), None)).attempts == (B_OK,)
    wall.now += 1.0
    assert [x.deployment for x in (await service.chat(KEY, request("m"), None)).attempts] == [
        "m@a", "m@b"]
    assert a.calls == ["m@a", "m@a"]


async def test_an_open_breaker_keeps_requests_away_until_the_cool_down_passes() -> None:
    wall = Clock(WALL)
    a, b = FakeProvider("a", error=_server_error("a")), FakeProvider("b")
    service = _service(a, b, wall=wall)
    for _ in range(3):
        await service.chat(KEY, request("m"), None)
        wall.now += 10.0
    # a's breaker opened at the third failure, WALL + 20
    assert len(a.calls) == 3
    wall.now = WALL + 49.0
    assert (await service.chat(KEY, request("m"), None)).served == SERVED_B
    assert len(a.calls) == 3
    wall.now = WALL + 50.0
    await service.chat(KEY, request("m"), None)
    assert len(a.calls) == 4


# ---- explain -----------------------------------------------------------------------------

EVEN = catalog(model("m", deployment("m", "a", prompt="1", completion="1"),
                     deployment("m", "b", prompt="1", completion="1")))


async def test_explain_shows_the_route_the_next_request_takes_without_moving_the_balancer() -> None:
    service = _service(FakeProvider("a"), FakeProvider("b"), cat=EVEN)
    served = []
    for _ in range(4):
        first = await service.explain(KEY, request("m"))
        again = await service.explain(KEY, request("m"))
        assert first == again
        result = await service.chat(KEY, request("m"), None)
        assert result.served.deployment == first.candidates[0].deployment.id
        served.append(result.served.provider)
    assert served == ["a", "b", "a", "b"]


async def test_explain_scores_every_deployment() -> None:
    route = await _service(cat=EVEN).explain(KEY, request("m"))
    assert route.strategy == "balanced"
    assert [(s.deployment.id, s.rejected_by, s.score, s.health, s.position)
            for s in route.scored] == [("m@a", "", 250000000000.0, "healthy", 0),
                                       ("m@b", "", 250000000000.0, "healthy", 1)]


async def test_explain_of_a_request_nothing_can_serve_gives_the_reasons() -> None:
    tools = request("m", tools=(Tool(name="f"),))
    route = await _service().explain(KEY, tools)
    assert route.candidates == ()
    assert [(s.deployment.id, s.rejected_by) for s in route.scored] == [
        ("m@a", "does not support tools"), ("m@b", "does not support tools")]
    with pytest.raises(NoProvider):
        await _service().chat(KEY, tools, None)


async def test_explain_refuses_a_bad_key() -> None:
    with pytest.raises(Unauthenticated):
        await _service().explain("sk-wrong", request("m"))


async def test_explain_of_an_unknown_model_is_model_not_found() -> None:
    with pytest.raises(ModelNotFound) as info:
        await _service().explain(KEY, request("m", fallback=("ghost",)))
    assert info.value.param == "models"


# ---- stream ------------------------------------------------------------------------------

HEL = Delta(role="assistant", content="Hel")
LO = Delta(content="lo")
STOP = Delta(finish_reason="stop")


async def test_stream_events_served_first_then_deltas_then_end_with_usage_and_cost() -> None:
    a = FakeProvider("a", batches=[
        StreamBatch((HEL,)), StreamBatch((LO,)), StreamBatch((STOP,), REPORTED, done=True)])
    assert await _events(_service(a)) == [
        StreamEvent(deltas=(HEL,), served=SERVED_A, attempts=(A_OK,)),
        StreamEvent(deltas=(LO,)),
        StreamEvent(deltas=(STOP,), end=StreamEnd(Usage(REPORTED, REPORTED_COST))),
    ]
    assert a.streams_closed == 1


async def test_the_first_event_carries_the_attempts_of_the_failover() -> None:
    a = FakeProvider("a", error=_server_error("a"))
    b = FakeProvider("b", batches=[StreamBatch((HEL,)), StreamBatch((LO,))])
    events = await _events(_service(a, b))
    assert events[0] == StreamEvent(deltas=(HEL,), served=SERVED_B, attempts=(
        Attempt("m", "a", "m@a", "server_error", 0, "a answered HTTP 500", 500), B_OK))
    assert [(e.served, e.attempts) for e in events[1:]] == [(None, ()), (None, ())]


async def test_a_first_batch_that_is_also_the_last_goes_out_before_the_end() -> None:
    # An answer that came in one read: its deltas (with served) leave before the stream is
    # concluded, whose record's commit would otherwise hold back the first token. (A later
    # last batch's deltas travel with the end, as the test above shows: one event fewer.)
    done = StreamBatch((Delta(role="assistant", content="Hello", finish_reason="stop"),),
                       TokenCounts(3, 1), done=True)
    events = await _events(_service(FakeProvider("a", batches=[done])))
    assert events == [StreamEvent(deltas=done.deltas, served=SERVED_A, attempts=(A_OK,)),
                      StreamEvent(end=StreamEnd(Usage(TokenCounts(3, 1), Decimal("0.00075150"))))]


class Concluded(NullObserver):
    """The outcomes of the generations concluded so far."""

    def __init__(self) -> None:
        self.outcomes: list[str] = []

    def generation(self, model: str, provider: str, *, outcome: str, streamed: bool,
                   attempts: int, usage: Usage | None) -> None:
        self.outcomes.append(outcome)


async def test_an_answer_in_one_read_goes_out_before_the_stream_is_concluded() -> None:
    observer = Concluded()
    done = StreamBatch((Delta(role="assistant", content="Hello", finish_reason="stop"),),
                       TokenCounts(3, 1), done=True)
    events = _service(FakeProvider("a", batches=[done]), observer=observer).stream(
        KEY, request("m"), None)
    first = await anext(events)
    assert (first.deltas, first.end) == (done.deltas, None)
    assert observer.outcomes == []  # usage, statistics, metrics and billing come after it
    assert [ev.end is not None async for ev in events] == [True]
    assert observer.outcomes == ["success"]


async def test_the_rest_of_a_read_whose_head_went_alone_goes_out_before_the_end() -> None:
    # The provider sent the first read's first chunk apart (StreamBatch.head): the rest of that
    # read is not a later read's last batch, so its deltas do not wait for the conclusion.
    observer = Concluded()
    a = FakeProvider("a", batches=[StreamBatch((HEL,), head=True),
                                   StreamBatch((LO, STOP), REPORTED, done=True)])
    events = _service(a, observer=observer).stream(KEY, request("m"), None)
    assert await anext(events) == StreamEvent(deltas=(HEL,), served=SERVED_A, attempts=(A_OK,))
    assert await anext(events) == StreamEvent(deltas=(LO, STOP))
    assert observer.outcomes == []
    assert [ev async for ev in events] == [
        StreamEvent(end=StreamEnd(Usage(REPORTED, REPORTED_COST)))]
    assert observer.outcomes == ["success"]


async def test_usage_arriving_in_a_batch_without_deltas_is_kept_for_the_end() -> None:
    a = FakeProvider("a", batches=[StreamBatch((HEL,)), StreamBatch((), TokenCounts(2, 2))])
    events = await _events(_service(a))
    assert events == [
        StreamEvent(deltas=(HEL,), served=SERVED_A, attempts=(A_OK,)),
        StreamEvent(end=StreamEnd(Usage(TokenCounts(2, 2), Decimal("0.00090100")))),
    ]


async def test_stream_usage_is_estimated_from_the_joined_text_when_none_is_reported() -> None:
    call = ToolCall(index=0, id="call_1", name="f", arguments='{"x": 1}')
    a = FakeProvider("a", batches=[StreamBatch((HEL,)), StreamBatch((LO, Delta(tool_calls=(call,))))])
    events = await _events(_service(a), text="abcdefghi")
    # cl100k: prompt 4 + 2 ("abcdefghi"); completion 7 ("Hello" + '{"x": 1}')
    tokens = TokenCounts(prompt=6, completion=7, estimated=True)
    assert events[-1] == StreamEvent(end=StreamEnd(Usage(tokens, Decimal("0.00300300"))))


async def test_streamed_reasoning_is_estimated_with_the_content_when_no_usage_arrives() -> None:
    think = Delta(role="assistant", reasoning="Let me think about the weather in Moscow.")
    a = FakeProvider("a", batches=[StreamBatch((think,)), StreamBatch((Delta(content="Sunny."),)),
                                   StreamBatch((STOP,), done=True)])
    events = await _events(_service(a))
    text = "Let me think about the weather in Moscow." + "Sunny."
    completion = await TOKENIZER.count([text])
    assert completion == 11  # the reasoning's tokens are billed, not only the content's 3
    end = events[-1].end
    assert end is not None and end.usage.tokens == TokenCounts(prompt=5, completion=completion,
                                                               estimated=True)


async def test_an_upstream_error_mid_stream_ends_in_band_with_usage() -> None:
    boom = UpstreamServerError("a failed mid-stream: overloaded", provider="a")
    a = FakeProvider("a", batches=[StreamBatch((HEL,)), StreamBatch((LO,))], stream_error=boom)
    events = await _events(_service(a))
    tokens = TokenCounts(prompt=5, completion=1, estimated=True)  # cl100k: "hello", "Hello"
    assert events == [
        StreamEvent(deltas=(HEL,), served=SERVED_A, attempts=(A_OK,)),
        StreamEvent(deltas=(LO,)),
        StreamEvent(end=StreamEnd(Usage(tokens, Decimal("0.00105250")), error=boom)),
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
    assert end.usage.tokens == TokenCounts(prompt=5, completion=1, estimated=True)
    assert a.streams_closed == 1


async def test_stopping_the_stream_early_closes_the_provider_stream() -> None:
    a = FakeProvider("a", batches=[StreamBatch((HEL,)), StreamBatch((LO,)), StreamBatch((STOP,))])
    events = _service(a).stream(KEY, request("m"), None)
    assert await anext(events) == StreamEvent(deltas=(HEL,), served=SERVED_A, attempts=(A_OK,))
    assert a.streams_closed == 0
    await events.aclose()
    assert a.streams_closed == 1


async def test_stream_refuses_a_bad_key_before_the_first_event() -> None:
    a = FakeProvider("a", batches=[StreamBatch((HEL,))])
    with pytest.raises(Unauthenticated):
        await anext(_service(a).stream("nope", request("m"), None))
    assert a.calls == []


# ---- stream throughput -------------------------------------------------------------------

async def test_a_finished_stream_records_completion_tokens_per_second_after_the_first_batch(
        fake_time: FakeTime) -> None:
    fake_time.ticks = [100.0, 100.5]
    stats = InMemoryStats()
    a = FakeProvider("a", batches=[
        StreamBatch((HEL,)), StreamBatch((LO,)), StreamBatch((STOP,), REPORTED, done=True)])
    await _events(_service(a, stats=stats))
    # 56 completion tokens in 0.5 s
    assert (await stats.all())["m@a"].throughput == 112.0


async def test_a_stream_ended_by_an_error_records_no_throughput(fake_time: FakeTime) -> None:
    fake_time.ticks = [100.0, 100.5]
    stats = InMemoryStats()
    boom = UpstreamServerError("a failed mid-stream: overloaded", provider="a")
    a = FakeProvider("a", batches=[StreamBatch((HEL,)), StreamBatch((LO,))], stream_error=boom)
    await _events(_service(a, stats=stats))
    assert (await stats.all())["m@a"].throughput is None


async def test_an_answer_delivered_in_one_batch_records_no_throughput(fake_time: FakeTime) -> None:
    fake_time.ticks = [100.0, 100.001]
    stats = InMemoryStats()
    done = StreamBatch((Delta(role="assistant", content="Hello", finish_reason="stop"),),
                       TokenCounts(3, 20), done=True)
    await _events(_service(FakeProvider("a", batches=[done]), stats=stats))
    assert (await stats.all())["m@a"].throughput is None


async def test_the_rest_of_a_first_read_is_not_a_later_read_for_throughput(
        fake_time: FakeTime) -> None:
    fake_time.ticks = [100.0, 100.5]
    stats = InMemoryStats()
    a = FakeProvider("a", batches=[StreamBatch((HEL,), head=True),
                                   StreamBatch((LO, STOP), REPORTED, done=True)])
    await _events(_service(a, stats=stats))
    assert (await stats.all())["m@a"].throughput is None  # one read: nothing spread over time
