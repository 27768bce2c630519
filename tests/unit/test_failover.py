"""Ordered failover before the first byte: retryable errors move on, others stop, attempts are
recorded in order, timeouts and deadlines apply per attempt, and every attempt lands in the
deployment statistics."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import pytest

from tests.unit.builders import catalog, deployment, model, request
from tests.unit.fakes import HELLO, VECTORS, Clock, FakeEmbedder, FakeProvider
from xrouter_router.domain.billing import Admission, Bill
from xrouter_router.domain.catalog import Price
from xrouter_router.domain.errors import (
    AllAttemptsFailed,
    Attempt,
    DeadlineExceeded,
    ErrorKind,
    InternalError,
    UpstreamConnectError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamServerError,
)
from xrouter_router.domain.failover import Failover, FailoverPolicy
from xrouter_router.domain.keys import ApiKey
from xrouter_router.domain.limits import TokenAsk, TokenHold
from xrouter_router.domain.routing import Candidate, plan
from xrouter_router.domain.stats import DeploymentStats, InMemoryStats
from xrouter_router.domain.types import Completion, Delta, EmbeddingRequest, Message, StreamBatch

CATALOG = catalog(model("m", deployment("m", "a"), deployment("m", "b"), deployment("m", "c")))
PLAN = plan(CATALOG, request("m")).candidates
REQ = request("m")
B_ANSWER = Completion(Message(role="assistant", content="from b"), "stop")
WALL = 1_764_115_200.0


def _failover(*providers: FakeProvider, clock: Clock | None = None, timeout: float = 60.0,
              max_attempts: int = 5, stats: InMemoryStats | None = None,
              wall: Clock | None = None) -> Failover:
    return Failover({p.name: p for p in providers}, FailoverPolicy(timeout, max_attempts),
                    InMemoryStats() if stats is None else stats, clock=clock or Clock(),
                    wall=wall or Clock(WALL))


def admitted(candidates: Sequence[Candidate]) -> Admission:
    """A live admission priced for the candidates' deployments (what Billing.admit yields)."""
    return Admission(ApiKey("k", "acct", "free", "xr-test"), Bill("gen-1", "m", 10, None, False),
                     None, None, Price(Decimal(0), Decimal(0)), WALL,
                     covers=tuple(c.deployment for c in candidates))


HELD = admitted(PLAN)


def _server_error(name: str) -> UpstreamServerError:
    return UpstreamServerError(f"{name} answered HTTP 503", provider=name, status=503,
                               raw={"error": {"message": "overloaded"}})


def _ids(cand: Candidate) -> str:
    return cand.deployment.id


# ---- complete ----------------------------------------------------------------------------

async def test_first_success_is_returned_with_one_attempt() -> None:
    clock = Clock()
    a = FakeProvider("a", clock=clock, elapsed=0.25)
    b = FakeProvider("b")
    cand, completion, attempts = await _failover(a, b, clock=clock).complete(HELD, PLAN, REQ, None)
    assert _ids(cand) == "m@a"
    assert completion == HELLO
    assert attempts == [Attempt("m", "a", "m@a", "success", 250)]
    assert b.calls == []


async def test_a_retryable_failure_moves_on_to_the_next_deployment() -> None:
    clock = Clock()
    a = FakeProvider("a", error=_server_error("a"), clock=clock, elapsed=0.125)
    b = FakeProvider("b", completion=B_ANSWER, clock=clock, elapsed=0.5)
    cand, completion, attempts = await _failover(a, b, clock=clock).complete(HELD, PLAN, REQ, None)
    assert _ids(cand) == "m@b"
    assert completion == B_ANSWER
    assert attempts == [
        Attempt("m", "a", "m@a", "server_error", 125, "a answered HTTP 503", 503),
        Attempt("m", "b", "m@b", "success", 500),
    ]
    assert (a.calls, b.calls) == (["m@a"], ["m@b"])


async def test_a_non_retryable_rejection_ends_the_request_at_once() -> None:
    rejected = UpstreamRejected("a answered HTTP 400", provider="a", status=400)
    a = FakeProvider("a", error=rejected)
    b = FakeProvider("b")
    with pytest.raises(UpstreamRejected) as info:
        await _failover(a, b).complete(HELD, PLAN, REQ, None)
    assert info.value is rejected
    assert b.calls == []


