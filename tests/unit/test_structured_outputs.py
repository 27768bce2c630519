"""Structured outputs in the domain: the format a response_format asks for, the check of a whole
answer against it, and failover past a non-conforming answer, whole and streamed (the stream of
the failed attempt is never passed on)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.unit.builders import catalog, deployment, model, request
from tests.unit.fakes import FakeProvider
from tests.unit.test_failover import admitted
from xrouter_router.domain import service as service_module
from xrouter_router.domain.auth import MasterKeyAuthenticator
from xrouter_router.domain.errors import (
    AllAttemptsFailed,
    Attempt,
    InvalidRequest,
    NonConforming,
)
from xrouter_router.domain.failover import Failover, FailoverPolicy
from xrouter_router.domain.routing import plan
from xrouter_router.domain.service import ChatService
from xrouter_router.domain.stats import InMemoryStats
from xrouter_router.domain.structured import (
    OBJECT_SCHEMA,
    AnswerCheck,
    AnswerFormat,
    answer_check,
    answer_format,
)
from xrouter_router.domain.types import (
    Completion,
    Delta,
    Message,
    StreamBatch,
    TokenCounts,
    ToolCall,
)

SCHEMA: dict[str, Any] = {"type": "object", "additionalProperties": False,
                          "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius"]}},
                          "required": ["city", "unit"]}
FORMAT = orjson.dumps({"type": "json_schema", "json_schema": {
    "name": "weather", "schema": SCHEMA, "strict": True, "description": "The weather"}})
GOOD = '{"city": "Moscow", "unit": "celsius"}'
JSON_CAPS = ("streaming", "json_mode")
CATALOG = catalog(model("m", deployment("m", "a", caps=JSON_CAPS), deployment("m", "b", caps=JSON_CAPS)))
REQ = request("m", response_format_json=FORMAT)
PLAN = plan(CATALOG, REQ).candidates
HELD = admitted(PLAN)


def _answer(text: str | None, finish: str = "stop", calls: tuple[ToolCall, ...] = ()) -> Completion:
    return Completion(Message(role="assistant", content=text, tool_calls=calls), finish)


def _check(raw: bytes = FORMAT) -> AnswerCheck:
    found = answer_check(request("m", response_format_json=raw))
    assert found is not None
    return found


def _failover(*providers: FakeProvider) -> Failover:
    return Failover({p.name: p for p in providers}, FailoverPolicy(), InMemoryStats())


# ---- the format and the check ----------------------------------------------------------------

@pytest.mark.parametrize(("raw", "expected"), [
    (b"", None),
    (b'{"type":"text"}', None),
    (b'"json"', None),
    (b'{"type":"json_object"}', AnswerFormat()),
    (FORMAT, AnswerFormat("weather", SCHEMA, "The weather", True)),
    (b'{"type":"json_schema","json_schema":{"name":"x"}}', AnswerFormat("x", OBJECT_SCHEMA)),
])
def test_the_format_a_response_format_asks_for(raw: bytes, expected: AnswerFormat | None) -> None:
    assert answer_format(raw) == expected


@pytest.mark.parametrize("text", [GOOD, '{"unit":"celsius","city":"Kazan"}'])
def test_a_conforming_answer_passes(text: str) -> None:
    _check().check("a", Message(role="assistant", content=text), "stop")


@pytest.mark.parametrize(("text", "message"), [
    ("Sure! Here it is", "a answered text that is not JSON, where response_format asked for JSON"),
    ("", "a answered text that is not JSON, where response_format asked for JSON"),
    ('["Moscow"]', "a answered JSON that is not an object"),
    ('{"city": 7, "unit": "celsius"}', "a answered JSON outside the response_format's schema: "
                                       "city fails its 'type' rule"),
    ('{"city": "Moscow"}', "a answered JSON outside the response_format's schema: the top level "
                           "fails its 'required' rule"),
    ('{"city": "Moscow", "unit": "kelvin"}', "a answered JSON outside the response_format's "
                                             "schema: unit fails its 'enum' rule"),
])
def test_a_non_conforming_answer_is_the_providers_failure(text: str, message: str) -> None:
    with pytest.raises(NonConforming) as caught:
        _check().check("a", Message(role="assistant", content=text), "stop")
    assert caught.value.message == message
    assert caught.value.retryable and caught.value.reason == "non_conforming"
    assert caught.value.metadata == {"provider_name": "a", "reason": "non_conforming"}


def test_json_object_asks_for_any_object() -> None:
    check = _check(b'{"type":"json_object"}')
    check.check("a", Message(role="assistant", content='{"anything": [1]}'), "stop")
    with pytest.raises(NonConforming):
        check.check("a", Message(role="assistant", content="42"), "stop")


@pytest.mark.parametrize("finish", ["length", "content_filter"])
def test_an_answer_cut_short_is_passed_on_unchecked(finish: str) -> None:
    _check().check("a", Message(role="assistant", content='{"city": "Mos'), finish)


def test_an_answer_calling_the_clients_tools_is_not_checked() -> None:
    call = ToolCall(0, "call_1", "lookup", "{}")
    _check().check("a", Message(role="assistant", content=None, tool_calls=(call,)), "tool_calls")


@pytest.mark.parametrize(("schema", "answer", "error"), [
    ({"type": 5}, GOOD, "TypeError"),
    ({"type": "no-such-type"}, GOOD, "UnknownType"),
    ({"properties": {"city": {"pattern": "("}}}, GOOD, "error"),
    ({"$ref": "https://example.com/remote.json"}, GOOD, "_WrappedReferencingError"),
])
def test_a_broken_schema_is_the_clients_error_when_an_answer_meets_it(
        schema: dict[str, Any], answer: str, error: str) -> None:
    check = _check(orjson.dumps({"type": "json_schema", "json_schema": {"name": "x",
                                                                        "schema": schema}}))
    with pytest.raises(InvalidRequest) as caught:
        check.check("a", Message(role="assistant", content=answer), "stop")
    assert caught.value.message == f"response_format.json_schema.schema cannot be applied: {error}"
    assert caught.value.param == "response_format.json_schema.schema"


def _schema_check(schema: dict[str, Any]) -> AnswerCheck:
    return _check(orjson.dumps({"type": "json_schema", "json_schema": {"name": "x",
                                                                       "schema": schema}}))


@pytest.mark.parametrize("schema", [
    {"properties": {"city": {"type": "string", "pattern": "^(a|aa)+$"}}},
    {"patternProperties": {"^(a|aa)+$": {"type": "string"}}},
])
def test_a_catastrophic_pattern_is_the_clients_error_not_a_stalled_router(
        schema: dict[str, Any]) -> None:
    """Exponential backtracking (the regex module avoids some, not this one): the bounded
    search gives up after PATTERN_SECONDS."""
    hostile = "a" * 40 + "!"
    answer = orjson.dumps({"city": hostile, hostile: "x"}).decode()
    with pytest.raises(InvalidRequest) as caught:
        _schema_check(schema).check("a", Message(role="assistant", content=answer), "stop")
    assert caught.value.message.startswith(
        "response_format.json_schema.schema: the pattern '^(a|aa)+$' took over 50 ms")


def test_patterns_still_apply_to_values_and_property_names() -> None:
    check = _schema_check({"properties": {"city": {"pattern": "^[A-Z]"}},
                           "patternProperties": {"^n_": {"type": "integer"}}})
    check.check("a", Message(role="assistant", content='{"city": "Moscow", "n_1": 2}'), "stop")
    for bad in ('{"city": "moscow"}', '{"n_1": "two"}'):
        with pytest.raises(NonConforming):
            check.check("a", Message(role="assistant", content=bad), "stop")


def test_a_schema_that_cannot_be_compiled_is_refused_before_any_provider() -> None:
    raw = orjson.dumps({"type": "json_schema", "json_schema": {"name": "x",
                                                               "schema": {"$schema": [1]}}})
    with pytest.raises(InvalidRequest) as caught:
        answer_check(request("m", response_format_json=raw))
    assert caught.value.param == "response_format.json_schema.schema"


async def test_a_broken_schema_ends_the_request_without_failover() -> None:
    raw = orjson.dumps({"type": "json_schema", "json_schema": {"name": "x",
                                                               "schema": {"type": 5}}})
    a, b = FakeProvider("a", completion=_answer(GOOD)), FakeProvider("b")
    with pytest.raises(InvalidRequest):
        await _failover(a, b).complete(HELD, PLAN, REQ, None, _check(raw))
    assert (a.calls, b.calls) == (["m@a"], [])


# ---- failover ----------------------------------------------------------------------------------

async def test_a_non_conforming_answer_fails_over_to_the_next_deployment() -> None:
    a = FakeProvider("a", completion=_answer('{"city": 7}'))
    b = FakeProvider("b", completion=_answer(GOOD))
    cand, completion, attempts = await _failover(a, b).complete(HELD, PLAN, REQ, None, _check())
    assert cand.deployment.id == "m@b"
    assert completion.message.content == GOOD
    assert [(x.deployment, x.outcome) for x in attempts] == [("m@a", "non_conforming"),
                                                              ("m@b", "success")]


async def test_every_answer_non_conforming_fails_the_request() -> None:
    a = FakeProvider("a", completion=_answer("no"))
    b = FakeProvider("b", completion=_answer('{"city": "Moscow"}'))
    with pytest.raises(AllAttemptsFailed) as caught:
        await _failover(a, b).complete(HELD, PLAN, REQ, None, _check())
    assert [x.outcome for x in caught.value.attempts] == ["non_conforming", "non_conforming"]
    assert isinstance(caught.value.last, NonConforming)


def _batches(*pieces: str) -> list[StreamBatch]:
    out = [StreamBatch((Delta(role="assistant", content=p),)) for p in pieces]
    return [*out, StreamBatch((Delta(finish_reason="stop"),), done=True)]


async def test_a_checked_stream_is_read_whole_and_replayed() -> None:
    a = FakeProvider("a", batches=_batches('{"city": ', '"Moscow", "unit": "celsius"}'))
    opened = await _failover(a).open_stream(HELD, PLAN, REQ, None, _check())
    rest = [b async for b in opened.rest]
    assert [opened.first, *rest] == _batches('{"city": ', '"Moscow", "unit": "celsius"}')
    assert a.streams_closed == 1  # the upstream was read to its end before anything was passed on
    assert opened.attempts == [Attempt("m", "a", "m@a", "success", opened.attempts[0].latency_ms)]


async def test_a_non_conforming_stream_fails_over_before_its_first_byte() -> None:
    a = FakeProvider("a", batches=_batches('{"city": ', "7}"))
    b = FakeProvider("b", batches=_batches(GOOD))
    opened = await _failover(a, b).open_stream(HELD, PLAN, REQ, None, _check())
    assert opened.candidate.deployment.id == "m@b"
    assert [opened.first, *[x async for x in opened.rest]] == _batches(GOOD)
    assert [x.outcome for x in opened.attempts] == ["non_conforming", "success"]
    assert a.streams_closed == 1


async def test_without_a_format_the_stream_is_not_read_ahead() -> None:
    a = FakeProvider("a", batches=_batches("not", " json"))
    opened = await _failover(a).open_stream(HELD, PLAN, request("m"), None, answer_check(request("m")))
    assert opened.first == _batches("not")[0]
    assert a.streams_closed == 0  # still open: the relay reads it as it comes
    assert [x async for x in opened.rest] == _batches("not", " json")[1:]


# ---- the service ---------------------------------------------------------------------------------

class _Ticks:
    """Stands in for the `time` module inside service.py: the relay's clock moves 0.5 s."""

    def __init__(self) -> None:
        self.ticks = [100.0, 100.5]

    def time(self) -> float:
        return 1_764_115_200.0

    def monotonic(self) -> float:
        return self.ticks.pop(0) if len(self.ticks) > 1 else self.ticks[0]


async def test_a_replayed_stream_records_no_throughput(monkeypatch: pytest.MonkeyPatch) -> None:
    """Its batches come from memory as fast as the client takes them: tokens per second of the
    replay would say nothing of the provider. The same stream unchecked records 112 tokens/s."""
    usage = TokenCounts(prompt=5, completion=56)
    batches = [StreamBatch((Delta(role="assistant", content=GOOD[:9]),)),
               StreamBatch((Delta(content=GOOD[9:]),)),
               StreamBatch((Delta(finish_reason="stop"),), usage, done=True)]
    for req, expected in ((REQ, None), (request("m"), 112.0)):
        monkeypatch.setattr(service_module, "time", _Ticks())
        stats = InMemoryStats()
        failover = Failover({"a": FakeProvider("a", batches=batches)}, FailoverPolicy(), stats)
        service = ChatService(CATALOG, failover, MasterKeyAuthenticator("k"), idle_timeout=30.0,
                              stats=stats)
        events = [e async for e in service.stream("k", req, None)]
        assert "".join(d.content or "" for e in events for d in e.deltas) == GOOD
        assert (await stats.all())["m@a"].throughput == expected
