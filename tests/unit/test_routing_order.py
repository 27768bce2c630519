"""The attempt plan's ordering: the balanced default, cheapest, provider.sort, the balancer and
health tiers; the explanation, and the embeddings plan."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from decimal import Decimal

import pytest

from tests.unit.builders import catalog, deployment, model, request
from tests.unit.plans import (
    TOOL,
    _failed_once,
    _first,
    _measured,
    _open,
    _pairs,
    _prefs,
    _providers,
)
from xrouter_router.domain.catalog import Catalog
from xrouter_router.domain.errors import ModelNotFound, NoProvider
from xrouter_router.domain.routing import (
    Balancer,
    Plan,
    Scored,
    embedding_plan,
    plan,
)
from xrouter_router.domain.stats import BreakerPolicy, DeploymentStats
from xrouter_router.domain.types import ChatRequest

POLICY = BreakerPolicy()


# ---- the default strategy: balanced ------------------------------------------------------

PRICED = catalog(model(
    "m",
    deployment("m", "p1", prompt="1", completion="1"),
    deployment("m", "p2", prompt="2", completion="2"),
    deployment("m", "p3", prompt="3", completion="3"),
))
P2_OPEN = {"m@p2": _open(100.0)}


def _firsts(cat: Catalog, req: ChatRequest, stats: Mapping[str, DeploymentStats], now: float,
            count: int) -> list[Plan]:
    balancer = Balancer()
    return [plan(cat, req, stats, now=now, balancer=balancer) for _ in range(count)]


def test_balance_weights_are_the_deployment_weight_over_the_squared_price_per_token() -> None:
    # 1 / (2e-6)**2, 1 / (4e-6)**2, 1 / (6e-6)**2: in the ratio 36 : 9 : 4
    assert [d.balance_weight for d in PRICED.models[0].deployments] == [
        250000000000.0, 62500000000.0, 27777777777.777775]
    assert deployment("m", "w", prompt="1", completion="1", weight=3.0).balance_weight == 750000000000.0


def test_the_balancer_picks_first_by_weight_among_healthy_ones_and_puts_the_open_one_last() -> None:
    routes = _firsts(PRICED, request("m"), P2_OPEN, 110.0, 100)
    # p1 : p3 = 36 : 4 = 9 : 1, and a smooth round robin repeats every 9 + 1 picks
    assert Counter(_first(r) for r in routes) == {"p1": 90, "p3": 10}
    assert [_first(r) for r in routes[:10]] == ["p1"] * 5 + ["p3"] + ["p1"] * 4
    assert [_first(r) for r in routes[10:20]] == ["p1"] * 5 + ["p3"] + ["p1"] * 4
    assert {tuple(_providers(r)) for r in routes} == {("p1", "p3", "p2"), ("p3", "p1", "p2")}
    assert {r.strategy for r in routes} == {"balanced"}


def test_after_the_cool_down_a_half_open_deployment_is_balanced_with_the_healthy_ones() -> None:
    assert _providers(plan(PRICED, request("m"), P2_OPEN, now=129.999)) == ["p1", "p3", "p2"]
    routes = _firsts(PRICED, request("m"), P2_OPEN, 130.0, 49)
    assert _providers(routes[0]) == ["p1", "p2", "p3"]
    assert Counter(_first(r) for r in routes) == {"p1": 36, "p2": 9, "p3": 4}


def test_the_breaker_policy_passed_in_sets_the_cool_down() -> None:
    policy = BreakerPolicy(cooldown=5.0)
    assert _providers(plan(PRICED, request("m"), P2_OPEN, now=104.9, policy=policy)) == [
        "p1", "p3", "p2"]
    assert _providers(plan(PRICED, request("m"), P2_OPEN, now=105.0, policy=policy)) == [
        "p1", "p2", "p3"]


def test_a_deployment_that_failed_recently_comes_after_the_healthy_and_before_the_open() -> None:
    stats = {"m@p1": _failed_once(105.0), "m@p2": _open(100.0)}
    route = plan(PRICED, request("m"), stats, now=110.0, explain=True)
    assert _providers(route) == ["p3", "p1", "p2"]
    assert [s.health for s in route.scored] == ["recently_failed", "open", "healthy"]
    # the recent window (10 s) has passed: p1 is healthy again
    assert _providers(plan(PRICED, request("m"), stats, now=115.0)) == ["p1", "p3", "p2"]


def test_with_no_healthy_deployment_the_recently_failed_lead_then_the_open_by_weight() -> None:
    stats = {"m@p1": _open(100.0), "m@p2": _open(100.0), "m@p3": _failed_once(105.0)}
    route = plan(PRICED, request("m"), stats, now=110.0)
    assert _providers(route) == ["p3", "p1", "p2"]
    assert route.strategy == "balanced"


# ---- allow_fallbacks: false without order: cheapest --------------------------------------

CHEAP = catalog(
    model("m", deployment("m", "a", prompt="3", completion="3"),
          deployment("m", "b", prompt="1", completion="1"),
          deployment("m", "c", prompt="2", completion="2")),
    model("f", deployment("f", "x", prompt="5", completion="5"),
          deployment("f", "y", prompt="4", completion="4")),
)
NO_FALLBACKS = _prefs(allow_fallbacks=False)


def test_no_fallbacks_and_no_order_plans_the_cheapest_deployment_of_each_model() -> None:
    route = plan(CHEAP, request("m", fallback=("f",), provider=NO_FALLBACKS), explain=True)
    assert _pairs(route) == [("m", "b"), ("f", "y")]
    assert route.strategy == "cheapest"
    assert [(s.deployment.id, s.rejected_by, s.position) for s in route.scored] == [
        ("m@a", "not a fallback", -1), ("m@b", "", 0), ("m@c", "not a fallback", -1),
        ("f@x", "not a fallback", -1), ("f@y", "", 1)]


def test_cheapest_skips_an_open_breaker_unless_every_deployment_is_open() -> None:
    req = request("m", provider=NO_FALLBACKS)
    assert _providers(plan(CHEAP, req, {"m@b": _open(100.0)}, now=110.0)) == ["c"]
    all_open = {f"m@{p}": _open(100.0) for p in ("a", "b", "c")}
    assert _providers(plan(CHEAP, req, all_open, now=110.0)) == ["b"]


# ---- provider.sort -----------------------------------------------------------------------

SORTABLE = catalog(model(
    "m",
    deployment("m", "x", prompt="3", completion="3"),
    deployment("m", "y", prompt="1", completion="1"),
    deployment("m", "z", prompt="2", completion="2"),
))


def test_sort_by_price_tries_the_cheapest_first() -> None:
    route = plan(SORTABLE, request("m", provider=_prefs(sort="price")))
    assert _providers(route) == ["y", "z", "x"]
    assert route.strategy == "price"


def test_sort_by_latency_tries_the_fastest_first_and_the_unmeasured_last() -> None:
    stats = {"m@x": _measured(latency_ms=120.0), "m@z": _measured(latency_ms=80.0)}
    route = plan(SORTABLE, request("m", provider=_prefs(sort="latency")), stats, now=10.0)
    assert _providers(route) == ["z", "x", "y"]
    assert route.strategy == "latency"


def test_sort_by_throughput_tries_the_fastest_stream_first_and_the_unmeasured_last() -> None:
    stats = {"m@x": _measured(throughput=40.0), "m@y": _measured(throughput=90.0)}
    route = plan(SORTABLE, request("m", provider=_prefs(sort="throughput")), stats, now=10.0)
    assert _providers(route) == ["y", "x", "z"]
    assert route.strategy == "throughput"


def test_sort_puts_healthy_first_then_recently_failed_then_open() -> None:
    stats = {"m@y": _open(100.0), "m@z": _failed_once(105.0)}
    route = plan(SORTABLE, request("m", provider=_prefs(sort="price")), stats, now=110.0)
    assert _providers(route) == ["x", "z", "y"]


def test_sort_without_fallbacks_keeps_only_the_first() -> None:
    prefs = _prefs(sort="price", allow_fallbacks=False)
    route = plan(SORTABLE, request("m", provider=prefs), explain=True)
    assert _providers(route) == ["y"]
    assert route.strategy == "price"
    assert [s.rejected_by for s in route.scored] == ["not a fallback", "", "not a fallback"]


# ---- the balancer ------------------------------------------------------------------------

FOUR_TO_ONE = {"a": 4.0, "b": 1.0}


def test_the_balancer_splits_ten_picks_of_weights_4_to_1_exactly_8_to_2_in_a_fixed_order() -> None:
    balancer = Balancer()
    picks = [balancer.choose("m", FOUR_TO_ONE, commit=True) for _ in range(10)]
    assert picks == ["a", "a", "b", "a", "a", "a", "a", "b", "a", "a"]


def test_peeking_does_not_move_the_balancer() -> None:
    balancer = Balancer()
    assert [balancer.choose("m", FOUR_TO_ONE, commit=False) for _ in range(3)] == ["a", "a", "a"]
    picks = []
    for _ in range(10):
        peeked = balancer.choose("m", FOUR_TO_ONE, commit=False)
        picks.append(balancer.choose("m", FOUR_TO_ONE, commit=True))
        assert peeked == picks[-1]
    assert picks == ["a", "a", "b", "a", "a", "a", "a", "b", "a", "a"]


def test_each_key_has_a_rotation_of_its_own() -> None:
    balancer = Balancer()
    even = {"a": 1.0, "b": 1.0}
    assert balancer.choose("m", even, commit=True) == "a"
    assert balancer.choose("n", even, commit=True) == "a"
    assert balancer.choose("m", even, commit=True) == "b"


def test_a_peeked_plan_is_the_plan_the_next_committed_request_gets() -> None:
    balancer = Balancer()
    firsts = []
    for _ in range(12):
        peeked = plan(PRICED, request("m"), P2_OPEN, now=130.0, balancer=balancer, commit=False)
        again = plan(PRICED, request("m"), P2_OPEN, now=130.0, balancer=balancer, commit=False,
                     explain=True)
        real = plan(PRICED, request("m"), P2_OPEN, now=130.0, balancer=balancer)
        assert peeked.candidates == again.candidates == real.candidates
        firsts.append(_first(real))
    assert firsts == ["p1", "p1", "p2", "p1", "p1", "p3", "p1", "p1", "p2", "p1", "p1", "p1"]


def test_naming_a_model_as_a_fallback_does_not_take_turns_from_its_direct_requests() -> None:
    cat = catalog(model("m", deployment("m", "x")),
                  model("f", deployment("f", "a"), deployment("f", "b")))
    balancer = Balancer()
    direct = []
    for _ in range(4):
        plan(cat, request("m", fallback=("f",)), balancer=balancer)
        direct.append(_first(plan(cat, request("f"), balancer=balancer)))
    assert direct == ["a", "b", "a", "b"]


# ---- the explanation ---------------------------------------------------------------------

EXPLAINED = catalog(
    model("m",
          deployment("m", "ok", prompt="1", completion="1"),
          deployment("m", "ig", prompt="1", completion="1"),
          deployment("m", "dc", prompt="1", completion="1", collects_data=True),
          deployment("m", "mp", prompt="10", completion="1"),
          deployment("m", "mc", prompt="1", completion="10"),
          deployment("m", "br", prompt="1", completion="1")),
    model("f", deployment("f", "ok", prompt="2", completion="2")),
)
EXPLAIN_REQ = request("m", fallback=("f",), provider=_prefs(
    ignore=("ig",), data_collection="deny", max_price_prompt=Decimal("5"),
    max_price_completion=Decimal("5")))


def test_the_explanation_scores_every_deployment_and_names_the_filter_of_the_rejected() -> None:
    stats = {"m@ok": _measured(latency_ms=200.0, throughput=30.0), "m@br": _open(100.0)}
    route = plan(EXPLAINED, EXPLAIN_REQ, stats, now=110.0, explain=True)
    m, f = EXPLAINED.models
    assert route.scored == (
        Scored("m", m.deployments[0], "", 250000000000.0, "healthy", 200.0, 30.0, 0),
        Scored("m", m.deployments[1], "in provider.ignore", 0.0, "healthy", None, None, -1),
        Scored("m", m.deployments[2], "provider may collect data (data_collection is deny)",
               0.0, "healthy", None, None, -1),
        Scored("m", m.deployments[3], "prompt price above provider.max_price", 0.0, "healthy",
               None, None, -1),
        Scored("m", m.deployments[4], "completion price above provider.max_price", 0.0,
               "healthy", None, None, -1),
        Scored("m", m.deployments[5], "", 250000000000.0, "open", None, None, 1),
        Scored("f", f.deployments[0], "", 62500000000.0, "healthy", None, None, 2),
    )
    assert _pairs(route) == [("m", "ok"), ("m", "br"), ("f", "ok")]


def test_without_explain_the_plan_carries_no_scores() -> None:
    route = plan(EXPLAINED, EXPLAIN_REQ)
    assert route.scored == ()
    assert _pairs(route) == [("m", "ok"), ("m", "br"), ("f", "ok")]


def test_explaining_a_request_nothing_can_serve_returns_the_reasons_instead_of_raising() -> None:
    cat = catalog(model("m", deployment("m", "a"), deployment("m", "b")))
    route = plan(cat, request("m", tools=(TOOL,), provider=_prefs(ignore=("b",))), explain=True)
    assert route.candidates == ()
    assert [(s.deployment.id, s.rejected_by, s.score, s.position) for s in route.scored] == [
        ("m@a", "does not support tools", 0.0, -1), ("m@b", "in provider.ignore", 0.0, -1)]


# ---- embeddings --------------------------------------------------------------------------

EMBED = catalog(
    model("e", deployment("e", "chat"), deployment("e", "a", caps=("embeddings",)),
          deployment("e", "b", caps=("embeddings",))),
    model("c", deployment("c", "a"), deployment("c", "b")),
)


def _embedding_providers(stats: Mapping[str, DeploymentStats], now: float) -> list[str]:
    return [c.deployment.provider for c in embedding_plan(EMBED, "e", stats, now=now, policy=POLICY)]


def test_the_embeddings_plan_keeps_deployments_with_embeddings_in_catalog_order() -> None:
    assert _embedding_providers({}, 0.0) == ["a", "b"]


def test_the_embeddings_plan_tries_an_open_breaker_last_until_it_is_half_open() -> None:
    stats = {"e@a": _open(100.0)}
    assert _embedding_providers(stats, 129.0) == ["b", "a"]
    assert _embedding_providers(stats, 130.0) == ["a", "b"]


def test_a_model_without_embeddings_deployments_has_no_provider() -> None:
    with pytest.raises(NoProvider) as info:
        embedding_plan(EMBED, "c", {}, now=0.0, policy=POLICY)
    assert info.value.message == "Model 'c' has no embeddings deployment"
    assert info.value.metadata == {"reasons": {"c@a": "does not support embeddings",
                                               "c@b": "does not support embeddings"}}


def test_the_embeddings_plan_of_an_unknown_model_is_model_not_found() -> None:
    with pytest.raises(ModelNotFound):
        embedding_plan(EMBED, "nope", {}, now=0.0, policy=POLICY)