async def test_all_failing_raises_all_attempts_failed_with_every_attempt_in_order() -> None:
    a = FakeProvider("a", error=_server_error("a"))
    b = FakeProvider("b", error=UpstreamConnectError("could not reach b: OSError", provider="b"))
    c = FakeProvider("c", error=UpstreamRateLimited("c answered HTTP 429", provider="c", status=429,
                                                    raw={"error": "slow down"}))
    with pytest.raises(AllAttemptsFailed) as info:
        await _failover(a, b, c).complete(HELD, PLAN, REQ, None)
    err = info.value
    assert err.message == "All providers failed: c answered HTTP 429"
    assert err.kind is ErrorKind.UPSTREAM
    assert err.retryable is False
    assert err.attempts == (
        Attempt("m", "a", "m@a", "server_error", 0, "a answered HTTP 503", 503),
        Attempt("m", "b", "m@b", "connect", 0, "could not reach b: OSError", 0),
        Attempt("m", "c", "m@c", "rate_limited", 0, "c answered HTTP 429", 429),
    )
    assert err.metadata == {
        "attempts": [
            {"provider_name": "a", "model": "m", "reason": "server_error", "status": 503,
             "message": "a answered HTTP 503"},
            {"provider_name": "b", "model": "m", "reason": "connect", "status": 0,
             "message": "could not reach b: OSError"},
            {"provider_name": "c", "model": "m", "reason": "rate_limited", "status": 429,
             "message": "c answered HTTP 429"},
        ],
        "provider_name": "c",
        "raw": {"error": "slow down"},
    }


async def test_an_attempt_slower_than_the_attempt_timeout_becomes_reason_timeout() -> None:
    a = FakeProvider("a", delay=5.0)
    b = FakeProvider("b", completion=B_ANSWER)
    cand, completion, attempts = await _failover(a, b, timeout=0.05).complete(HELD, PLAN, REQ, None)
    assert _ids(cand) == "m@b"
    assert completion == B_ANSWER
    assert attempts == [
        Attempt("m", "a", "m@a", "timeout", 0, "a did not answer within 0.05s", 0),
        Attempt("m", "b", "m@b", "success", 0),
    ]


async def test_the_deadline_shortens_the_attempt_timeout() -> None:
    clock = Clock()
    a = FakeProvider("a", delay=5.0)
    with pytest.raises(AllAttemptsFailed) as info:
        await _failover(a, clock=clock, timeout=60.0).complete(HELD, PLAN[:1], REQ,
                                                               clock.now + 0.08)
    assert [(x.outcome, x.error) for x in info.value.attempts] == [
        ("timeout", "a did not answer within 0.08s")]


async def test_a_deadline_already_passed_raises_deadline_exceeded_without_calling() -> None:
    clock = Clock()
    a = FakeProvider("a")
    with pytest.raises(DeadlineExceeded) as info:
        await _failover(a, clock=clock).complete(HELD, PLAN, REQ, clock.now)
    assert info.value.message == "The request's deadline passed before a provider answered"
    assert info.value.kind is ErrorKind.TIMEOUT
    assert info.value.metadata == {"attempts": []}
    assert a.calls == []


async def test_a_deadline_that_passes_during_an_attempt_stops_the_next_one() -> None:
    clock = Clock()
    a = FakeProvider("a", error=_server_error("a"), clock=clock, elapsed=2.0)
    b = FakeProvider("b")
    with pytest.raises(DeadlineExceeded) as info:
        await _failover(a, b, clock=clock).complete(HELD, PLAN, REQ, clock.now + 1.0)
    assert info.value.metadata == {"attempts": [
        {"provider_name": "a", "model": "m", "reason": "server_error", "status": 503,
         "message": "a answered HTTP 503"}]}
    assert (a.calls, b.calls) == (["m@a"], [])


