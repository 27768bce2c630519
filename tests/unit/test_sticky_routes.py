"""Prompt-cache affinity: a prefix served a moment ago goes back to the deployment that served it,
within its time and while healthy, unless the client orders the route; entries are bounded."""

from __future__ import annotations

import pytest

from tests.unit.builders import catalog, deployment, model, request
from tests.unit.fakes import Clock, FakeProvider
from xrouter_router.domain.auth import MasterKeyAuthenticator
from xrouter_router.domain.failover import Failover, FailoverPolicy
from xrouter_router.domain.routing import Candidate
from xrouter_router.domain.service import ChatService
from xrouter_router.domain.stats import InMemoryStats
from xrouter_router.domain.sticky import StickyRoutes, prefix_key
from xrouter_router.domain.types import ChatRequest, Message, ProviderPreferences

KEY = "sk-master-key"
# Equal prices: the balancer alternates a, b, a, b ... when nothing else decides.
EVEN = catalog(model("m", deployment("m", "a"), deployment("m", "b")))
SYSTEM = Message(role="system", content="You are a long, cacheable system prompt.")


def conversation(last: str, system: Message = SYSTEM) -> ChatRequest:
    return request(messages=(system, Message(role="user", content=last)))


def service(routes: StickyRoutes) -> ChatService:
    stats = InMemoryStats()
    failover = Failover({"a": FakeProvider("a"), "b": FakeProvider("b")},
                        FailoverPolicy(60.0, 5), stats, clock=Clock(), wall=Clock(5_000.0))
    return ChatService(EVEN, failover, MasterKeyAuthenticator(KEY), idle_timeout=30.0,
                       stats=stats, wall=Clock(5_000.0), sticky=routes)


async def served_by(svc: ChatService, req: ChatRequest) -> str:
    return (await svc.chat(KEY, req, None)).served.provider


async def test_without_a_prefix_the_balancer_alternates() -> None:
    svc = service(StickyRoutes())
    assert [await served_by(svc, request(text=f"q{i}")) for i in range(4)] == ["a", "b", "a", "b"]


async def test_a_served_prefix_goes_back_to_its_deployment() -> None:
    clock = Clock(0.0)
    routes = StickyRoutes(ttl=300.0, clock=clock)
    svc = service(routes)
    first = await served_by(svc, conversation("q0"))
    later = [await served_by(svc, conversation(f"q{i}")) for i in range(1, 5)]
    assert later == [first] * 4
    # Other prefixes are balanced as usual (each then sticks to where it went).
    others = [conversation("r", Message(role="system", content=f"prompt {i}")) for i in range(4)]
    assert {await served_by(svc, r) for r in others} == {"a", "b"}
    assert len(routes) == 5


def test_the_affinity_lasts_its_time() -> None:
    clock = Clock(0.0)
    routes = StickyRoutes(ttl=300.0, clock=clock)
    key = prefix_key(conversation("x"))
    plan = candidates("a", "b")
    routes.remember(key, "m@b")
    clock.now = 299.0
    assert [c.deployment.id for c in routes.prefer(key, plan, {"m@a", "m@b"})] == ["m@b", "m@a"]
    clock.now = 300.0
    assert routes.prefer(key, plan, {"m@a", "m@b"}) == plan
    assert len(routes) == 0  # the lapsed entry is gone


async def test_the_clients_order_wins_over_the_affinity() -> None:
    svc = service(StickyRoutes())
    sticky = await served_by(svc, conversation("q0"))
    other = "b" if sticky == "a" else "a"
    ordered = request(messages=conversation("q1").messages,
                      provider=ProviderPreferences(order=(other,)))
    assert prefix_key(ordered) is None
    assert await served_by(svc, ordered) == other


def candidates(*providers: str) -> tuple[Candidate, ...]:
    m = model("m", *(deployment("m", p) for p in providers))
    return tuple(Candidate(m, d) for d in m.deployments)


def test_an_unhealthy_or_absent_deployment_is_not_preferred() -> None:
    routes = StickyRoutes()
    key = prefix_key(conversation("x"))
    plan = candidates("a", "b", "c")
    routes.remember(key, "m@c")
    assert [c.deployment.id for c in routes.prefer(key, plan, {"m@a", "m@b", "m@c"})] == [
        "m@c", "m@a", "m@b"]
    assert routes.prefer(key, plan, {"m@a", "m@b"}) == plan  # m@c's breaker is not closed
    assert routes.prefer(key, plan[:2], {"m@a", "m@b", "m@c"}) == plan[:2]  # filtered out


@pytest.mark.parametrize("size", [0, 3])
def test_entries_are_bounded(size: int) -> None:
    routes = StickyRoutes(size=size)
    for i in range(1000):
        routes.remember(prefix_key(conversation("x", Message(role="system", content=str(i)))),
                        "m@a")
    assert len(routes) == size


def test_the_prefix_is_everything_but_the_last_message() -> None:
    assert prefix_key(request(text="alone")) is None
    assert prefix_key(conversation("one")) == prefix_key(conversation("two"))
    assert prefix_key(conversation("one")) != prefix_key(
        conversation("one", Message(role="system", content="other")))
    sorted_ = request(messages=conversation("x").messages,
                      provider=ProviderPreferences(sort="price"))
    assert prefix_key(sorted_) is None