async def test_a_timeout_cut_short_by_the_deadline_is_deadline_exceeded_with_the_attempts() -> None:
    clock = Clock()
    a = FakeProvider("a", error=_server_error("a"), clock=clock, elapsed=0.0625)
    # b's attempt gets the 0.0625 s left; its clock reaches the deadline while it is silent
    b = FakeProvider("b", delay=5.0, clock=clock, elapsed=0.0625)
    c = FakeProvider("c")
    with pytest.raises(DeadlineExceeded) as info:
        await _failover(a, b, c, clock=clock).complete(HELD, PLAN, REQ, clock.now + 0.125)
    assert info.value.message == "The request's deadline passed before a provider answered"
    assert info.value.kind is ErrorKind.TIMEOUT
    assert info.value.metadata == {"attempts": [
        {"provider_name": "a", "model": "m", "reason": "server_error", "status": 503,
         "message": "a answered HTTP 503"},
        {"provider_name": "b", "model": "m", "reason": "timeout", "status": 0,
         "message": "b did not answer within 0.0625s"},
    ]}
    assert c.calls == []


async def test_max_attempts_caps_how_many_deployments_are_tried() -> None:
    providers = [FakeProvider(n, error=_server_error(n)) for n in ("a", "b", "c")]
    with pytest.raises(AllAttemptsFailed) as info:
        await _failover(*providers, max_attempts=2).complete(HELD, PLAN, REQ, None)
    assert [x.deployment for x in info.value.attempts] == ["m@a", "m@b"]
    assert [p.calls for p in providers] == [["m@a"], ["m@b"], []]


async def test_an_empty_plan_fails_with_no_attempts() -> None:
    with pytest.raises(AllAttemptsFailed) as info:
        await _failover(FakeProvider("a")).complete(admitted([]), [], REQ, None)
    assert info.value.message == "All providers failed: no deployment could be tried"
    assert info.value.metadata == {"attempts": []}
    assert info.value.last is None


# ---- open_stream -------------------------------------------------------------------------

FIRST = StreamBatch((Delta(role="assistant", content="Hel"),))
SECOND = StreamBatch((Delta(content="lo", finish_reason="stop"),), done=True)


async def test_open_stream_returns_the_first_batch_and_the_rest() -> None:
    a = FakeProvider("a", batches=[FIRST, SECOND])
    opened = await _failover(a).open_stream(HELD, PLAN, REQ, None)
    assert _ids(opened.candidate) == "m@a"
    assert opened.first == FIRST
    assert [b async for b in opened.rest] == [SECOND]
    assert opened.attempts == [Attempt("m", "a", "m@a", "success", 0)]


async def test_a_stream_that_ends_without_a_batch_is_a_bad_response_and_fails_over() -> None:
    a = FakeProvider("a", batches=[])
    b = FakeProvider("b", batches=[FIRST])
    opened = await _failover(a, b).open_stream(HELD, PLAN, REQ, None)
    assert _ids(opened.candidate) == "m@b"
    assert opened.attempts == [
        Attempt("m", "a", "m@a", "bad_response", 0, "a ended the stream without data", 0),
        Attempt("m", "b", "m@b", "success", 0),
    ]


async def test_a_stream_failing_before_its_first_batch_fails_over() -> None:
    a = FakeProvider("a", error=_server_error("a"))
    b = FakeProvider("b", batches=[FIRST])
    opened = await _failover(a, b).open_stream(HELD, PLAN, REQ, None)
    assert opened.first == FIRST
    assert [(x.provider, x.outcome) for x in opened.attempts] == [("a", "server_error"),
                                                                   ("b", "success")]
    assert a.streams_closed == 1


async def test_a_stream_silent_past_the_attempt_timeout_fails_over_and_is_closed() -> None:
    a = FakeProvider("a", delay=5.0, batches=[FIRST])
    b = FakeProvider("b", batches=[SECOND])
    opened = await _failover(a, b, timeout=0.05).open_stream(HELD, PLAN, REQ, None)
    assert opened.first == SECOND
    assert opened.attempts[0] == Attempt("m", "a", "m@a", "timeout", 0,
                                         "a sent nothing within 0.05s", 0)
    assert a.streams_closed == 1


async def test_a_stream_rejected_before_its_first_batch_is_not_retried() -> None:
    a = FakeProvider("a", error=UpstreamRejected("bad tool schema", provider="a", status=422))
    b = FakeProvider("b", batches=[FIRST])
    with pytest.raises(UpstreamRejected):
        await _failover(a, b).open_stream(HELD, PLAN, REQ, None)
    assert b.calls == []


async def test_open_stream_with_every_deployment_failing() -> None:
    providers = [FakeProvider(n, batches=[]) for n in ("a", "b", "c")]
    with pytest.raises(AllAttemptsFailed) as info:
        await _failover(*providers).open_stream(HELD, PLAN, REQ, None)
    assert [(x.provider, x.outcome) for x in info.value.attempts] == [
        ("a", "bad_response"), ("b", "bad_response"), ("c", "bad_response")]
    assert info.value.message == "All providers failed: c ended the stream without data"
    assert info.value.metadata["provider_name"] == "c"
    assert "raw" not in info.value.metadata


async def test_open_stream_respects_an_expired_deadline() -> None:
    clock = Clock()
    a = FakeProvider("a", batches=[FIRST])
    with pytest.raises(DeadlineExceeded):
        await _failover(a, clock=clock).open_stream(HELD, PLAN, REQ, clock.now - 1)
    assert a.calls == []


# ---- deployment statistics ---------------------------------------------------------------

async def test_a_success_records_its_latency_in_milliseconds_at_wall_clock_time() -> None:
    clock, stats = Clock(), InMemoryStats()
    a = FakeProvider("a", clock=clock, elapsed=0.25)
    await _failover(a, clock=clock, stats=stats, wall=Clock(WALL)).complete(HELD, PLAN, REQ, None)
    assert await stats.all() == {"m@a": DeploymentStats(
        provider="a", samples=1, latency_ms=250.0, success=1.0, updated=WALL)}


async def test_a_retryable_failure_is_recorded_as_a_failure_without_latency() -> None:
    clock, stats = Clock(), InMemoryStats()
    a = FakeProvider("a", error=_server_error("a"), clock=clock, elapsed=0.125)
    b = FakeProvider("b", clock=clock, elapsed=0.5)
    await _failover(a, b, clock=clock, stats=stats).complete(HELD, PLAN, REQ, None)
    assert await stats.all() == {
        "m@a": DeploymentStats(provider="a", samples=1, success=0.0, failures=1,
                               last_failure=WALL, updated=WALL),
        "m@b": DeploymentStats(provider="b", samples=1, latency_ms=500.0, success=1.0,
                               updated=WALL),
    }


async def test_a_timeout_is_recorded_as_a_failure() -> None:
    stats = InMemoryStats()
    await _failover(FakeProvider("a", delay=5.0), FakeProvider("b"), timeout=0.05,
                    stats=stats).complete(HELD, PLAN, REQ, None)
    a = (await stats.all())["m@a"]
    assert (a.samples, a.failures, a.success, a.latency_ms) == (1, 1, 0.0, None)


async def test_three_failing_requests_open_the_deployments_breaker_at_the_third() -> None:
    stats, wall = InMemoryStats(), Clock(WALL)
    failover = _failover(FakeProvider("a", error=_server_error("a")), FakeProvider("b"),
                         stats=stats, wall=wall)
    for _ in range(3):
        await failover.complete(HELD, PLAN, REQ, None)
        wall.now += 1.0
    a = (await stats.all())["m@a"]
    assert (a.failures, a.open_since) == (3, WALL + 2.0)
    assert a.breaker(WALL + 2.0, stats.policy) == "open"
    assert (await stats.all())["m@b"].failures == 0


async def test_stream_attempts_are_recorded_too() -> None:
    clock, stats = Clock(), InMemoryStats()
    failover = _failover(FakeProvider("a", batches=[]),
                         FakeProvider("b", batches=[FIRST], clock=clock, elapsed=0.125),
                         clock=clock, stats=stats)
    await failover.open_stream(HELD, PLAN, REQ, None)
    assert await stats.all() == {
        "m@a": DeploymentStats(provider="a", samples=1, success=0.0, failures=1,
                               last_failure=WALL, updated=WALL),
        "m@b": DeploymentStats(provider="b", samples=1, latency_ms=125.0, success=1.0,
                               updated=WALL),
    }


async def test_a_client_rejection_counts_as_a_success_without_latency() -> None:
    stats = InMemoryStats()
    a = FakeProvider("a", error=UpstreamRejected("a answered HTTP 400", provider="a", status=400))
    failover = _failover(a, stats=stats)
    for _ in range(3):
        with pytest.raises(UpstreamRejected):
            await failover.complete(HELD, PLAN, REQ, None)
    assert await stats.all() == {"m@a": DeploymentStats(provider="a", samples=3, success=1.0,
                                                        updated=WALL)}


async def test_statistics_are_kept_per_deployment_not_per_provider() -> None:
    cat = catalog(model("m", deployment("m", "a")), model("f", deployment("f", "a")))
    stats = InMemoryStats()
    failover = _failover(FakeProvider("a", error=_server_error("a")), stats=stats)
    with pytest.raises(AllAttemptsFailed):
        both = plan(cat, request("m", fallback=("f",))).candidates
        await failover.complete(admitted(both), both, REQ, None)
    failed = DeploymentStats(provider="a", samples=1, success=0.0, failures=1, last_failure=WALL,
                             updated=WALL)
    assert await stats.all() == {"m@a": failed, "f@a": failed}


# ---- embed -------------------------------------------------------------------------------

EMBED_PLAN = plan(catalog(model("e", deployment("e", "a"), deployment("e", "b"))),
                  request("e")).candidates
EMBED_REQ = EmbeddingRequest(model="e", inputs=("one", "two"))


async def test_embed_returns_the_first_embedders_vectors() -> None:
    a = FakeEmbedder("a")
    cand, result, attempts = await _failover(a, FakeEmbedder("b")).embed(
        admitted(EMBED_PLAN), EMBED_PLAN, EMBED_REQ, None)
    assert (_ids(cand), result) == ("e@a", VECTORS)
    assert attempts == [Attempt("e", "a", "e@a", "success", 0)]
    assert a.calls == ["e@a"]


async def test_embed_fails_over_from_a_provider_without_an_embeddings_api() -> None:
    stats = InMemoryStats()
    cand, result, attempts = await _failover(FakeProvider("a"), FakeEmbedder("b"),
                                             stats=stats).embed(admitted(EMBED_PLAN), EMBED_PLAN,
                                                                EMBED_REQ, None)
    assert (_ids(cand), result) == ("e@b", VECTORS)
    assert attempts == [
        Attempt("e", "a", "e@a", "bad_response", 0, "a has no embeddings API", 0),
        Attempt("e", "b", "e@b", "success", 0),
    ]
    assert sorted(await stats.all()) == ["e@a", "e@b"]


async def test_embed_with_every_embedder_failing() -> None:
    with pytest.raises(AllAttemptsFailed) as info:
        await _failover(FakeEmbedder("a", error=_server_error("a")),
                        FakeEmbedder("b", error=_server_error("b"))).embed(
            admitted(EMBED_PLAN), EMBED_PLAN, EMBED_REQ, None)
    assert [(x.deployment, x.outcome) for x in info.value.attempts] == [
        ("e@a", "server_error"), ("e@b", "server_error")]
    assert info.value.message == "All providers failed: b answered HTTP 503"


# ---- the admission the calls go out under -------------------------------------------------
async def test_no_provider_is_called_under_a_concluded_admission() -> None:
    a = FakeProvider("a")
    held = admitted(PLAN)
    held.concluded = True
    with pytest.raises(InternalError, match="no live admission covers deployment m@a"):
        await _failover(a).complete(held, PLAN, REQ, None)
    with pytest.raises(InternalError):
        await _failover(a).open_stream(held, PLAN, REQ, None)
    assert a.calls == []


async def test_no_provider_is_called_for_a_deployment_the_admission_was_not_priced_for() -> None:
    a, b = FakeProvider("a", error=_server_error("a")), FakeProvider("b")
    with pytest.raises(InternalError, match="m@b"):
        await _failover(a, b).complete(admitted(PLAN[:1]), PLAN, REQ, None)
    assert (a.calls, b.calls) == (["m@a"], [])


async def test_no_provider_is_called_for_a_model_whose_token_windows_had_no_room() -> None:
    a = FakeProvider("a")
    held = admitted(PLAN)
    held.hold = TokenHold((TokenAsk("other", 100, None, 10),), 0, 0)  # m had no room
    with pytest.raises(InternalError, match="m@a"):
        await _failover(a).complete(held, PLAN, REQ, None)
    assert a.calls == []
    assert held.candidates(PLAN) == ()
